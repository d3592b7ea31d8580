"""Run reports in the state directory: the one reader of ``runs/*.json``.

Every consumer (the verdict, ``compare``, ``merge``, the results page) reads reports through
this module, with one error policy:

- :func:`read_report` reads one file and raises :class:`ReportUnreadable` naming the file
  and the field that is wrong;
- :func:`recorded_reports` walks the chain and gives each record with its report, or with
  the reason it could not be read (a missing or edited report is shown, never skipped
  silently, and never counted as evidence);
- :func:`evidence` is what the gate judges: the whole runs of one task class, oldest first;
- :func:`resolve` turns a reference (a file, a run id, ``latest:TASK_CLASS[:SUT]``) into a
  report.

Writing a report and its record is :func:`~pytest_codegenie_eval.store.audit.write_run_record`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from pytest_codegenie_eval.errors import CodegenieEvalError
from pytest_codegenie_eval.hashing import blake3_hex
from pytest_codegenie_eval.models import PARTIAL_PREFIX, BenchRunReport
from pytest_codegenie_eval.store.audit import ChainRecord, records

LATEST = "latest:"


class ReportUnreadable(CodegenieEvalError):
    """A run report that cannot be read or is not a run report; names the file and field."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path} {problem}")


class ReportNotFound(CodegenieEvalError):
    """A reference (path, run id, ``latest:``) that names no readable run report."""


def parse_report(data: bytes, path: Path) -> BenchRunReport:
    """``data`` (the bytes of ``path``) as a run report; :class:`ReportUnreadable` names
    the first field that is wrong."""
    try:
        return BenchRunReport.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(document)"
        raise ReportUnreadable(
            path, f"is not a run report: {where}: {first['msg']} ({exc.error_count()} error(s))"
        ) from exc


def read_report(path: Path) -> BenchRunReport:
    """The run report in ``path``; :class:`ReportUnreadable` when it cannot be read or is
    not a run report."""
    return parse_report(read_bytes(path), path)


def read_bytes(path: Path) -> bytes:
    """A report file's bytes; :class:`ReportUnreadable` when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ReportUnreadable(path, f"cannot be read: {exc.strerror or exc}") from exc


@dataclass(frozen=True)
class RecordedReport:
    """A chain record and the report it names, as far as it could be read."""

    record: ChainRecord
    report: BenchRunReport | None  # None: missing, unreadable or not a run report
    digest_matches: bool  # the report's bytes are the ones the record names
    problem: str | None = None  # why ``report`` is None

    @property
    def is_evidence(self) -> bool:
        """A whole run whose report is present (what the gate's evidence window holds). A run
        adopted by ``repair`` is recorded but never evidence: its session was killed before it
        recorded the run, so adopting it must not change which run is the newest or what a
        verdict says (``docs/adr/0023-adopted-runs-are-not-evidence.md``)."""
        return (
            self.report is not None
            and self.record.is_run
            and self.record.kind != "adopted"
            and self.report.shard is None
        )


def read_recorded(state_dir: Path, record: ChainRecord) -> RecordedReport:
    """The report ``record`` names, read and checked against the record's digest."""
    path = state_dir / record.report_path
    try:
        data = read_bytes(path)
        report = parse_report(data, path)
    except ReportUnreadable as exc:
        return RecordedReport(record, None, False, exc.problem)
    return RecordedReport(record, report, blake3_hex(data) == record.report_digest)


def recorded_reports(state_dir: Path, *, task_class: str | None = None) -> Iterator[RecordedReport]:
    """Every record of the chain that names a report of a task class (a repair record
    names a repair note and is left out), with that report, in chain order; only those of
    ``task_class`` when it is given."""
    for record in records(state_dir):
        if record.kind == "repair" or (task_class is not None and record.task_class != task_class):
            continue
        yield read_recorded(state_dir, record)


@dataclass(frozen=True)
class Evidence:
    """The recorded whole runs of one task class, oldest first, with the digests the chain
    gives their reports."""

    reports: tuple[BenchRunReport, ...]
    digests: tuple[str, ...]

    @classmethod
    def of(cls, entries: Iterator[RecordedReport] | list[RecordedReport]) -> Evidence:
        runs = [(e.report, e.record.report_digest) for e in entries if e.is_evidence]
        return cls(
            tuple(report for report, _ in runs if report is not None),
            tuple(digest for _, digest in runs),
        )


def evidence(state_dir: Path, task_class: str) -> Evidence:
    """Every whole run of ``task_class`` the chain records, in chain order (shard reports
    are left out: the merged record stands for them)."""
    return Evidence.of(recorded_reports(state_dir, task_class=task_class))


def resolve(reference: str, state_dir: Path) -> BenchRunReport:
    """A run report named by a path, by a run id (or its first 8+ hex digits) recorded in
    the chain, or by ``latest:TASK_CLASS`` / ``latest:TASK_CLASS:SUT`` (the newest complete run
    of that task class, optionally of the SUT whose name is given).

    Raises :class:`ReportNotFound` for a reference that names nothing, and
    :class:`ReportUnreadable` for a named report that cannot be read.
    """
    path = Path(reference)
    if path.is_file():
        return read_report(path)
    if reference.startswith(LATEST):
        task_class, _, sut = reference.removeprefix(LATEST).partition(":")
        runs = [r for r in evidence(state_dir, task_class).reports if not sut or r.sut == sut]
        for report in reversed(runs):
            if report.complete:  # a -k debugging run is never chosen silently
                return report
        what = f"task class {task_class!r}" + (f" and SUT {sut!r}" if sut else "")
        if runs:
            raise ReportNotFound(
                f"no complete run of {what} is recorded in {state_dir} ({len(runs)} partial "
                f"run(s): name one by its run id, e.g. {runs[-1].run_id[:16]})"
            )
        raise ReportNotFound(f"no run of {what} is recorded in {state_dir}")
    ref = reference.lower().removeprefix(PARTIAL_PREFIX)
    if len(ref) >= 8 and all(ch in "0123456789abcdef" for ch in ref):
        matches = [
            r
            for r in records(state_dir)
            if r.run_id.removeprefix(PARTIAL_PREFIX).startswith(ref) and r.kind != "repair"
        ]
        if matches:
            return read_report(state_dir / matches[-1].report_path)
    raise ReportNotFound(
        f"{reference!r} is not a report file, a recorded run id (8+ hex digits) or "
        f"latest:TASK_CLASS[:SUT] (state directory {state_dir})"
    )


__all__ = [
    "LATEST",
    "Evidence",
    "RecordedReport",
    "ReportNotFound",
    "ReportUnreadable",
    "evidence",
    "parse_report",
    "read_recorded",
    "read_report",
    "recorded_reports",
    "resolve",
]
