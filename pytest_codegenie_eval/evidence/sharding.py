"""Shard and merge: one run split across CI matrix jobs, joined back into one report.

``--codegenie-shard=I/N`` runs the cases whose shard is I (below), and writes a shard report
that records ``shard: I/N`` and the task class's full case list with every case's digest.
``codegenie-eval merge`` checks that a set of shard reports is one run (same task class,
cases, SUT, rubric, harness and repeats; disjoint; every shard present and whole; each
recorded in its own audit chain) and builds the report a single machine would have built
from the same results: :func:`~pytest_codegenie_eval.evidence.aggregate.build_report` over their
union, so the aggregate, the bound and the run id are identical.

Which shard a case belongs to is :mod:`pytest_codegenie_eval.evidence.shards`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_codegenie_eval.errors import ShardMergeError
from pytest_codegenie_eval.evidence.shards import shard_of
from pytest_codegenie_eval.hashing import blake3_hex
from pytest_codegenie_eval.models import (
    BenchRunReport,
    CaseResult,
    MergedShard,
    ShardInfo,
)
from pytest_codegenie_eval.store.audit import records, verify
from pytest_codegenie_eval.store.reports import ReportUnreadable, parse_report, read_bytes
from pytest_codegenie_eval.store.statedir import AUDIT_FILE, RUNS_DIR

# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class ShardSource:
    """One shard report to merge, where it came from and how it was recorded."""

    path: Path
    report: BenchRunReport
    digest: str  # BLAKE3 of the file's bytes
    chain_head: str | None  # of the audit chain that records it (None: --allow-unrecorded)

    @property
    def shard(self) -> ShardInfo:
        assert self.report.shard is not None
        return self.report.shard


def _read_shard(path: Path) -> tuple[BenchRunReport, bytes]:
    try:
        data = read_bytes(path)
        report = parse_report(data, path)
    except ReportUnreadable as exc:
        raise ShardMergeError(path, exc.problem) from exc
    if report.shard is None:
        raise ShardMergeError(
            path, "is not a shard report (it was not written by a --codegenie-shard=I/N run)"
        )
    return report, data


def _checked_chain(state_dir: Path, about: Path) -> str | None:
    """Verify a shard's own state directory; the head, or a typed error naming ``about``."""
    result = verify(state_dir)
    if not result.ok:
        raise ShardMergeError(
            about,
            f"its audit chain {state_dir / AUDIT_FILE} does not verify: {result.problems[0]}",
        )
    return result.head


def _from_file(path: Path, allow_unrecorded: bool) -> ShardSource:
    report, data = _read_shard(path)
    digest = blake3_hex(data)
    state_dir = path.parent.parent
    if path.parent.name != RUNS_DIR or not (state_dir / AUDIT_FILE).is_file():
        if allow_unrecorded:
            return ShardSource(path, report, digest, None)
        raise ShardMergeError(
            path,
            "has no audit chain beside it (a shard report is read from <state dir>/runs/, "
            "with <state dir>/audit.jsonl); pass the shard's state directory, or "
            "--allow-unrecorded to merge a bare report file",
        )
    head = _checked_chain(state_dir, path)
    name = f"{RUNS_DIR}/{path.name}"
    if not any(r.report_path == name and r.report_digest == digest for r in records(state_dir)):
        raise ShardMergeError(path, f"is not recorded in {state_dir / AUDIT_FILE} with these bytes")
    return ShardSource(path, report, digest, head)


def _state_dirs(root: Path) -> list[Path]:
    found = {chain.parent for chain in root.rglob(AUDIT_FILE) if chain.is_file()}
    return sorted(found)


def _from_state_dir(state_dir: Path) -> list[ShardSource]:
    """The newest shard report of each task class and shard in one state directory (a
    shard job that was re-run replaces its earlier attempt)."""
    head = _checked_chain(state_dir, state_dir)
    newest: dict[tuple[str, int, int], ShardSource] = {}
    for record in records(state_dir):
        if record.kind != "shard":
            continue
        path = state_dir / record.report_path
        report, data = _read_shard(path)
        shard = report.shard
        assert shard is not None
        digest = blake3_hex(data)
        newest[(report.task_class, shard.count, shard.index)] = ShardSource(
            path, report, digest, head
        )
    return list(newest.values())


