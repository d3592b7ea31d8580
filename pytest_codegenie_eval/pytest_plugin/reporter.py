"""The controller-side reporter: per-case results in, evidence out (README.md).

Created only where pytest is not an xdist worker. It reads each case's JSON payload from the
test report's ``user_properties`` (so it works whether cases ran here or on workers), treats
a crashed worker's case as a failed case, and at session end writes, per task class, the
run report, the audit record, the JSONL stream and the optional promotion verdict.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from pytest_codegenie_eval.errors import CodegenieEvalError
from pytest_codegenie_eval.evidence.aggregate import build_report
from pytest_codegenie_eval.evidence.promotion import format_verdict
from pytest_codegenie_eval.execution.attempt import HARNESS_VERSION, recheck_at_session_end
from pytest_codegenie_eval.execution.results import worker_crashed
from pytest_codegenie_eval.models import (
    BenchRunReport,
    CaseResult,
    PromotionVerdict,
    ShardCase,
    ShardInfo,
)
from pytest_codegenie_eval.output.jsonl import render_jsonl
from pytest_codegenie_eval.output.junit import add_suite_properties, name_case, suite_properties
from pytest_codegenie_eval.output.untrusted_text import fenced, safe_lines
from pytest_codegenie_eval.pytest_plugin.session import PAYLOAD_PROPERTY, BenchSession
from pytest_codegenie_eval.store.audit import VerifyResult, write_run_record
from pytest_codegenie_eval.taskclass.layout import attempt_from_nodeid


def _cached_cost(r: BenchRunReport) -> str:
    """What the cached results cost when they were measured: a rerun of a stochastic agent
    that hits the cache is not a free, fresh measurement."""
    origins = [c.cached_from for c in r.cases if c.cached and c.cached_from is not None]
    if not origins:
        return ""
    spent = sum(o.cost_usd for o in origins)
    sessions = len({o.run_scope for o in origins})
    return (
        f" (cached results: measured earlier in {sessions} session(s) for {spent:.4f} USD; "
        "--codegenie-no-cache measures a stochastic agent afresh)"
    )


def _repeat_line(r: BenchRunReport) -> str:
    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    k = r.repeats
    return (
        f"repeats: {k} per case ({len(r.cases)} attempts); a case passes when all {k} do; "
        f"pass@1 {shown(r.pass_at_1)}, pass@{k} {shown(r.pass_at_k)}, "
        f"pass^{k} {shown(r.pass_hat_k)}, within-case variance "
        f"{shown(r.within_case_variance)}, clustered SE {shown(r.clustered_standard_error)}"
    )


@dataclass(frozen=True)
class TaskClassOutcome:
    """What session end produced for one task class."""

    report: BenchRunReport
    report_path: Path | None
    chain_head: str | None
    verdict: PromotionVerdict | None = None
    recommendation: Path | None = None
    error: str | None = None


class EvalReporter:
    """Collects case payloads during the run and turns them into evidence at the end.

    Registered as a plugin on the controller only (never on an xdist worker); its hooks
    collect in ``pytest_runtest_logreport``, write in ``pytest_sessionfinish``, print in
    ``pytest_terminal_summary`` and unregister in ``pytest_unconfigure``.
    """

    PLUGIN_NAME = "codegenie_eval_reporter"

    def __init__(self, bench: BenchSession) -> None:
        self.bench = bench
        self.results: dict[str, CaseResult] = {}
        self.outcomes: list[TaskClassOutcome] = []
        self.jsonl_path: str | None = None
        self.verdict_errors: list[str] = []
        self.write_errors: list[str] = []
        self.comparisons: list[str] = []  # --codegenie-compare-to
        self.html_index: Path | None = None  # --codegenie-html

    # -- collection of results -----------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)  # before junitxml records the test case
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._junit_names(report)
        self._collect(report)

    def _junit_names(self, report: pytest.TestReport) -> None:
        where = attempt_from_nodeid(report.nodeid)
        if where is not None:
            name_case(self.bench.config, report, task_class=where[0])

    def _collect(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == PAYLOAD_PROPERTY and isinstance(value, str):
                self.results[report.nodeid] = CaseResult.model_validate_json(value)
                return
        if str(report.when) == "???" and report.nodeid not in self.results:
            # xdist reports a worker that died mid-case this way, with no payload
            crashed = worker_crashed(report.nodeid, str(report.longrepr))
            if crashed is not None:
                self.results[report.nodeid] = crashed

    # -- session end ---------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)  # before junitxml writes its file
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.finish(session)
        self._junit_properties()
        self._github_step_summary()
        unrecorded = any(o.error for o in self.outcomes) or self.write_errors
        # a whole shard is a part by design, not a partial run
        partial = self.bench.settings.fail_on_partial and any(
            not o.report.complete and o.report.incomplete_reason != "shard" for o in self.outcomes
        )
        failing = self.bench.outcome.tampered_after_pass or unrecorded or partial
        if failing and session.exitstatus == 0:
            # items reported passed before a change was seen, a run whose report or record
            # could not be written, or (asked for) a partial run: not a passing run
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _junit_properties(self) -> None:
        add_suite_properties(
            self.bench.config,
            suite_properties((o.report, o.chain_head, o.verdict) for o in self.outcomes),
        )

    def _github_step_summary(self) -> None:
        target = os.environ.get("GITHUB_STEP_SUMMARY")
        if not target or not self.outcomes:
            return
        from pytest_codegenie_eval.output.github import step_summary

        text = step_summary([(o.report, o.verdict) for o in self.outcomes])
        try:
            with open(target, "a", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            self.write_errors.append(f"could not write $GITHUB_STEP_SUMMARY {target}: {exc}")

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        lines = self.summary_lines()
        if lines:
            terminalreporter.write_sep("=", "codegenie eval summary")
            # the lines quote case ids, names read from disk, error messages and verdict
            # reasons: each is printed as a safe line, all of them fenced under GitHub Actions
            for line in fenced(safe_lines("\n".join(lines))):
                terminalreporter.write_line(line)
        if os.environ.get("GITHUB_ACTIONS") == "true" and self.bench.settings.github_annotations:
            from pytest_codegenie_eval.output.github import workflow_annotations

            for line in workflow_annotations(o.report for o in self.outcomes):
                terminalreporter.write_line(line)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        config.pluginmanager.unregister(self)

    def finish(self, session: pytest.Session) -> None:
        by_class: dict[str, list[CaseResult]] = {}
        for result in self.results.values():
            by_class.setdefault(result.task_class, []).append(result)
        settings = self.bench.settings
        if any(
            fm.code == "harness.digest_mismatch"
            for result in self.results.values()
            for fm in result.failure_modes
        ):
            self.bench.outcome.digest_mismatch = True
        names = set(by_class)
        if settings.shard is not None:
            # a shard with no case of some task class still reports it, so that merge can
            # tell an empty shard from a missing one
            names |= set(settings.benches)
        for task_class in sorted(names):
            by_class.setdefault(task_class, [])
            loaded = self.bench.loaded(task_class)
            if loaded is not None:
                checked = recheck_at_session_end(loaded, by_class[task_class])
                self.bench.outcome.tampered_after_pass += tuple(
                    f"{after.task_class}/{after.case_id}"
                    for before, after in zip(by_class[task_class], checked, strict=True)
                    if before.passed and not after.passed
                )
                by_class[task_class] = checked
            report = build_report(
                task_class,
                by_class[task_class],
                harness_version=HARNESS_VERSION,
                cases_total=len(loaded.cases) + len(loaded.orphan_pins) if loaded else None,
                repeats=settings.repeat,
                shard=self._shard_info(task_class, by_class[task_class]),
            )
            if report.incomplete_reason == "cost_cap":
                self.bench.outcome.cost_cap_hit = True
            try:
                path, head = write_run_record(report, settings.state_dir)
            except CodegenieEvalError as exc:
                self.bench.outcome.chain_tampered = True
                self.outcomes.append(TaskClassOutcome(report, None, None, error=str(exc)))
                continue
            except OSError as exc:  # unwritable or full state directory: not tampering
                error = f"could not write the run report or its record: {exc}"
                self.outcomes.append(TaskClassOutcome(report, None, None, error=error))
                continue
            self.outcomes.append(TaskClassOutcome(report, path, head))
        # every run is recorded: the chain is verified once, and every verdict and the
        # results page judge from that one verification
        check = self._verify_once()
        for index, outcome in enumerate(self.outcomes):
            task_class = outcome.report.task_class
            if outcome.report_path is not None:
                verdict, rec = self._verdict(task_class, check)
                outcome = replace(outcome, verdict=verdict, recommendation=rec)
                self.outcomes[index] = outcome
            reference = self.bench.compare_reference
            if reference is not None and reference.task_class == task_class:
                from pytest_codegenie_eval.evidence.compare import compare, format_comparison

                self.comparisons += format_comparison(compare(reference, outcome.report))
        if settings.html is not None and self.outcomes:
            self._build_html(settings.html, check)
        if settings.jsonl:
            try:
                self._write_jsonl(settings.jsonl)
            except OSError as exc:
                self.write_errors.append(
                    f"could not write --codegenie-jsonl {settings.jsonl}: {exc}"
                )

    def _verify_once(self) -> VerifyResult | None:
        """The chain's verification after this session's records, made once (``None``
        when nothing needs it: no verdict and no results page)."""
        settings = self.bench.settings
        wanted = settings.html is not None or settings.verdict_tier is not None
        wanted = wanted or settings.tiers_path.is_file()
        if not wanted or not any(o.report_path for o in self.outcomes):
            return None
        from pytest_codegenie_eval.store.audit import verify

        return verify(settings.state_dir)

    def _build_html(self, out: Path, check: VerifyResult | None) -> None:
        from pytest_codegenie_eval.output.html import build_site

        settings = self.bench.settings
        try:
            built = build_site(
                settings.state_dir,
                out,
                tiers_path=settings.tiers_path,
                bench_root=settings.bench_root,
                check=check,
                known=self.bench.registered(),
            )
        except (CodegenieEvalError, OSError) as exc:
            self.write_errors.append(f"could not build the results page in {out}: {exc}")
            return
        self.html_index = built.index

    def _shard_info(self, task_class: str, results: list[CaseResult]) -> ShardInfo | None:
        shard = self.bench.settings.shard
        if shard is None:
            return None
        from pytest_codegenie_eval.evidence.shards import shard_info

        loaded = self.bench.loaded(task_class)
        if loaded is not None:
            return shard_info(loaded, shard)
        # the task class could not be loaded: its case list is what this shard saw
        seen = sorted({r.case_id for r in results})
        return ShardInfo(
            index=shard.index,
            count=shard.count,
            cases=tuple(ShardCase(case_id=case_id) for case_id in seen),
        )

    def _verdict(
        self, task_class: str, check: VerifyResult | None
    ) -> tuple[PromotionVerdict | None, Path | None]:
        from pytest_codegenie_eval.evidence.verdicts import recommend

        settings = self.bench.settings
        loaded = self.bench.loaded(task_class)
        if loaded is None:
            return None, None
        if settings.verdict_tier is None and not settings.tiers_path.is_file():
            return None, None
        try:
            verdict, path = recommend(
                state_dir=settings.state_dir,
                tiers_path=settings.tiers_path,
                task_class=loaded.task_class,
                tier=settings.verdict_tier,
                check=check,
            )
        except CodegenieEvalError as exc:
            # an asked-for tier was checked before the run; this is a broken tier file met
            # while looking for an automatic recommendation (or files changed mid-run)
            self.verdict_errors.append(f"{task_class}: no verdict: {exc}")
            return None, None
        return verdict, path

    def _write_jsonl(self, target: str) -> None:
        text = render_jsonl((o.report, o.chain_head) for o in self.outcomes)
        if target == "-":
            terminal = self.bench.config.pluginmanager.get_plugin("terminalreporter")
            if terminal is not None:
                terminal.write_line("")  # progress output may have left a partial line
            # json.dumps already escapes every control character; a "##[" (which GitHub's
            # runner obeys anywhere in a log line) can only sit inside a JSON string, where
            # "##\u005b" is the same value
            sys.stdout.write(text.replace("##[", "##\\u005b"))
            sys.stdout.flush()
            self.jsonl_path = "-"
            return
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        self.jsonl_path = str(path)

    # -- terminal ------------------------------------------------------------------------
    def _sandbox_warning(self) -> str:
        from pytest_codegenie_eval.execution.isolation.sandbox import bwrap_status

        policy = self.bench.settings.sut_policy
        why = (
            "--codegenie-sut-sandbox=none was given"
            if policy.sandbox == "none"
            else bwrap_status(policy.jail_user).reason
            or "the sandbox was unavailable for some cases"
        )
        return (
            f"the SUT ran without its sandbox, environment allowlist only ({why}); it could "
            "read the answer keys, so tiers requiring bwrap refuse this evidence "
            "(--codegenie-require-sandbox makes this an error)"
        )

    def summary_lines(self) -> list[str]:
        lines: list[str] = []
        for outcome in self.outcomes:
            r = outcome.report
            if r.complete:
                state = "complete"
            elif r.incomplete_reason == "shard" and r.shard is not None:
                state = f"shard {r.shard.label} of {r.cases_total} cases"
            elif r.incomplete_reason == "cost_cap":
                state = f"PARTIAL ({r.skipped_count} skipped: cost cap)"
            else:
                ran = len({c.case_id for c in r.cases})
                state = f"PARTIAL (subset: {ran} of {r.cases_total} cases ran)"
            if r.shard is not None:
                lines.append(
                    f"SHARD {r.shard.label} of {r.task_class}: one part of a run, not evidence "
                    "alone; join the shards with `codegenie-eval merge`"
                )
            if not r.complete and r.incomplete_reason != "shard":
                why = "the cost cap" if r.incomplete_reason == "cost_cap" else "a subset of cases"
                lines.append(
                    f"PARTIAL RUN of {r.task_class}: {why}; not complete evidence for any tier"
                )
            lines.append(
                f"{r.task_class}: {r.n} case{'' if r.n == 1 else 's'}, {r.passed_count} passed, "
                f"mean {r.mean:.3f}, "
                f"stddev {r.stddev:.3f}, lower_bound_95 {r.lower_bound_95:.3f} "
                f"({r.bound.method}), cost {r.total_cost_usd:.4f} USD, "
                f"cache hits {r.cache_hits}/{len(r.cases)}, {state}" + _cached_cost(r)
            )
            lines.append(f"  sut: {r.sut}  run id: {r.run_id}")
            if r.repeats > 1:
                lines.append("  " + _repeat_line(r))
            if r.sut_isolation:
                how = [f"network {r.sut_network}"]
                if r.jail_uid:
                    how.append(f"host uid {r.jail_uid}")
                if r.sut_memory_limit:
                    how.append(f"memory limit {r.sut_memory_limit}")
                lines.append(f"  sut isolation: {r.sut_isolation} ({', '.join(how)})")
            if r.sut_isolation in ("env-only", "mixed"):
                lines.append(f"  WARNING: {self._sandbox_warning()}")
            tries = [a for c in r.cases for a in c.executor_attempts]
            if tries:
                workers = len({a.worker for a in tries})
                lost = sum(1 for a in tries if a.outcome == "lost")
                lines.append(
                    f"  executor: {self.bench.settings.executor_label}: "
                    f"{sum(1 for c in r.cases if c.executor_attempts)} attempt(s) on {workers} "
                    f"worker(s)" + (f", {lost} lost with their worker and retried" if lost else "")
                )
            if r.rubric_isolation:
                lines.append(f"  rubric isolation: {r.isolation_class} ({r.rubric_isolation})")
            if outcome.error:
                lines.append(f"  REPORT NOT RECORDED: {outcome.error}")
            else:
                lines.append(f"  report: {outcome.report_path}")
                lines.append(f"  chain head: {outcome.chain_head}")
            if outcome.verdict is not None:
                lines += ["  " + line for line in format_verdict(outcome.verdict).splitlines()]
            if outcome.recommendation is not None:
                lines.append(f"  recommendation: {outcome.recommendation}")
        kept = self.bench.run_settings.kept_dir
        if kept is not None and self.outcomes:
            lines.append(f"workspaces kept in: {kept}/<task class>/<case id>[-r<attempt>]")
        lines += [f"VERDICT ERROR: {error}" for error in self.verdict_errors]
        lines += [f"WRITE ERROR: {error}" for error in self.write_errors]
        lines += self.comparisons
        reference = self.bench.compare_reference
        if reference is not None and not self.comparisons:
            lines.append(
                f"COMPARE: the --codegenie-compare-to run is of task class "
                f"{reference.task_class!r}, which this session did not run"
            )
        tampered = self.bench.outcome.tampered_after_pass
        if tampered:
            lines.append(
                f"TAMPERED: {', '.join(tampered)} passed, but the bench files they were "
                "scored against changed before the session ended (sut.tampered_bench); "
                "the run fails"
            )
        if self.html_index is not None:
            lines.append(f"results page: {self.html_index}")
        if self.jsonl_path and self.jsonl_path != "-":
            lines.append(f"jsonl: {self.jsonl_path}")
        return lines
