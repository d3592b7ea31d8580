"""The audit chain: a tamper-evident, append-only record of every run report
(docs/adr/0007-audit-chain.md).

Layout under the state directory (``.codegenie/eval`` by default)::

    runs/<stamp>-<id>-<tc>.json   one BenchRunReport per task class per session
    audit.jsonl                   one record per report, hash-linked to the one before
    audit.jsonl.lock              held by writers (and by readers when the directory is writable)

Each line of ``audit.jsonl`` is the canonical JSON (:func:`canonical_json`) of a record with
the fields of :data:`RECORD_FIELDS`. ``hash`` is BLAKE3 over the canonical JSON of all the
other fields, ``prev_hash`` is the previous record's ``hash`` (64 zeros for the genesis
record), and ``report_digest`` is BLAKE3 over the report file's bytes. Because every line must
equal the canonical encoding of what it parses to, changing any single byte of the chain is
detected: either the line stops parsing, or it stops being canonical, or a value changes and
the record hash no longer matches.

What the chain cannot show on its own: a chain cut short at the end is a valid, shorter chain.
Only a head recorded somewhere else (a CI log, a promotion verdict, a signed tag) proves that
nothing was dropped after it, which is why :func:`verify` takes ``expected_head``. Anyone able
to rewrite the whole file can likewise re-hash a forged history from genesis; anchoring the
head is again what exposes that.

This module does not import pydantic at runtime, so ``codegenie-eval verify`` stays cheap.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import filelock

from pytest_codegenie_eval.errors import ChainTamperDetected
from pytest_codegenie_eval.hashing import blake3_hex, blake3_keyed_hex
from pytest_codegenie_eval.models import PARTIAL_PREFIX
from pytest_codegenie_eval.store.statedir import (
    AUDIT_FILE,
    LOCK_FILE,
    RUNS_DIR,
    fsync_dir,
    write_unique,
)

if TYPE_CHECKING:
    from pytest_codegenie_eval.models import BenchRunReport

__all__ = [
    "AUDIT_FILE",
    "GENESIS_PREV_HASH",
    "KEYED_FIELD",
    "LOCK_FILE",
    "RECORD_FIELDS",
    "RUNS_DIR",
    "ChainRecord",
    "KeyRequired",
    "VerifyResult",
    "append_record",
    "canonical_json",
    "chain_head",
    "chain_key",
    "current_chain_key",
    "format_verify_summary",
    "key_from_environment",
    "read_chain",
    "record_hash",
    "records",
    "report_files",
    "verify",
    "verify_chain_bytes",
    "verify_or_raise",
    "write_run_record",
    "writer_lock",
]

GENESIS_PREV_HASH = "0" * 64
RECORD_FIELDS: tuple[str, ...] = (
    "seq",
    "prev_hash",
    "created_at",
    "run_id",
    "task_class",
    "complete",
    "report_path",
    "report_digest",
    "hash",
)
# Generous: a writer holds the lock only for one small report write and one line append.
LOCK_TIMEOUT_S = 120.0

# Optional: absent for a run's own record; "adopted" for a report that `codegenie-eval
# repair` recorded after its session died between writing it and appending its record;
# "repair" for the record of a repair itself (its report is the repair note); "shard" for
# one part of a --codegenie-shard run; "merged" for the run `codegenie-eval merge` built
# from shards, whose record lists the shard reports' digests in SOURCES_FIELD.
KIND_FIELD = "kind"
SOURCES_FIELD = "sources"
# true on a record hashed with BLAKE3's keyed mode under the chain key (absent otherwise)
KEYED_FIELD = "keyed"
RECORD_KINDS = ("adopted", "repair", "shard", "merged")
RUN_KINDS = ("run", "adopted", "merged")
_KNOWN_FIELDS = frozenset((*RECORD_FIELDS, KIND_FIELD, SOURCES_FIELD, KEYED_FIELD))
_STR_FIELDS = ("prev_hash", "created_at", "run_id", "task_class", "report_path", "report_digest")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# One file directly in runs/; no separators, NUL or leading dot (so no "..", no hidden files).
_REPORT_PATH = re.compile(RUNS_DIR + r"/[^./\\\x00][^/\\\x00]*")
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
# Reading the tail backwards in blocks keeps chain_head and appends O(1) in the chain length.
_TAIL_BLOCK = 8192


# --------------------------------------------------------------------------- hashing


def canonical_json(obj: object) -> bytes:
    """Encode ``obj`` as canonical JSON: sorted keys, ``(",", ":")`` separators, UTF-8.

    ``ensure_ascii=False`` keeps non-ASCII text as UTF-8 rather than ``\\u`` escapes, so the
    encoding of a value is unique; NaN and infinities are refused because they are not JSON.
    """
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


_CHAIN_KEY: ContextVar[bytes | None] = ContextVar("codegenie_chain_key", default=None)


@contextmanager
def chain_key(key: bytes | None) -> Iterator[None]:
    """Within this block, records are written keyed with ``key`` (32 bytes, from
    :func:`~pytest_codegenie_eval.hashing.derive_key`) and keyed records are checked with
    it; ``None`` means no key. The entry points (the pytest session, each CLI command) set
    it once from the environment variable the user names."""
    token = _CHAIN_KEY.set(key)
    try:
        yield
    finally:
        _CHAIN_KEY.reset(token)


def key_from_environment(variable: str) -> bytes:
    """The chain key derived from the secret in environment variable ``variable``; raises
    :class:`ValueError` naming the variable when it is unset or empty."""
    from pytest_codegenie_eval.hashing import derive_key

    secret = os.environ.get(variable, "")
    if not variable or not secret:
        raise ValueError(
            f"the chain key variable {variable!r} is not set (or is empty): set it to the "
            "secret, e.g. from a CI secret, or leave the chain unkeyed"
        )
    return derive_key(secret.encode("utf-8"))


def current_chain_key() -> bytes | None:
    """The key :func:`chain_key` set, if any."""
    return _CHAIN_KEY.get()


class KeyRequired(ValueError):
    """A keyed record met without a key: it cannot be checked, or appended to."""


def record_hash(record_without_hash: Mapping[str, object]) -> str:
    """The hash of a record's canonical JSON, leaving out its ``hash`` field: plain BLAKE3,
    or BLAKE3's keyed mode under the chain key for a record with ``"keyed": true``.

    A ``hash`` key, if present, is ignored, so a full record can be passed to recompute it.
    Raises :class:`KeyRequired` for a keyed record when no key is set.
    """
    body = {key: value for key, value in record_without_hash.items() if key != "hash"}
    if body.get(KEYED_FIELD) is True:
        key = _CHAIN_KEY.get()
        if key is None:
            raise KeyRequired(
                "the record is keyed: it can only be checked with the chain key (name its "
                "environment variable with --chain-key-env or --codegenie-chain-key-env)"
            )
        return blake3_keyed_hex(canonical_json(body), key)
    return blake3_hex(canonical_json(body))


def _digest(data: bytes) -> str:
    return blake3_hex(data)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify` found.

    ``records`` counts every complete line of the chain; ``verified_complete`` and
    ``verified_incomplete`` count the records (within ``since``) whose record and report both
    verified, split by the record's ``complete`` flag. ``head`` is the last record's hash
    (``None`` for an empty chain). ``problems`` is empty exactly when ``ok`` is true; each
    entry names the file, the record's seq where there is one, and what is wrong.
    """

    ok: bool
    records: int
    verified_complete: int
    verified_incomplete: int
    head: str | None
    problems: tuple[str, ...]
    repairable: bool = False
    """True when there are problems and every one is the leftover of a killed session (a
    torn last line, a temporary file, a report without a record), which
    ``codegenie-eval repair`` fixes; false when any problem is tampering."""


