"""Session end: the per-case results of one session become evidence, in one pipeline.

:func:`finish` reads top to bottom — recheck → aggregate → record → verify once → verdict →
compare → results page → JSONL — and returns a :class:`SessionEnd` that the renderers print
(``output/terminal.py``, ``output/junit.py``, ``output/github.py``) and the reporter turns
into an exit status (:meth:`SessionEnd.fails_run`). Nothing here prints.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from pytest_codegenie_eval.errors import CodegenieEvalError
from pytest_codegenie_eval.evidence.aggregate import build_report
from pytest_codegenie_eval.execution.attempt import HARNESS_VERSION
from pytest_codegenie_eval.execution.tamper import recheck_at_session_end
from pytest_codegenie_eval.models import BenchRunReport, CaseResult, PromotionVerdict, ShardInfo
from pytest_codegenie_eval.pytest_plugin.session import BenchSession
from pytest_codegenie_eval.store.audit import VerifyResult, write_run_record


@dataclass(frozen=True)
class TaskClassOutcome:
    """What session end produced for one task class."""

    report: BenchRunReport
    report_path: Path | None
    chain_head: str | None
    verdict: PromotionVerdict | None = None
    recommendation: Path | None = None
    error: str | None = None  # why the report or its record could not be written


@dataclass
class SessionEnd:
    """Everything session end produced, for the renderers and the exit status."""

    outcomes: list[TaskClassOutcome] = field(default_factory=list)
    verdict_errors: list[str] = field(default_factory=list)
    write_errors: list[str] = field(default_factory=list)
    comparisons: list[str] = field(default_factory=list)  # --codegenie-compare-to
    html_index: Path | None = None  # --codegenie-html
    jsonl_path: str | None = None  # --codegenie-jsonl
    gate: str | None = None  # --codegenie-gate: the line saying what decided the exit

    def gate_passes(self, tier: str) -> bool:
        """Every task class of the session has a verdict for ``tier`` and it is sufficient."""
        return bool(self.outcomes) and all(
            o.verdict is not None and o.verdict.tier == tier and o.verdict.evidence_sufficient
            for o in self.outcomes
        )

    def fails_run(self, bench: BenchSession) -> bool:
        """Whether a run whose items all passed still fails: a case changed after it
        passed, a report or record (or an output asked for) that could not be written, an
        attempt whose cache entry, ledger line, diff or transcript could not be kept, or,
        when asked, a partial run (a whole shard is a part by design, not a partial run)."""
        unrecorded = any(o.error for o in self.outcomes) or bool(self.write_errors)
        # a measured result the harness could not fully keep (a full or read-only disk)
        unrecorded = unrecorded or any(o.report.harness_write_failures for o in self.outcomes)
        partial = bench.settings.fail_on_partial and any(
            not o.report.complete and o.report.incomplete_reason != "shard" for o in self.outcomes
        )
        return bool(bench.outcome.tampered_after_pass) or unrecorded or partial


def finish(bench: BenchSession, results: Iterable[CaseResult]) -> SessionEnd:
    """Turn the session's case results into recorded evidence, one task class at a time."""
    end = SessionEnd()
    by_class = _by_task_class(bench, results)
    for task_class, class_results in sorted(by_class.items()):
        checked = _recheck(bench, task_class, class_results)
        report = _aggregate(bench, task_class, checked)
        end.outcomes.append(_record(bench, report))
    # every run is recorded: the chain is verified once, and every verdict and the results
    # page judge from that one verification
    check = _verify_once(bench, end)
    for index, outcome in enumerate(end.outcomes):
        if outcome.report_path is not None:
            verdict, recommendation = _verdict(bench, end, outcome.report.task_class, check)
            end.outcomes[index] = replace(outcome, verdict=verdict, recommendation=recommendation)
        end.comparisons += _compare(bench, outcome.report)
    if bench.settings.html is not None and end.outcomes:
        _build_html(bench, end, bench.settings.html, check)
    if bench.settings.jsonl:
        _write_jsonl(bench, end, bench.settings.jsonl)
    return end


# -- the steps ----------------------------------------------------------------------------


def _by_task_class(
    bench: BenchSession, results: Iterable[CaseResult]
) -> dict[str, list[CaseResult]]:
    by_class: dict[str, list[CaseResult]] = {}
    for result in results:
        by_class.setdefault(result.task_class, []).append(result)
        if any(fm.code == "harness.digest_mismatch" for fm in result.failure_modes):
            bench.outcome.digest_mismatch = True
    if bench.settings.shard is not None:
        # a shard with no case of some task class still reports it, so that merge can tell
        # an empty shard from a missing one
        for name in bench.settings.benches:
            by_class.setdefault(name, [])
    return by_class


def _recheck(bench: BenchSession, task_class: str, results: list[CaseResult]) -> list[CaseResult]:
    """A passed case whose bench files changed before the session ended fails now."""
    loaded = bench.loaded(task_class)
    if loaded is None:
        return results
    checked = recheck_at_session_end(loaded, results)
    bench.outcome.tampered_after_pass += tuple(
        f"{after.task_class}/{after.case_id}"
        for before, after in zip(results, checked, strict=True)
        if before.passed and not after.passed
    )
    return checked


