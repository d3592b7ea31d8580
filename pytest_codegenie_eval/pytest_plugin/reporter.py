"""The controller-side reporter: per-case results in, evidence out (README.md).

A plugin of its own, as pytest's junitxml: registered only where pytest is not an xdist
worker, it collects each case's JSON payload from the test report's ``user_properties`` (so
it works whether cases ran here or on workers; a crashed worker's case counts as a failed
case), runs the session-end pipeline (:func:`~.session_end.finish`), hands what it produced
to the renderers and sets the exit status. Hook methods only.
"""

from __future__ import annotations

import os
import time

import pytest

from pytest_codegenie_eval.execution.results import worker_crashed
from pytest_codegenie_eval.models import CaseResult
from pytest_codegenie_eval.output.junit import add_suite_properties, name_case, suite_properties
from pytest_codegenie_eval.output.terminal import SessionFacts, progress_line, summary_lines
from pytest_codegenie_eval.output.untrusted_text import fenced, safe_lines
from pytest_codegenie_eval.pytest_plugin.session import PAYLOAD_PROPERTY, BenchSession
from pytest_codegenie_eval.pytest_plugin.session_end import SessionEnd, finish
from pytest_codegenie_eval.taskclass.layout import attempt_from_nodeid


class EvalReporter:
    """Collects case payloads during the run and turns them into evidence at the end.

    Its hooks collect in ``pytest_runtest_logreport``, write in ``pytest_sessionfinish``,
    print in ``pytest_terminal_summary`` and unregister in ``pytest_unconfigure``.
    """

    PLUGIN_NAME = "codegenie_eval_reporter"

    def __init__(self, bench: BenchSession) -> None:
        self.bench = bench
        self.results: dict[str, CaseResult] = {}
        self.end = SessionEnd()
        self._started = time.monotonic()
        self._last_progress = self._started
        self._total: int | None = None

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # under xdist the controller collects nothing; the total stays unknown there
        self._total = len(session.items) or None

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        # after the item's own progress mark, so the line never splits pytest's output
        if nodeid in self.results:
            self._progress()

    def _progress(self) -> None:
        """Every --codegenie-progress seconds (0: after each case), one line saying how
        far the run is; a long run of a slow agent is never silent."""
        every = self.bench.settings.progress_every_s
        now = time.monotonic()
        if every is None or now - self._last_progress < every:
            return
        terminal = self.bench.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is None:
            return
        self._last_progress = now
        results = self.results.values()
        terminal.ensure_newline()  # after a file's name (default verbosity)
        writer = getattr(terminal, "_tw", None)  # pytest's TerminalWriter: -q leaves dots
        if int(getattr(writer, "width_of_current_line", 0) or 0):
            terminal.write("\n")
        terminal.write_line(
            progress_line(
                done=len(self.results),
                total=self._total,
                elapsed_s=now - self._started,
                spent_usd=sum(r.cost_usd for r in results if not r.cached),
                failed=sum(1 for r in results if not r.passed),
            )
        )

    @pytest.hookimpl(tryfirst=True)  # before junitxml records the test case
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        where = attempt_from_nodeid(report.nodeid)
        if where is not None:
            name_case(self.bench.config, report, task_class=where[0])
        for name, value in report.user_properties:
            if name == PAYLOAD_PROPERTY and isinstance(value, str):
                self.results[report.nodeid] = CaseResult.model_validate_json(value)
                return
        if str(report.when) == "???" and report.nodeid not in self.results:
            # xdist reports a worker that died mid-case this way, with no payload
            crashed = worker_crashed(report.nodeid, str(report.longrepr))
            if crashed is not None:
                self.results[report.nodeid] = crashed

    @pytest.hookimpl(tryfirst=True)  # before junitxml writes its file
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.end = finish(self.bench, self.results.values())
        outcomes = self.end.outcomes
        add_suite_properties(
            self.bench.config,
            suite_properties((o.report, o.chain_head, o.verdict) for o in outcomes),
        )
        target = os.environ.get("GITHUB_STEP_SUMMARY")
        if target and outcomes:
            from pytest_codegenie_eval.output.github import append_step_summary

            error = append_step_summary(target, [(o.report, o.verdict) for o in outcomes])
            if error is not None:
                self.end.write_errors.append(error)
        fails = self.end.fails_run(self.bench)
        if (
            self.bench.settings.shard is not None
            and session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED
            and outcomes
            and not fails
        ):
            # a matrix job that got no case: its empty shard report is recorded for merge,
            # and the summary says so; that is a success, not "no tests collected"
            session.exitstatus = pytest.ExitCode.OK
        gate = self.bench.settings.gate_tier
        decided = (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
        if gate is not None and session.exitstatus in decided:
            # the evidence decides, not single cases; a run that could not record, or was
            # changed after it passed, never passes the gate
            sufficient = self.end.gate_passes(gate)
            passing = sufficient and not fails
            session.exitstatus = decided[0] if passing else decided[1]
            what = "SUFFICIENT" if sufficient else "INSUFFICIENT"
            because = "" if passing or not sufficient else " but the run did not record cleanly"
            self.end.gate = (
                f"codegenie gate {gate}: evidence {what}{because} -> exit {int(session.exitstatus)}"
            )
        elif fails and session.exitstatus == 0:
            # items reported passed before a change was seen, a run whose report or record
            # could not be written, or (asked for) a partial run: not a passing run
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        bench = self.bench
        reference = bench.compare_reference
        facts = SessionFacts(
            sut_policy=bench.settings.sut_policy,
            executor_label=bench.settings.executor_label,
            kept_dir=bench.run_settings.kept_dir,
            compare_task_class=reference.task_class if reference is not None else None,
            tampered_after_pass=bench.outcome.tampered_after_pass,
        )
        lines = summary_lines(self.end, facts)
        if lines:
            terminalreporter.write_sep("=", "codegenie eval summary")
            # the lines quote case ids, names read from disk, error messages and verdict
            # reasons: each is printed as a safe line, all of them fenced under GitHub Actions
            for line in fenced(safe_lines("\n".join(lines))):
                terminalreporter.write_line(line)
        if os.environ.get("GITHUB_ACTIONS") == "true" and bench.settings.github_annotations:
            from pytest_codegenie_eval.output.github import workflow_annotations

            for line in workflow_annotations(o.report for o in self.end.outcomes):
                terminalreporter.write_line(line)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        config.pluginmanager.unregister(self)