class _Problem(NamedTuple):
    path: Path
    seq: int | None
    message: str
    repairable: bool = False  # what `codegenie-eval repair` fixes: a crash's leftovers

    def __str__(self) -> str:
        where = f"{self.path} (seq {self.seq})" if self.seq is not None else str(self.path)
        return f"{where}: {self.message}"


def format_verify_summary(result: VerifyResult) -> str:
    """The one-line summary ``codegenie-eval verify`` prints (docs/adr/0007-audit-chain.md)."""
    return (
        f"verified-complete {result.verified_complete} / "
        f"verified-incomplete {result.verified_incomplete}"
    )


# --------------------------------------------------------------------------- record checks


def _check_line(line: bytes) -> tuple[dict[str, object] | None, list[str]]:
    """Parse one chain line and check it on its own (not its links to its neighbours).

    Returns the record when it is usable for linking (a JSON object with well-typed known
    fields, even if its hash is wrong) and the list of what is wrong with it.
    """
    try:
        parsed = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return None, [f"not a valid JSON line ({exc})"]
    if not isinstance(parsed, dict):
        return None, [f"a record must be a JSON object, got {type(parsed).__name__}"]
    record: dict[str, object] = parsed
    missing = [name for name in RECORD_FIELDS if name not in record]
    if missing:
        return None, [f"record lacks field(s) {', '.join(missing)}"]
    seq = record["seq"]
    # bool is an int subclass; a seq of `true` is a type error, not seq 1
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        return None, [f"seq must be a non-negative integer, got {seq!r}"]
    wrong = [name for name in _STR_FIELDS if not isinstance(record[name], str)]
    if not isinstance(record["complete"], bool):
        wrong.append("complete")
    if not isinstance(record["hash"], str):
        wrong.append("hash")
    if KIND_FIELD in record and record[KIND_FIELD] not in RECORD_KINDS:
        wrong.append(KIND_FIELD)
    if SOURCES_FIELD in record and not _is_digest_list(record[SOURCES_FIELD]):
        wrong.append(SOURCES_FIELD)
    if KEYED_FIELD in record and record[KEYED_FIELD] is not True:
        wrong.append(KEYED_FIELD)
    if wrong:
        return None, [f"field(s) of the wrong type: {', '.join(wrong)}"]

    problems: list[str] = []
    for name in ("prev_hash", "report_digest", "hash"):
        value = record[name]
        assert isinstance(value, str)
        if not _HEX64.fullmatch(value):
            problems.append(f"{name} is not 64 lowercase hex characters")
    try:
        encoded = canonical_json(record)
    except ValueError as exc:  # NaN/inf smuggled in as an unknown field
        return None, [f"record cannot be encoded canonically ({exc})"]
    if encoded != line:
        # Same values, different bytes (spacing, key order, escapes, duplicate keys): the
        # writer only ever emits the canonical form, so someone edited this line.
        problems.append("line is not the canonical JSON encoding of its record (edited by hand?)")
    if record.get(KEYED_FIELD) is not True and _CHAIN_KEY.get() is not None:
        problems.append(
            "record is not keyed, but the chain is checked with a key: a keyed chain is keyed "
            "from its first record, so this one was written (or re-hashed) without the key"
        )
        return record, problems
    try:
        recomputed = record_hash(record)
    except KeyRequired as exc:
        problems.append(str(exc))
        return record, problems
    if recomputed != record["hash"]:
        problems.append(
            f"record hash mismatch (stored {str(record['hash'])[:16]}…, "
            f"recomputed {recomputed[:16]}…): the record was changed after it was written"
        )
    return record, problems