def find_shard_sources(
    inputs: Iterable[Path], *, allow_unrecorded: bool, notes: list[str] | None = None
) -> list[ShardSource]:
    """Shard reports named by files, or found in state directories under directories (a
    directory of downloaded CI artifacts: every ``audit.jsonl`` below it is one job's
    state directory). The same report read twice (the same bytes, from one path or two) is
    kept once, and a line saying so is appended to ``notes``."""
    sources: list[ShardSource] = []
    for item in inputs:
        if item.is_dir():
            dirs = _state_dirs(item)
            if not dirs:
                raise ShardMergeError(item, f"holds no state directory (no {AUDIT_FILE} below it)")
            found = [source for d in dirs for source in _from_state_dir(d)]
            if not found:
                raise ShardMergeError(item, "holds no shard report (no record of kind 'shard')")
            sources += found
        elif item.is_file():
            sources.append(_from_file(item, allow_unrecorded))
        else:
            raise ShardMergeError(item, "does not exist")
    kept: dict[str, ShardSource] = {}
    for source in sources:
        seen = kept.get(source.digest)
        if seen is None:
            kept[source.digest] = source
        elif notes is not None:
            same = (
                "read twice" if seen.path.resolve() == source.path.resolve() else "the same bytes"
            )
            notes.append(
                f"{source.path}: {same} as {seen.path} (shard {source.shard.label} of "
                f"{source.report.task_class}); merged once"
            )
    return list(kept.values())


# --------------------------------------------------------------------------- merging


def _same(sources: Sequence[ShardSource], what: str, get: Callable[[ShardSource], object]) -> None:
    """Every shard agrees with the first on ``get``; a typed error names the first that
    does not."""
    first = sources[0]
    value = get(first)
    for source in sources[1:]:
        if get(source) != value:
            raise ShardMergeError(
                source.path,
                f"shard {source.shard.label} of {first.report.task_class} has a different "
                f"{what} than shard {first.shard.label} ({first.path}): {get(source)!r} != "
                f"{value!r}; every shard must run the same bench, SUT and harness",
            )


def _first_case_difference(a: ShardInfo, b: ShardInfo) -> str:
    mine = {c.case_id: c.case_digest for c in a.cases}
    theirs = {c.case_id: c.case_digest for c in b.cases}
    for case_id in sorted(set(mine) | set(theirs)):
        if case_id not in mine:
            return f"case {case_id} is not in this shard's case list"
        if case_id not in theirs:
            return f"case {case_id} is only in this shard's case list"
        if mine[case_id] != theirs[case_id]:
            return f"case {case_id} has digest {mine[case_id][:16]}…, not {theirs[case_id][:16]}…"
    return "the case lists differ"


