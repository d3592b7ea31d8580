"""The state directory's layout, and the one way anything in it is written.

Everything the harness writes lives under one directory (``.codegenie/eval`` at the pytest
rootdir unless ``--codegenie-state-dir`` says otherwise)::

    cache/<key[:2]>/<key>.json   content-addressed case results (store/cache.py)
    runs/<stamp>-<id>-<tc>.json  run reports, never overwritten (store/audit.py)
    audit.jsonl, audit.jsonl.lock  the hash-linked chain and its writers' lock (store/audit.py)
    recommendations/             promotion recommendations, never applied (evidence/verdicts.py)
    ledger/<run scope>.jsonl     the session's SUT cost ledger (store/cost_ledger.py)
    workspaces/<run scope>/<tc>/<case>  kept workspaces (--codegenie-keep-workspaces)
    diffs/<d[:2]>/<d>.diff       the diff each SUT run made, by BLAKE3 digest (a case
                                 result's diff_digest names it; the results page shows it)

:func:`atomic_write` is how every one of those files (and a bench's ``digests.yaml``) is
written: a temporary file in the same directory, then a rename, so a reader never sees
half a file and a killed writer leaves at most a ``.tmp-*`` file behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

AUDIT_FILE = "audit.jsonl"
LOCK_FILE = "audit.jsonl.lock"
RUNS_DIR = "runs"
CACHE_DIR = "cache"
RECOMMENDATIONS_DIR = "recommendations"
LEDGER_DIR = "ledger"
WORKSPACES_DIR = "workspaces"
DIFFS_DIR = "diffs"
TRANSCRIPTS_DIR = "transcripts"
TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class StateDir:
    """The paths of one state directory."""

    root: Path

    @property
    def cache(self) -> Path:
        return self.root / CACHE_DIR

    @property
    def runs(self) -> Path:
        return self.root / RUNS_DIR

    @property
    def audit(self) -> Path:
        return self.root / AUDIT_FILE

    @property
    def audit_lock(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def recommendations(self) -> Path:
        return self.root / RECOMMENDATIONS_DIR

    @property
    def diffs(self) -> Path:
        return self.root / DIFFS_DIR

    @property
    def transcripts(self) -> Path:
        return self.root / TRANSCRIPTS_DIR

    def workspaces(self, run_scope: str) -> Path:
        """Where --codegenie-keep-workspaces moves each attempt's run directory."""
        return self.root / WORKSPACES_DIR / run_scope

    def ledger(self, run_scope: str) -> Path:
        return self.root / LEDGER_DIR / f"{run_scope}.jsonl"


def fsync_dir(directory: Path) -> None:
    """Make a rename or a file creation in ``directory`` durable (where that is possible)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a
    rename; ``durable`` also fsyncs the file and the directory. Returns ``path``."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX, suffix=".tmp")
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    if durable:
        fsync_dir(path.parent)
    return path


def write_unique(directory: Path, stem: str, suffix: str, data: bytes) -> Path:
    """Write ``data`` durably as ``directory/<stem><suffix>``, or ``<stem>-2<suffix>``,
    ``<stem>-3<suffix>``… when that name is taken, and return the path.

    The bytes go to a temporary file first and are then hard-linked to the free name, which
    fails when the name exists: two writers (two sessions) never take the same name, and a
    reader never sees half a file.
    """
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=TMP_PREFIX, suffix=".tmp")
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        counter = 1
        while True:
            target = directory / (
                f"{stem}{suffix}" if counter == 1 else f"{stem}-{counter}{suffix}"
            )
            try:
                _claim(tmp_name, target)
            except FileExistsError:
                counter += 1
                continue
            break
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
    fsync_dir(directory)
    return target


def _claim(tmp_name: str, target: Path) -> None:
    """Give the finished temporary file ``target``'s name, raising :class:`FileExistsError`
    when the name is taken. A file system without hard links gets an empty placeholder
    created exclusively, then replaced by the finished file (a reader skips the empty one)."""
    try:
        os.link(tmp_name, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.replace(tmp_name, target)


_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})


def unique_name_order(names: Iterable[str], suffix: str) -> list[str]:
    """``names`` written by :func:`write_unique` in the order they were claimed for each stem
    (``x.json`` before ``x-2.json`` before ``x-10.json``), stems in name order."""
    present = set(names)

    def key(name: str) -> tuple[str, int]:
        stem = name.removesuffix(suffix)
        base, sep, number = stem.rpartition("-")
        if sep and number.isdigit() and not number.startswith("0") and f"{base}{suffix}" in present:
            return base, int(number)
        return stem, 1

    return sorted(present, key=key)


def _blob_path(directory: Path, digest: str, suffix: str) -> Path:
    return directory / digest[:2] / f"{digest}{suffix}"


def _store_blob(directory: Path, data: bytes, suffix: str) -> str:
    """Keep ``data`` under its BLAKE3 digest (idempotent: the same bytes from a rerun or
    another worker are the same file) and return the digest."""
    from pytest_codegenie_eval.hashing import blake3_hex

    digest = blake3_hex(data)
    path = _blob_path(directory, digest, suffix)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, durable=False)
    return digest


def _read_blob(directory: Path, digest: str, suffix: str) -> bytes | None:
    """The bytes kept under ``digest``, or ``None`` when they are missing or no longer
    match the digest (what is shown is only ever what was recorded)."""
    from pytest_codegenie_eval.hashing import blake3_hex

    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        return None
    try:
        data = _blob_path(directory, digest, suffix).read_bytes()
    except OSError:
        return None
    return data if blake3_hex(data) == digest else None


def diff_digest(text: str) -> str:
    """The digest a diff is kept under (:func:`store_diff`)."""
    from pytest_codegenie_eval.hashing import blake3_hex

    return blake3_hex(text.encode("utf-8", errors="surrogateescape"))


def store_diff(diffs_dir: Path, text: str) -> str:
    """Keep a SUT run's diff under its BLAKE3 digest and return the digest."""
    return _store_blob(diffs_dir, text.encode("utf-8", errors="surrogateescape"), ".diff")


def read_diff(diffs_dir: Path, digest: str) -> str | None:
    """The diff recorded under ``digest``, or ``None`` when it is missing or its bytes no
    longer match the digest (a diff is shown only as it was recorded)."""
    data = _read_blob(diffs_dir, digest, ".diff")
    return None if data is None else data.decode("utf-8", errors="replace")


def store_transcript(directory: Path, data: bytes) -> str:
    """Keep an attempt's model transcript (JSON lines) under its BLAKE3 digest, as diffs
    are kept, and return the digest."""
    return _store_blob(directory, data, ".jsonl")


def read_transcript(directory: Path, digest: str) -> bytes | None:
    """The transcript recorded under ``digest``, or ``None`` when it is missing or its bytes
    no longer match the digest."""
    return _read_blob(directory, digest, ".jsonl")