def _is_digest_list(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, str) and _HEX64.fullmatch(item) for item in value
    )


def _report_path_problem(report_path: str) -> str | None:
    """Refuse report paths that could point outside ``runs/`` (or at the chain itself)."""
    if _REPORT_PATH.fullmatch(report_path) is None:
        return f"report_path {report_path!r} is not of the form '{RUNS_DIR}/<name>'"
    return None


def _parse_when(value: str | datetime) -> datetime:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    # Report timestamps are UTC; a naive value is read as UTC rather than local time so the
    # same --since gives the same answer on every machine.
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


# --------------------------------------------------------------------------- locking / io


def writer_lock(out_dir: Path) -> filelock.BaseFileLock:
    """The lock every writer of the chain and of ``runs/`` holds (not yet acquired)."""
    return filelock.FileLock(str(out_dir / LOCK_FILE), timeout=LOCK_TIMEOUT_S)


@contextmanager
def lock_if_writable(out_dir: Path) -> Iterator[bool]:
    """Hold the writers' lock while reading, when the state directory allows it; yields
    whether it is held.

    Without it a reader could see an append half-written and report a torn tail that is
    only in flight. A read-only state directory (verify in CI, a mounted artifact) cannot
    create the lock file; there nobody appends, so reading without it is safe.
    """
    if not out_dir.is_dir():
        yield False
        return
    lock = writer_lock(out_dir)
    try:
        lock.acquire()
    except OSError:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_tail_line(chain: Path) -> bytes | None:
    """The chain's last line including its newline (``None`` if the chain is empty/missing).

    A returned value without a trailing newline is a torn tail.
    """
    try:
        handle = chain.open("rb")
    except FileNotFoundError:
        return None
    with handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return None
        buf = b""
        pos = size
        while pos > 0:
            step = min(_TAIL_BLOCK, pos)
            pos -= step
            handle.seek(pos)
            buf = handle.read(step) + buf
            # a newline before the final byte ends the previous line
            cut = buf.rfind(b"\n", 0, len(buf) - 1)
            if cut != -1:
                return buf[cut + 1 :]
        return buf


