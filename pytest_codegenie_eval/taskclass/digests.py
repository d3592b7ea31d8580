"""Content digests of case directories and the ``cases/digests.yaml`` pin file.

The digest is BLAKE3 over the case directory in a canonical order: relative POSIX paths
sorted, each path and then its bytes, both length-prefixed (8-byte little-endian), so no
two different trees can produce the same byte stream. Interpreter droppings
(``__pycache__``, ``*.pyc``) are left out so importing a case's code cannot change it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_codegenie_eval.errors import BenchCaseLoadError, DigestsFileInvalid
from pytest_codegenie_eval.hashing import blake3_hex, hash_tree
from pytest_codegenie_eval.store.statedir import atomic_write
from pytest_codegenie_eval.taskclass.contract import read_contract_yaml
from pytest_codegenie_eval.taskclass.layout import CASE_TOML, CASES, DIGESTS_FILE

_SKIP_DIRS = frozenset({"__pycache__"})
_SKIP_SUFFIXES = (".pyc", ".pyo")
_HEADER = (
    "# case directory -> BLAKE3 digest of its content (see docs/bench-authoring.md).\n"
    "# Re-pin after editing a case: codegenie-eval digests --task-class NAME --write\n"
)


def _checked_target(link: Path, root: Path) -> Path:
    """Where a symlink points, refused when that is outside the case directory."""
    target = link.resolve()
    if not target.is_relative_to(root):
        raise BenchCaseLoadError(link, f"symlink leaves the case directory (points to {target})")
    return target


def _iter_files(
    case_dir: Path, root: Path | None = None, ancestors: frozenset[Path] = frozenset()
) -> Iterator[tuple[str, Path]]:
    root = root or case_dir.resolve()
    ancestors = ancestors | {case_dir.resolve()}
    for dirpath, dirnames, filenames in os.walk(case_dir, followlinks=False):
        current = Path(dirpath)
        keep = []
        for name in dirnames:
            if name in _SKIP_DIRS:
                continue
            sub = current / name
            if sub.is_symlink():
                target = _checked_target(sub, root)
                if any(target == a or a.is_relative_to(target) for a in ancestors | {current}):
                    raise BenchCaseLoadError(sub, f"symlink loops back to {target}")
                # a link to a directory inside the case is hashed as the files it reaches
                for inner_rel, inner in _iter_files(target, root, ancestors):
                    yield (sub.relative_to(case_dir) / inner_rel).as_posix(), inner
                continue
            keep.append(name)
        dirnames[:] = keep
        for name in filenames:
            if name.endswith(_SKIP_SUFFIXES):
                continue
            path = current / name
            if path.is_symlink():
                _checked_target(path, root)
            if not path.is_file():
                continue
            yield path.relative_to(case_dir).as_posix(), path


def check_input_links(input_dir: Path) -> None:
    """A symlink in ``input/`` may only point inside ``input/``: the workspace is a copy of
    it, and ``input/answer -> ../expected`` would hand the SUT the answer key."""
    if not input_dir.is_dir():
        return
    root = input_dir.resolve()
    for dirpath, dirnames, filenames in os.walk(input_dir, followlinks=False):
        for name in (*dirnames, *filenames):
            path = Path(dirpath) / name
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise BenchCaseLoadError(
                    path,
                    f"symlink leaves input/ (points to {path.resolve()}); the SUT's workspace "
                    "is a copy of input/ and must not reach the rest of the case",
                )


def case_files(case_dir: Path) -> list[tuple[str, Path]]:
    """The files :func:`case_digest` covers, as (relative POSIX name, path); a link inside
    the case is listed as the files it reaches."""
    return list(_iter_files(case_dir))


def case_digest(case_dir: Path) -> str:
    """BLAKE3 hex digest of a case directory (docs/bench-authoring.md)."""
    return hash_tree(_iter_files(case_dir))


def file_digest(path: Path) -> str:
    """BLAKE3 hex digest of one file's bytes."""
    return blake3_hex(path.read_bytes())


def read_digests(cases_dir: Path) -> dict[str, str]:
    """Read ``cases/digests.yaml``; a missing file is an empty pin set."""
    path = cases_dir / DIGESTS_FILE
    if not path.exists():
        return {}
    # a repeated key is refused: the second pin would silently win over the reviewed one
    data, problem = read_contract_yaml(path)
    if problem is not None:
        raise DigestsFileInvalid(path, problem)
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise DigestsFileInvalid(path, "must map case directory names to digests")
    pins: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise DigestsFileInvalid(path, f"entry {key!r}: name and digest must be strings")
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise DigestsFileInvalid(path, f"entry {key!r}: digest must be 64 lowercase hex chars")
        pins[key] = value
    return pins


@dataclass(frozen=True)
class PinMismatch:
    """A case directory whose pin is missing or stale, or a pin naming no case directory."""

    name: str
    pinned: str | None  # None: the directory is not pinned
    actual: str | None  # None: no case directory has this name

    def describe(self, task_class: str) -> str:
        if self.actual is None:
            return f"pins {self.name!r}, which is not a case directory"
        if self.pinned is None:
            return (
                f"not pinned in {CASES}/{DIGESTS_FILE}; run `codegenie-eval digests "
                f"--task-class {task_class} --write`"
            )
        return (
            f"stale pin: content digest {self.actual} does not match {self.pinned}; re-pin "
            "if the edit is intended"
        )


def pin_mismatch(pins: Mapping[str, str], name: str, actual: str) -> PinMismatch | None:
    """The one rule for a case directory's pin: present and equal to its content digest."""
    pinned = pins.get(name)
    return None if pinned == actual else PinMismatch(name, pinned, actual)


def orphan_pins(pins: Mapping[str, str], present: Iterable[str]) -> list[PinMismatch]:
    """Pins naming no case directory, sorted by name."""
    names = set(present)
    return [PinMismatch(name, pins[name], None) for name in sorted(pins) if name not in names]


def stale_pins(pins: Mapping[str, str], actual: Mapping[str, str]) -> list[PinMismatch]:
    """Every mismatch between the pins and the digests of the case directories, by name."""
    found = [m for name in sorted(actual) if (m := pin_mismatch(pins, name, actual[name]))]
    return sorted([*found, *orphan_pins(pins, actual)], key=lambda m: m.name)


def render_digests(pins: Mapping[str, str]) -> str:
    """The canonical text of a digests.yaml for these pins."""
    # quoted: an all-digit digest would otherwise load as a YAML integer
    body = "".join(f"{json.dumps(name)}: {json.dumps(pins[name])}\n" for name in sorted(pins))
    return _HEADER + body


def compute_digests(cases_dir: Path) -> dict[str, str]:
    """Digest of every case directory (every subdirectory holding a case.toml)."""
    return {
        child.name: case_digest(child)
        for child in sorted(cases_dir.iterdir())
        if child.is_dir() and (child / CASE_TOML).exists()
    }


def write_digests(cases_dir: Path) -> Path:
    """Rewrite ``cases/digests.yaml`` from the directories as they are now (atomic)."""
    path = cases_dir / DIGESTS_FILE
    return atomic_write(path, render_digests(compute_digests(cases_dir)).encode("utf-8"))