def _aggregate(bench: BenchSession, task_class: str, results: list[CaseResult]) -> BenchRunReport:
    loaded = bench.loaded(task_class)
    report = build_report(
        task_class,
        results,
        harness_version=HARNESS_VERSION,
        cases_total=len(loaded.cases) + len(loaded.orphan_pins) if loaded else None,
        repeats=bench.settings.repeat,
        shard=_shard_info(bench, task_class, results),
        scores="pass_fail" if loaded and loaded.task_class.scores == "pass_fail" else "graded",
    )
    if bench.settings.label:
        report = report.model_copy(update={"label": bench.settings.label})
    if report.incomplete_reason == "cost_cap":
        bench.outcome.cost_cap_hit = True
    return report


def _shard_info(
    bench: BenchSession, task_class: str, results: list[CaseResult]
) -> ShardInfo | None:
    shard = bench.settings.shard
    if shard is None:
        return None
    from pytest_codegenie_eval.evidence.shards import shard_info, shard_info_seen

    loaded = bench.loaded(task_class)
    if loaded is not None:
        return shard_info(loaded, shard)
    # the task class could not be loaded: its case list is what this shard saw
    return shard_info_seen(shard, (r.case_id for r in results))


def _record(bench: BenchSession, report: BenchRunReport) -> TaskClassOutcome:
    try:
        path, head = write_run_record(report, bench.settings.state_dir)
    except CodegenieEvalError as exc:
        bench.outcome.chain_tampered = True
        return TaskClassOutcome(report, None, None, error=str(exc))
    except OSError as exc:  # unwritable or full state directory: not tampering
        error = f"could not write the run report or its record: {exc}"
        return TaskClassOutcome(report, None, None, error=error)
    return TaskClassOutcome(report, path, head)


def _verify_once(bench: BenchSession, end: SessionEnd) -> VerifyResult | None:
    """The chain's verification after this session's records, made once (``None`` when
    nothing needs it: no verdict and no results page)."""
    settings = bench.settings
    wanted = settings.html is not None or settings.verdict_tier is not None
    wanted = wanted or settings.tiers_path.is_file()
    if not wanted or not any(o.report_path for o in end.outcomes):
        return None
    from pytest_codegenie_eval.store.audit import verify

    return verify(settings.state_dir)


def _verdict(
    bench: BenchSession, end: SessionEnd, task_class: str, check: VerifyResult | None
) -> tuple[PromotionVerdict | None, Path | None]:
    settings = bench.settings
    loaded = bench.loaded(task_class)
    if loaded is None:
        return None, None
    if settings.verdict_tier is None and not settings.tiers_path.is_file():
        return None, None
    from pytest_codegenie_eval.evidence.verdicts import recommend

    try:
        found = recommend(
            state_dir=settings.state_dir,
            tiers_path=settings.tiers_path,
            task_class=loaded.task_class,
            tier=settings.verdict_tier,
            check=check,
        )
        if found.not_written is not None:
            # an asked-for verdict is an output the run must deliver; an automatic one is
            # advice, reported without failing the run
            asked = settings.verdict_tier is not None
            (end.write_errors if asked else end.verdict_errors).append(
                f"{task_class}: {found.not_written}"
            )
        return found.verdict, found.path
    except CodegenieEvalError as exc:
        # an asked-for tier was checked before the run; this is a broken tier file met
        # while looking for an automatic recommendation (or files changed mid-run)
        end.verdict_errors.append(f"{task_class}: no verdict: {exc}")
        return None, None


def _compare(bench: BenchSession, report: BenchRunReport) -> list[str]:
    reference = bench.compare_reference
    if reference is None or reference.task_class != report.task_class:
        return []
    from pytest_codegenie_eval.evidence.compare import compare, format_comparison

    return format_comparison(compare(reference, report))


def _build_html(
    bench: BenchSession, end: SessionEnd, out: Path, check: VerifyResult | None
) -> None:
    from pytest_codegenie_eval.output.html import build_site

    settings = bench.settings
    try:
        built = build_site(
            settings.state_dir,
            out,
            tiers_path=settings.tiers_path,
            bench_root=settings.bench_root,
            check=check,
            known=bench.registered(),
        )
    except (CodegenieEvalError, OSError) as exc:
        end.write_errors.append(f"could not build the results page in {out}: {exc}")
        return
    end.html_index = built.index


def _write_jsonl(bench: BenchSession, end: SessionEnd, target: str) -> None:
    from pytest_codegenie_eval.output.jsonl import render_jsonl

    text = render_jsonl((o.report, o.chain_head) for o in end.outcomes)
    if target == "-":
        terminal = bench.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is not None:
            terminal.write_line("")  # progress output may have left a partial line
        # json.dumps already escapes every control character; a "##[" (which GitHub's
        # runner obeys anywhere in a log line) can only sit inside a JSON string, where
        # "##\u005b" is the same value
        sys.stdout.write(text.replace("##[", "##\\u005b"))
        sys.stdout.flush()
        end.jsonl_path = "-"
        return
    path = Path(target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        end.write_errors.append(f"could not write --codegenie-jsonl {target}: {exc}")
        return
    end.jsonl_path = str(path)