def _check_group(sources: Sequence[ShardSource]) -> dict[int, ShardSource]:
    """Every consistency rule of one task class's shards; the shards by index."""
    first = sources[0]
    task_class = first.report.task_class
    _same(sources, "shard count", lambda s: s.shard.count)
    for source in sources[1:]:
        if source.shard.cases != first.shard.cases:
            raise ShardMergeError(
                source.path,
                f"shard {source.shard.label} of {task_class} ran a different bench than shard "
                f"{first.shard.label} ({first.path}): "
                + _first_case_difference(source.shard, first.shard),
            )
    _same(sources, "rubric digest", lambda s: s.shard.rubric_digest)
    _same(sources, "repeats", lambda s: s.report.repeats)
    _same(sources, "harness version", lambda s: s.report.harness_version)
    suts = {s.report.sut_digest for s in sources if s.report.sut_digest}
    if len(suts) > 1 or "mixed" in suts:
        odd = next(s for s in sources if s.report.sut_digest not in ("", first.report.sut_digest))
        raise ShardMergeError(
            odd.path,
            f"shard {odd.shard.label} of {task_class} ran a different SUT (digest "
            f"{odd.report.sut_digest[:16]}…) than the other shards; every shard must run the "
            "same SUT",
        )

    by_index: dict[int, ShardSource] = {}
    for source in sources:
        index = source.shard.index
        if index in by_index:
            raise ShardMergeError(
                source.path,
                f"duplicates shard {source.shard.label} of {task_class}, also read from "
                f"{by_index[index].path}; merge one report per shard",
            )
        by_index[index] = source
    count = first.shard.count
    missing = [i for i in range(1, count + 1) if i not in by_index]
    if missing:
        have = ", ".join(f"{i}/{count} ({by_index[i].path})" for i in sorted(by_index))
        raise ShardMergeError(
            None,
            f"{task_class}: shard(s) {', '.join(f'{i}/{count}' for i in missing)} missing "
            f"(have {have}); every shard must be merged for a complete run",
        )
    for source in sources:
        report = source.report
        if report.incomplete_reason != "shard":
            why = (
                "the cost cap stopped it"
                if report.incomplete_reason == "cost_cap"
                else ("not every case of the shard ran (a -k or node id selection?)")
            )
            raise ShardMergeError(
                source.path, f"shard {source.shard.label} of {task_class} is partial: {why}"
            )
    return by_index


def _check_cases(by_index: dict[int, ShardSource]) -> list[CaseResult]:
    """Each result sits in the shard its case belongs to, once, with the listed digest."""
    owner: dict[str, ShardSource] = {}
    results: list[CaseResult] = []
    for index in sorted(by_index):
        source = by_index[index]
        listed = {c.case_id: c.case_digest for c in source.shard.cases}
        for result in source.report.cases:
            label = source.shard.label
            if result.case_id not in listed:
                raise ShardMergeError(
                    source.path, f"shard {label} holds case {result.case_id}, not in its case list"
                )
            home = shard_of(result.case_id, source.shard.count)
            if home != index:
                raise ShardMergeError(
                    source.path,
                    f"shard {label} holds case {result.case_id}, which belongs to shard "
                    f"{home}/{source.shard.count}",
                )
            if result.case_digest and listed[result.case_id] not in ("", result.case_digest):
                raise ShardMergeError(
                    source.path,
                    f"shard {label}: case {result.case_id} was scored with digest "
                    f"{result.case_digest[:16]}…, its case list says "
                    f"{listed[result.case_id][:16]}…",
                )
            other = owner.get(result.case_id)
            if other is not None and other is not source:
                raise ShardMergeError(
                    source.path, f"case {result.case_id} is in shard {label} and in {other.path}"
                )
            owner[result.case_id] = source
            results.append(result)
    return results


def merge_group(sources: Sequence[ShardSource]) -> BenchRunReport:
    """One task class's shards merged into the report a single machine would write."""
    from pytest_codegenie_eval.evidence.aggregate import build_report

    by_index = _check_group(sources)
    results = _check_cases(by_index)
    first = sources[0]
    return build_report(
        first.report.task_class,
        results,
        harness_version=first.report.harness_version,
        cases_total=len(first.shard.cases),
        repeats=first.report.repeats,
        scores=first.report.scores,
        merged_from=tuple(
            MergedShard(
                index=s.shard.index,
                count=s.shard.count,
                run_id=s.report.run_id,
                report_digest=s.digest,
                source=str(s.path),
                chain_head=s.chain_head,
            )
            for s in (by_index[i] for i in sorted(by_index))
        ),
    )


def merge_shards(
    sources: Sequence[ShardSource], *, task_class: str | None = None
) -> list[BenchRunReport]:
    """Group shard reports by task class and merge each group (typed errors name the
    shard that breaks a rule)."""
    groups: dict[str, list[ShardSource]] = {}
    for source in sources:
        if task_class is None or source.report.task_class == task_class:
            groups.setdefault(source.report.task_class, []).append(source)
    if not groups:
        wanted = f" of task class {task_class!r}" if task_class else ""
        raise ShardMergeError(None, f"no shard reports{wanted} to merge")
    return [merge_group(groups[name]) for name in sorted(groups)]