def _tail_record(chain: Path) -> dict[str, object] | None:
    """The last record, checked on its own; raises :class:`ChainTamperDetected` if it is bad."""
    line = _read_tail_line(chain)
    if line is None:
        return None
    if not line.endswith(b"\n"):
        raise ChainTamperDetected(chain, _torn_message(len(line)))
    record, problems = _check_line(line[:-1])
    seq = record["seq"] if record is not None else None
    if record is None or problems:
        raise ChainTamperDetected(
            chain, "last record: " + "; ".join(problems), seq if isinstance(seq, int) else None
        )
    return record


def _torn_message(length: int) -> str:
    return (
        f"torn last line ({length} bytes without a trailing newline): an append was "
        "interrupted or the file was cut; review it and restore the chain from a copy "
        "(appends are refused until then)"
    )


# --------------------------------------------------------------------------- writing


def _report_stem(report: BenchRunReport) -> str:
    try:
        created = _parse_when(report.created_at)
    except ValueError as exc:
        raise ValueError(
            f"report created_at {report.created_at!r} of run {report.run_id} is not an "
            f"ISO-8601 timestamp: {exc}"
        ) from exc
    stamp = created.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_id = report.run_id.removeprefix(PARTIAL_PREFIX)
    short = _UNSAFE_NAME_CHARS.sub("", run_id)[:8] or "run"
    # Several task classes share one session's run id; the task class keeps names apart
    # and tells a reader of runs/ what each file is.
    task = _UNSAFE_NAME_CHARS.sub("_", report.task_class).strip("._-")[:64] or "task"
    return f"{stamp}-{short}-{task}"


def _write_report(runs_dir: Path, report: BenchRunReport) -> tuple[Path, bytes]:
    """Write the report durably under a name that no existing file has (``-2``, ``-3``…
    before ``.json`` when the name is taken)."""
    data = (report.model_dump_json(indent=2) + "\n").encode("utf-8")
    return write_unique(runs_dir, _report_stem(report), ".json", data), data


def write_run_record(report: BenchRunReport, out_dir: Path) -> tuple[Path, str]:
    """Write ``report`` under ``out_dir/runs/`` and append its record to the audit chain.

    ``out_dir`` is the state directory (``.codegenie/eval``). The report is written
    atomically (temporary file, fsync, rename) and never over an existing file. Under the
    chain lock, the last record is checked (parses, canonical, hash right; not the whole
    chain, so appends stay O(1)) and the new record is appended and fsynced.

    A shard report's record has ``"kind": "shard"``; a merged report's has ``"kind":
    "merged"`` and the digests of the shard reports it was built from in ``sources``.

    Returns the report's path and the new chain head (the new record's hash). Raises
    :class:`ChainTamperDetected` if the chain's tail is torn or altered; the report file is
    then already on disk (its path is in the message) but not recorded.
    """
    runs_dir = out_dir / RUNS_DIR
    runs_dir.mkdir(parents=True, exist_ok=True)
    chain = out_dir / AUDIT_FILE
    with writer_lock(out_dir):
        report_file, data = _write_report(runs_dir, report)
        try:
            last = _tail_record(chain)
        except ChainTamperDetected as exc:
            raise ChainTamperDetected(
                chain,
                f"{exc.problem}; refusing to append: report {report_file} was written but "
                "is NOT recorded in the chain",
                exc.seq,
            ) from exc
        head = append_record(
            out_dir,
            last,
            {
                "created_at": report.created_at,
                "run_id": report.run_id,
                "task_class": report.task_class,
                "complete": report.complete,
                "report_path": report_file.relative_to(out_dir).as_posix(),
                "report_digest": _digest(data),
                **_kind_fields(report),
            },
        )
    return report_file, head


