"""What the SUT changed: a git-style unified diff of the case's input and the workspace,
bounded in memory whatever the SUT wrote, never read through a link."""

from __future__ import annotations

import difflib
import os
import stat
from pathlib import Path

from pytest_codegenie_eval.execution.workspace import CODEGENIE_DIR
from pytest_codegenie_eval.hashing import blake3_file

MAX_DIFF_BYTES = 4 * 1024 * 1024
# Files larger than this are compared by streamed hash and summarised, never loaded.
MAX_DIFF_FILE_BYTES = 1024 * 1024


def _files(root: Path) -> dict[str, Path]:
    """Regular files under ``root`` (``.codegenie/`` left out), found without following a
    link: a link the SUT planted is reported by the harness, never read through."""
    found: dict[str, Path] = {}
    if not root.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        current = Path(dirpath)
        if current == root:
            dirnames[:] = [d for d in dirnames if d != CODEGENIE_DIR]
        for name in filenames:
            path = current / name
            try:
                regular = stat.S_ISREG(path.lstat().st_mode)
            except OSError:
                continue
            if regular:
                found[path.relative_to(root).as_posix()] = path
    return found


def _file_diff(rel: str, old: Path | None, new: Path | None) -> str:
    """One file's part of the diff, reading at most ``MAX_DIFF_FILE_BYTES`` of each side."""
    sizes = [p.stat().st_size if p is not None else 0 for p in (old, new)]
    if max(sizes) > MAX_DIFF_FILE_BYTES:
        digests = [blake3_file(p) if p is not None else "" for p in (old, new)]
        if old is not None and new is not None and digests[0] == digests[1]:
            return ""
        return f"Large files a/{rel} and b/{rel} differ ({sizes[0]} -> {sizes[1]} bytes)\n"
    a = old.read_bytes() if old is not None else b""
    b = new.read_bytes() if new is not None else b""
    if a == b and (old is None) == (new is None):
        return ""
    try:
        a_lines = a.decode("utf-8").splitlines(keepends=True)
        b_lines = b.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return f"Binary files a/{rel} and b/{rel} differ\n"
    text = "".join(
        difflib.unified_diff(
            a_lines,
            b_lines,
            fromfile=f"a/{rel}" if old is not None else "/dev/null",
            tofile=f"b/{rel}" if new is not None else "/dev/null",
        )
    )
    if text and not text.endswith("\n"):
        text += "\n\\ No newline at end of file\n"
    return text


def unified_diff(before: Path, after: Path, limit: int = MAX_DIFF_BYTES) -> str:
    """A git-style unified diff of two trees (``.codegenie/`` left out), capped in size.

    The harness's memory stays bounded whatever the SUT wrote: files past
    ``MAX_DIFF_FILE_BYTES`` are compared by a streamed hash and summarised in one line.
    """
    old, new = _files(before), _files(after)
    chunks: list[str] = []
    size = 0
    for rel in sorted(set(old) | set(new)):
        try:
            text = _file_diff(rel, old.get(rel), new.get(rel))
        except OSError as exc:
            text = f"Unreadable file b/{rel}: {exc}\n"
        if not text:
            continue
        size += len(text)
        if size > limit:
            chunks.append(f"[diff truncated at {limit} bytes]\n")
            break
        chunks.append(text)
    return "".join(chunks)
