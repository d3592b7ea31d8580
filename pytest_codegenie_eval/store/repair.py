"""``codegenie-eval repair``: put a state directory back in order after a killed session.

A session killed at the wrong moment leaves one of three things behind, none of them
tampering: a ``.tmp-*`` file of an atomic write, a torn last line in ``audit.jsonl`` (the
append was cut short), or a run report in ``runs/`` whose chain record was never appended.
A torn line makes every later run refuse to append; the others make ``verify --strict``
fail, and plain ``verify`` and the next run name them.

Repair fixes exactly those, and nothing else:

- temporary files are removed (they never hold anything a record names);
- a torn tail is moved, byte for byte, into ``quarantine/`` and cut from the chain;
- a report without a record is *adopted*: a record with ``"kind": "adopted"`` is appended
  for it, so the chain shows the run, but it is never evidence (the gate and ``latest:``
  skip it: a repair must not change which run is the newest or what a verdict says, ADR
  0023); a file in ``runs/`` that is not a readable run report is moved into
  ``quarantine/``;
- a repair note in ``runs/`` listing everything above (paths, sizes, BLAKE3 digests) is
  written before anything is touched, and a record with ``"kind": "repair"`` naming it is
  appended last.

:func:`leftovers` finds the same things without changing anything, for ``verify`` and the
next run's start to name them.

Nothing is deleted silently, and history is never rewritten: when the chain has any other
problem (an edited, removed or reordered record, a changed report) repair changes nothing
and says so, because that is tampering and the fix is to restore from a backup.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from pytest_codegenie_eval.hashing import blake3_hex
from pytest_codegenie_eval.models import BenchRunReport
from pytest_codegenie_eval.store.audit import (
    AUDIT_FILE,
    ChainRecord,
    append_record,
    canonical_json,
    lock_if_writable,
    read_chain,
    report_files,
    verify_chain_bytes,
    writer_lock,
)
from pytest_codegenie_eval.store.statedir import RUNS_DIR, TMP_PREFIX, atomic_write, fsync_dir

QUARANTINE_DIR = "quarantine"
TMP_MIN_AGE_S = 60.0
"""Temporary files outside ``runs/`` are removed only when at least this old: the score cache
is written without the chain lock, so a younger one may belong to a session still running."""


@dataclass(frozen=True)
class RepairResult:
    """What :func:`repair` did (or, with ``dry_run``, would do)."""

    removed: tuple[str, ...] = ()
    quarantined: tuple[str, ...] = ()
    adopted: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()
    note: str | None = None
    head: str | None = None
    dry_run: bool = False
    actions: tuple[str, ...] = field(default=())

    @property
    def changed(self) -> bool:
        return bool(self.removed or self.quarantined or self.adopted)


def _digest(data: bytes) -> str:
    return blake3_hex(data)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _temporary_files(
    out_dir: Path, now: float, *, lock_held: bool = True, everywhere: bool = True
) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(out_dir):
        current = Path(dirpath)
        if current.name == QUARANTINE_DIR:
            continue
        if not everywhere:
            # the state directory and runs/ only: the evidence, without walking the cache
            dirnames[:] = [RUNS_DIR] if current == out_dir and RUNS_DIR in dirnames else []
        under_lock = lock_held and current in (out_dir, out_dir / RUNS_DIR)
        for name in filenames:
            if not name.startswith(TMP_PREFIX):
                continue
            path = current / name
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:
                continue
            if under_lock or age >= TMP_MIN_AGE_S:
                found.append(path)
    return sorted(found)


def leftovers(out_dir: Path, *, everywhere: bool = True) -> tuple[str, ...]:
    """What a killed session left in ``out_dir`` that ``repair`` would deal with, as short
    phrases (empty when there is nothing): temporary files, run reports no record names and
    a torn last line of the chain. It changes nothing. ``everywhere=False`` looks for
    temporary files in the state directory and ``runs/`` only (a session's start-up need
    not walk the whole score cache).

    Under the writers' lock (when the state directory allows taking it) a leftover in the
    state directory or ``runs/`` is certain, since every writer finishes its file and its
    record while holding it; elsewhere, and without the lock, only files older than
    ``TMP_MIN_AGE_S`` count, so a live session's files are never called leftovers.
    """
    if not out_dir.is_dir():
        return ()
    with lock_if_writable(out_dir) as locked:
        now = time.time()
        temporaries = _temporary_files(out_dir, now, lock_held=locked, everywhere=everywhere)
        data = read_chain(out_dir)
        cut = data.rfind(b"\n") + 1
        named = {r.report_path for r in _parsable_records(data[:cut])}
        unrecorded = [
            name
            for name in report_files(out_dir)
            if not name.startswith(TMP_PREFIX)
            and f"{RUNS_DIR}/{name}" not in named
            and (locked or _age(out_dir / RUNS_DIR / name, now) >= TMP_MIN_AGE_S)
        ]
    found = []
    if temporaries:
        found.append(f"{len(temporaries)} temporary file(s)")
    if unrecorded:
        found.append(f"{len(unrecorded)} file(s) in {RUNS_DIR}/ that no record names")
    if data[cut:]:
        found.append(f"a torn last line in {AUDIT_FILE}")
    return tuple(found)


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except OSError:
        return 0.0


def _parsable_records(body: bytes) -> list[ChainRecord]:
    """The records of ``body`` that parse (a chain not yet verified may hold others)."""
    found = []
    for line in body.splitlines():
        try:
            record = ChainRecord.parse(json.loads(line))
        except ValueError:
            continue
        if record is not None:
            found.append(record)
    return found


def repair(out_dir: Path, *, dry_run: bool = False) -> RepairResult:
    """Repair the state directory ``out_dir`` as described in the module docstring.

    Raises :class:`FileNotFoundError` when ``out_dir`` does not exist.
    """
    if not out_dir.is_dir():
        raise FileNotFoundError(f"state directory {out_dir} does not exist")
    # a dry run reads a read-only state directory without the lock (nobody writes there)
    with lock_if_writable(out_dir) if dry_run else writer_lock(out_dir):
        data = read_chain(out_dir)
        cut = data.rfind(b"\n") + 1
        body, torn = data[:cut], data[cut:]
        result = verify_chain_bytes(out_dir, body)
        if not result.ok:
            return RepairResult(refused=result.problems, dry_run=dry_run)
        named = {r.report_path for r in _records(body)}
        actions: list[str] = []
        removed = [p for p in _temporary_files(out_dir, time.time())]
        for path in removed:
            actions.append(f"remove temporary file {path.relative_to(out_dir)}")
        adopt: list[tuple[str, bytes, BenchRunReport]] = []
        strays: list[str] = []
        for name in report_files(out_dir):
            rel = f"{RUNS_DIR}/{name}"
            path = out_dir / rel
            if name.startswith(TMP_PREFIX) or rel in named or not path.is_file():
                continue
            raw = path.read_bytes()
            try:
                adopt.append((rel, raw, BenchRunReport.model_validate_json(raw)))
                actions.append(f"adopt {rel} (a run report without a chain record)")
            except ValidationError:
                strays.append(rel)
                actions.append(f"quarantine {rel} (not a run report, named by no record)")
        if torn:
            actions.append(f"quarantine the torn last line of {AUDIT_FILE} ({len(torn)} bytes)")
        if dry_run or not actions:
            return RepairResult(
                removed=tuple(str(p.relative_to(out_dir)) for p in removed),
                quarantined=tuple(strays) + (("torn tail",) if torn else ()),
                adopted=tuple(rel for rel, _, _ in adopt),
                dry_run=dry_run,
                actions=tuple(actions),
            )
        return _apply(out_dir, body, torn, removed, adopt, strays, actions)


def _records(body: bytes) -> list[ChainRecord]:
    """The records of a chain that verified (so every line parses into a record)."""
    parsed = [ChainRecord.parse(json.loads(line)) for line in body.splitlines()]
    return [record for record in parsed if record is not None]


def _apply(
    out_dir: Path,
    body: bytes,
    torn: bytes,
    removed: list[Path],
    adopt: list[tuple[str, bytes, BenchRunReport]],
    strays: list[str],
    actions: list[str],
) -> RepairResult:
    """Carry the plan out; the caller holds the chain lock and has verified ``body``.

    The note listing everything about to be removed, moved or adopted is written first, so a
    repair killed halfway still leaves a record of what it did: the note is then a file in
    ``runs/`` that no record names, which the next repair quarantines (keeping it) and lists.
    """
    stamp = _stamp()
    quarantine = out_dir / QUARANTINE_DIR
    torn_target = quarantine / f"{stamp}-audit-tail.bin"
    stray_moves = [(rel, quarantine / f"{stamp}-{(out_dir / rel).name}") for rel in strays]
    quarantined: list[dict[str, object]] = []
    if torn:
        quarantined.append(_entry(torn_target.relative_to(out_dir).as_posix(), torn, AUDIT_FILE))
    for rel, target in stray_moves:
        raw = (out_dir / rel).read_bytes()
        quarantined.append(_entry(target.relative_to(out_dir).as_posix(), raw, rel))
    gone = []
    for path in removed:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        gone.append({"path": path.relative_to(out_dir).as_posix(), "bytes": size})
    note = {
        "kind": "repair",
        "created_at": datetime.now(UTC).isoformat(),
        "actions": actions,
        "removed_temporary_files": gone,
        "quarantined": quarantined,
        "adopted": [rel for rel, _, _ in adopt],
    }
    note_bytes = canonical_json(note) + b"\n"
    note_rel = f"{RUNS_DIR}/{stamp}-repair.json"
    (out_dir / RUNS_DIR).mkdir(exist_ok=True)
    atomic_write(out_dir / note_rel, note_bytes)

    if torn or strays:
        quarantine.mkdir(exist_ok=True)
    if torn:
        atomic_write(torn_target, torn)
        # the bytes are safe in quarantine: only now is the chain cut back to its last line
        atomic_write(out_dir / AUDIT_FILE, body)
    for rel, target in stray_moves:
        os.replace(out_dir / rel, target)
    if strays:
        fsync_dir(out_dir / RUNS_DIR)
    for path in removed:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
    records = _records(body)
    last: dict[str, object] | None = (
        {"seq": records[-1].seq, "hash": records[-1].hash} if records else None
    )
    head = records[-1].hash if records else None
    for rel, raw, report in sorted(adopt, key=lambda item: item[2].created_at):
        fields = {
            "created_at": report.created_at,
            "run_id": report.run_id,
            "task_class": report.task_class,
            "complete": report.complete,
            "report_path": rel,
            "report_digest": _digest(raw),
            "kind": "adopted",
        }
        head = append_record(out_dir, last, fields)
        last = {"seq": _next_seq(last), "hash": head}
    head = append_record(
        out_dir,
        last,
        {
            "created_at": note["created_at"],
            "run_id": f"repair-{_digest(note_bytes)[:16]}",
            "task_class": "",
            "complete": False,
            "report_path": note_rel,
            "report_digest": _digest(note_bytes),
            "kind": "repair",
        },
    )
    return RepairResult(
        removed=tuple(str(g["path"]) for g in gone),
        quarantined=tuple(str(q["file"]) for q in quarantined),
        adopted=tuple(rel for rel, _, _ in adopt),
        note=note_rel,
        head=head,
        actions=tuple(actions),
    )


def _next_seq(last: dict[str, object] | None) -> int:
    if last is None:
        return 0
    seq = last["seq"]
    assert isinstance(seq, int)
    return seq + 1


def _entry(rel: str, raw: bytes, origin: str) -> dict[str, object]:
    return {"file": rel, "from": origin, "bytes": len(raw), "blake3": _digest(raw)}


__all__ = ["QUARANTINE_DIR", "RepairResult", "repair"]