def _kind_fields(report: BenchRunReport) -> dict[str, object]:
    if report.shard is not None:
        return {KIND_FIELD: "shard"}
    if report.merged_from:
        return {
            KIND_FIELD: "merged",
            SOURCES_FIELD: [shard.report_digest for shard in report.merged_from],
        }
    return {}


def append_record(
    out_dir: Path, last: Mapping[str, object] | None, fields: Mapping[str, object]
) -> str:
    """Append one record with ``fields`` after ``last`` (the checked tail record, with its
    ``seq`` and ``hash``; ``None`` for the genesis record); the caller holds
    :func:`writer_lock`. Returns the new head."""
    chain = out_dir / AUDIT_FILE
    if last is None:
        seq, prev_hash = 0, GENESIS_PREV_HASH
    else:
        last_seq = last["seq"]
        assert isinstance(last_seq, int)
        seq, prev_hash = last_seq + 1, str(last["hash"])
    record: dict[str, object] = {"seq": seq, "prev_hash": prev_hash, **fields}
    if _CHAIN_KEY.get() is not None:
        record[KEYED_FIELD] = True
    head = record_hash(record)
    record["hash"] = head
    created = not chain.exists()
    fd = os.open(chain, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        # One write of the whole line: a crash leaves at most a torn tail, which the
        # next append and verify both detect.
        _write_all(fd, canonical_json(record) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(out_dir)
    return head


@dataclass(frozen=True)
class ChainRecord:
    """One record of the chain, typed (what every reader of the chain works with).

    ``kind`` is ``"run"`` for a run's own record (the field is absent on disk), else one of
    :data:`RECORD_KINDS`. ``sources`` lists the shard reports' digests of a merged run.
    """

    seq: int
    kind: str
    created_at: str
    run_id: str
    task_class: str
    complete: bool
    report_path: str
    report_digest: str
    hash: str
    sources: tuple[str, ...] = ()

    @property
    def is_run(self) -> bool:
        """Whether the record stands for a whole run of a task class: its own record, one
        adopted by repair, or a merge of shards. A shard is a part of a run (the merged
        record stands for it) and a repair record names a repair note."""
        return self.kind in RUN_KINDS

    @classmethod
    def parse(cls, raw: Mapping[str, object]) -> ChainRecord | None:
        """The typed record, or ``None`` when ``raw`` lacks a field or has one of the wrong
        type (:func:`verify` is what reports such a record)."""
        seq, complete, kind = raw.get("seq"), raw.get("complete"), raw.get(KIND_FIELD, "run")
        text = [raw.get(name) for name in _STR_FIELDS]
        sources = raw.get(SOURCES_FIELD, [])
        if (
            not isinstance(seq, int)
            or isinstance(seq, bool)
            or not isinstance(complete, bool)
            or not isinstance(raw.get("hash"), str)
            or not all(isinstance(value, str) for value in text)
            or kind not in ("run", *RECORD_KINDS)
            or not isinstance(sources, list)
            or not all(isinstance(item, str) for item in sources)
        ):
            return None
        return cls(
            seq=seq,
            kind=str(kind),
            created_at=str(raw["created_at"]),
            run_id=str(raw["run_id"]),
            task_class=str(raw["task_class"]),
            complete=complete,
            report_path=str(raw["report_path"]),
            report_digest=str(raw["report_digest"]),
            hash=str(raw["hash"]),
            sources=tuple(str(item) for item in sources),
        )


def records(out_dir: Path) -> Iterator[ChainRecord]:
    """Every record of the chain that parses, in chain order (what evidence is drawn
    from; :func:`verify` is what says whether the chain as a whole can be trusted)."""
    chain = out_dir / AUDIT_FILE
    try:
        lines = chain.read_bytes().splitlines()
    except FileNotFoundError:
        return
    for line in lines:
        try:
            raw = json.loads(line)
        except ValueError:
            continue  # verify() reports it; evidence simply does not include it
        record = ChainRecord.parse(raw) if isinstance(raw, dict) else None
        if record is not None:
            yield record


def chain_head(out_dir: Path) -> str | None:
    """The hash of the chain's last record, or ``None`` for an empty or missing chain.

    Reads only the tail of ``audit.jsonl`` and checks that last record on its own; raises
    :class:`ChainTamperDetected` if it is torn or altered. It does not verify the chain: use
    :func:`verify` for that.
    """
    chain = out_dir / AUDIT_FILE
    with lock_if_writable(out_dir):
        last = _tail_record(chain)
    return None if last is None else str(last["hash"])


# --------------------------------------------------------------------------- verifying


def _verify(
    out_dir: Path,
    since: str | datetime | None,
    expected_head: str | None,
    strict: bool,
) -> tuple[VerifyResult, list[_Problem]]:
    with lock_if_writable(out_dir):
        data = read_chain(out_dir)
        names_in_runs = report_files(out_dir) if strict else []
    return _verify_data(out_dir, data, names_in_runs, since, expected_head, strict)


def read_chain(out_dir: Path) -> bytes:
    """The whole chain file (empty when there is none yet); read it under the lock."""
    try:
        return (out_dir / AUDIT_FILE).read_bytes()
    except FileNotFoundError:
        return b""


def _verify_data(
    out_dir: Path,
    data: bytes,
    names_in_runs: list[str],
    since: str | datetime | None,
    expected_head: str | None,
    strict: bool,
) -> tuple[VerifyResult, list[_Problem]]:
    chain = out_dir / AUDIT_FILE
    since_at = _parse_when(since) if since is not None else None
    problems: list[_Problem] = []
    lines = data.split(b"\n")
    # A well-formed file ends with a newline, so the last piece is empty; anything else is a
    # torn tail (reported, never silently dropped).
    torn = lines.pop()
    records = 0
    verified_complete = 0
    verified_incomplete = 0
    prev_hash = GENESIS_PREV_HASH
    expected_seq = 0
    head: str | None = None
    hashes: set[str] = set()
    named: dict[str, int] = {}
    out_dir_str = str(out_dir)

    for index, line in enumerate(lines):
        records += 1
        record, line_problems = _check_line(line)
        if record is None:
            problems.extend(
                _Problem(chain, expected_seq, f"line {index + 1}: {message}")
                for message in line_problems
            )
            # Unusable record: the next one cannot be linked to it, so don't pile a
            # second complaint on the next line; just move on.
            prev_hash = ""
            expected_seq += 1
            continue
        seq = record["seq"]
        assert isinstance(seq, int)
        problems.extend(_Problem(chain, seq, message) for message in line_problems)
        intact = not line_problems
        if seq != expected_seq:
            problems.append(
                _Problem(
                    chain,
                    seq,
                    f"line {index + 1} has seq {seq}, expected {expected_seq}: a record was "
                    "removed, duplicated or reordered",
                )
            )
            intact = False
        if prev_hash and record["prev_hash"] != prev_hash:
            what = "the genesis value (64 zeros)" if index == 0 else "the previous record's hash"
            problems.append(
                _Problem(
                    chain,
                    seq,
                    f"prev_hash does not match {what}: a record was removed, inserted or "
                    "reordered before this one",
                )
            )
            intact = False
        own_hash = str(record["hash"])
        hashes.add(own_hash)
        head = own_hash
        prev_hash = own_hash
        # resynchronise so one missing record yields one complaint, not one per later record
        expected_seq = seq + 1

        if strict:
            unknown = sorted(set(record) - _KNOWN_FIELDS)
            if unknown:
                problems.append(_Problem(chain, seq, f"unknown field(s): {', '.join(unknown)}"))
                intact = False

        report_path = str(record["report_path"])
        path_problem = _report_path_problem(report_path)
        if path_problem is not None:
            problems.append(_Problem(chain, seq, path_problem))
            continue
        if report_path in named:
            problems.append(
                _Problem(
                    chain,
                    seq,
                    f"report {report_path} is already named by the record with seq "
                    f"{named[report_path]}: each run writes its own report",
                )
            )
            intact = False
        else:
            named[report_path] = seq

        created_at = str(record["created_at"])
        try:
            created = _parse_when(created_at)
        except ValueError:
            problems.append(_Problem(chain, seq, f"created_at {created_at!r} is not ISO-8601"))
            continue
        if since_at is not None and created < since_at:
            continue

        report_file = os.path.join(out_dir_str, report_path)
        report_problem = _check_report(report_file, record)
        if report_problem is not None:
            problems.append(_Problem(Path(report_file), seq, report_problem))
        elif intact:
            if record["complete"]:
                verified_complete += 1
            else:
                verified_incomplete += 1

    if torn:
        problems.append(_Problem(chain, expected_seq, _torn_message(len(torn)), True))

    if expected_head is not None and expected_head.lower() not in hashes:
        problems.append(
            _Problem(
                chain,
                None,
                f"expected head {expected_head} is not in the chain: records were removed "
                "from the end or the history was rewritten since that head was recorded",
            )
        )

    if strict:
        for name in names_in_runs:
            if f"{RUNS_DIR}/{name}" not in named:
                problems.append(
                    _Problem(
                        out_dir / RUNS_DIR / name,
                        None,
                        "not named by any audit record (strict): an unrecorded or "
                        "leftover file in runs/",
                        True,
                    )
                )

    result = VerifyResult(
        ok=not problems,
        records=records,
        verified_complete=verified_complete,
        verified_incomplete=verified_incomplete,
        head=head,
        problems=tuple(str(problem) for problem in problems),
        repairable=bool(problems) and all(problem.repairable for problem in problems),
    )
    return result, problems


def verify_chain_bytes(out_dir: Path, data: bytes) -> VerifyResult:
    """Verify ``data`` as the chain of ``out_dir`` (links, records and the reports they
    name): what :func:`verify` does with bytes a caller already read under
    :func:`writer_lock`."""
    result, _ = _verify_data(out_dir, data, [], None, None, False)
    return result


def report_files(out_dir: Path) -> list[str]:
    """The names of the files in ``runs/``, sorted (recorded or not)."""
    try:
        with os.scandir(out_dir / RUNS_DIR) as entries:
            return sorted(entry.name for entry in entries)
    except FileNotFoundError:
        return []


def _check_report(report_file: str, record: Mapping[str, object]) -> str | None:
    """What is wrong with the report a record names, or ``None`` if it verifies."""
    try:
        with open(report_file, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return "report file is missing (deleted or moved after it was recorded)"
    except OSError as exc:
        return f"report file cannot be read: {exc}"
    if _digest(data) != record["report_digest"]:
        return "report digest mismatch: the report was changed after it was recorded"
    # Deliberately no parse of the report: the digest already binds every byte, and parsing
    # would make verify scale with report size (reports with many cases are tens of KB).
    return None


def verify(
    out_dir: Path,
    since: str | datetime | None = None,
    *,
    expected_head: str | None = None,
    strict: bool = False,
) -> VerifyResult:
    """Walk the whole audit chain in ``out_dir`` and the reports it names.

    Every record's encoding, hash, seq and link to its predecessor is checked from genesis.
    ``since`` (ISO-8601 string or datetime; naive means UTC) restricts which records'
    *reports* are checked and counted; links are always checked for the whole chain.
    ``expected_head`` fails the check unless a record with that hash is in the chain: since
    links are checked from genesis, that proves history up to it is unchanged, and it is the
    only way to notice records removed from the end. ``strict`` also fails on files in
    ``runs/`` that no record names and on unknown record fields. A missing ``audit.jsonl``
    is an empty, valid chain. Raises :class:`ValueError` for an unparsable ``since``.
    """
    result, _ = _verify(out_dir, since, expected_head, strict)
    return result


def verify_or_raise(
    out_dir: Path,
    since: str | datetime | None = None,
    *,
    expected_head: str | None = None,
    strict: bool = False,
) -> VerifyResult:
    """Like :func:`verify`, but raise :class:`ChainTamperDetected` with the first problem."""
    result, problems = _verify(out_dir, since, expected_head, strict)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise ChainTamperDetected(first.path, first.message + more, first.seq)
    return result
