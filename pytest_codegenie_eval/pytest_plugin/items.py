"""pytest collectors and items: one item per bench case.

``case.toml`` files of selected task classes become :class:`CaseFile` collectors yielding one
:class:`CaseItem`. A case that cannot load still yields an item, which fails with the typed
error: a broken case fails that item and never the run. Pins in ``digests.yaml`` that name
no directory become failing items too, so a deleted case is never silently lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from _pytest._code.code import (  # no public name: what pytest's own reports are made of
    ReprExceptionInfo,
    ReprFileLocation,
    ReprTracebackNative,
    TerminalRepr,
)

from pytest_codegenie_eval.errors import CodegenieEvalError, CostCapReached
from pytest_codegenie_eval.execution import results
from pytest_codegenie_eval.execution.attempt import cache_key, cached_result, record_attempt
from pytest_codegenie_eval.execution.executors.local import LocalJob
from pytest_codegenie_eval.execution.sut import SutSpec
from pytest_codegenie_eval.models import CaseResult, CaseStatus, FailureMode
from pytest_codegenie_eval.output.untrusted_text import fenced, safe_line, safe_lines
from pytest_codegenie_eval.pytest_plugin.activation import SESSION_KEY
from pytest_codegenie_eval.pytest_plugin.session import PAYLOAD_PROPERTY, BenchSession
from pytest_codegenie_eval.taskclass.layout import (
    CASE_TOML,
    item_name,
    split_item_name,
    task_class_dir_of_case,
)
from pytest_codegenie_eval.taskclass.loader import CaseEntry, LoadedTaskClass

RESULT_KEY = pytest.StashKey[CaseResult]()


class CaseFailed(Exception):
    """Raised by a case item whose result does not pass; rendered by repr_failure."""

    def __init__(self, result: CaseResult) -> None:
        super().__init__(result.case_id)
        self.result = result


def short_message(result: CaseResult) -> str:
    """One line for pytest's short test summary (after the node id, which names the case):
    the score against the threshold, then the blocking failure codes, most telling first,
    so the part a narrow terminal keeps says why."""
    blocking = [fm.code for fm in result.failure_modes if fm.severity == "block"]
    others = [fm.code for fm in result.failure_modes if fm.severity != "block"]
    codes = ", ".join(blocking + others)
    cached = " (cached)" if result.cached else ""
    return safe_line(
        f"score {result.score:.3f} {'<' if result.score < result.pass_threshold else '>='} "
        f"{result.pass_threshold:.3f}{cached}" + (f": {codes}" if codes else "")
    )


def format_result(result: CaseResult, *, style: str = "long") -> str:
    """The readable failure report of one case; ``--tb=short`` keeps the score and the
    failure modes, ``--tb=line`` (and ``--tb=no``) one line.

    It quotes untrusted text (the SUT's output, failure-mode details that may name files
    the agent made, names read from disk), so it is printable as a whole: every line is a
    :func:`~pytest_codegenie_eval.output.untrusted_text.safe_line`, and all but the headline are
    fenced against workflow commands under GitHub Actions (:func:`printable_report`)."""
    attempt = f" attempt {result.repeat}" if result.repeat != 1 else ""
    headline = (
        f"codegenie case {result.task_class}/{result.case_id}{attempt}: "
        f"score {result.score:.3f} vs threshold {result.pass_threshold:.3f}"
        + (" (cached)" if result.cached else "")
    )
    if style in ("line", "no"):
        codes = ", ".join(f"[{fm.severity}] {fm.code}" for fm in result.failure_modes)
        return safe_line(headline + (f"; {codes}" if codes else ""))
    lines: list[str] = []
    if style == "short":
        lines += [_format_mode(fm) for fm in result.failure_modes]
        return printable_report(headline, "\n".join(lines))
    if result.breakdown:
        width = max(len(k) for k in result.breakdown)
        lines.append("breakdown:")
        lines += [f"  {k.ljust(width)}  {v:.3f}" for k, v in sorted(result.breakdown.items())]
    if result.failure_modes:
        lines.append("failure modes:")
        lines += [_format_mode(fm) for fm in result.failure_modes]
    if result.sut_exit_code is not None or result.status == "scored":
        lines.append(f"SUT exit code: {result.sut_exit_code}")
    hint = _hint(result)
    if hint is not None:
        lines.append(f"hint: {hint}")
    if result.stdout_tail.strip():
        lines.append("SUT stdout (tail):")
        lines += ["  " + line for line in _tail_lines(result.stdout_tail)]
    if result.stderr_tail.strip():
        lines.append("SUT stderr (tail):")
        lines += ["  " + line for line in _tail_lines(result.stderr_tail)]
    return printable_report(headline, "\n".join(lines))


_NETWORK_ERRORS = (
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "getaddrinfo",
    "nodename nor servname",
    "Could not resolve host",
)


def _hint(result: CaseResult) -> str | None:
    """What most likely went wrong when the SUT failed, from its exit code and output."""
    if not any(fm.code in ("sut.exception", "sut.timeout") for fm in result.failure_modes):
        return None
    output = result.stderr_tail + result.stdout_tail
    if result.sut_exit_code == 126:
        return (
            "exit 126: the SUT's program is not executable (make it executable, or name its "
            "interpreter in the SUT command)"
        )
    if result.sut_exit_code == 127:
        return (
            "exit 127: the SUT's program, or an interpreter it names, was not found inside the "
            "sandbox (use an absolute path, and bind its folder with --codegenie-sut-ro)"
        )
    if "ModuleNotFoundError" in output or "No module named" in output:
        return (
            "a Python module was not found: inside the sandbox the SUT sees the harness's "
            "interpreter and what --codegenie-sut-ro binds; bind the agent's folder or "
            "virtualenv with --codegenie-sut-ro"
        )
    if result.sut_network == "none" and any(marker in output for marker in _NETWORK_ERRORS):
        return (
            "the SUT ran with the network off (--codegenie-sut-network=none); an agent that "
            "calls a model reaches it through --codegenie-model-gateway=live (the key stays "
            "outside the sandbox)"
        )
    return None


def printable_report(headline: str, body: str) -> str:
    """A failure report safe to print: the headline one safe line first (pytest's short
    summary shows the first line of a report), then the body's lines made safe and, under
    GitHub Actions, fenced so that no workflow command runs while they print."""
    shown = [safe_line(headline)]
    if body:
        shown += fenced(safe_lines(body))
    return "\n".join(shown)


def _tail_lines(tail: str, count: int = 20) -> list[str]:
    """The last lines of a stream, split at newlines only: a lone carriage return (or a
    form feed, U+2028, ...) stays in its line, where it is shown rather than obeyed."""
    return tail.rstrip().replace("\r\n", "\n").split("\n")[-count:]


def _format_mode(fm: FailureMode) -> str:
    # a multi-line detail (a stderr tail) continues indented under its mode, so that it
    # cannot pass for a line of the report itself
    detail = ": " + fm.detail.replace("\n", "\n      ") if fm.detail else ""
    return f"  [{fm.severity}] {fm.code}{detail}"


def attach_result(item: pytest.Item, result: CaseResult) -> None:
    """Put the result where the controller finds it, even under xdist (builtins only)."""
    item.stash[RESULT_KEY] = result
    item.user_properties.append((PAYLOAD_PROPERTY, result.model_dump_json()))
    item.user_properties.append(("codegenie_score", f"{result.score:.6f}"))


class CaseItem(pytest.Item):
    """One bench case: runs the SUT then the rubric, passes on score and failure modes."""

    def __init__(
        self,
        *,
        task_class: LoadedTaskClass | None,
        task_class_name: str,
        entry: CaseEntry | None,
        error: CodegenieEvalError | None = None,
        repeat: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.repeat = repeat
        self.task_class = task_class
        self.task_class_name = task_class_name
        self.entry = entry
        self.error = error or (entry.error if entry else None)
        self.add_marker(pytest.mark.codegenie_bench(task_class_name))

    @property
    def case_id(self) -> str:
        return self.entry.case_id if self.entry else split_item_name(self.name)[0]

    def runtest(self) -> None:
        bench: BenchSession = self.config.stash[SESSION_KEY]
        if self.error is not None or self.task_class is None or self.entry is None:
            if self.entry is not None and self.error is self.entry.error:
                case = self.entry.case
                result = results.load_error(
                    self.task_class_name,
                    self.entry.case_id,
                    self.nodeid,
                    self.entry.error,
                    case.curation_class if case else None,
                    self.repeat,
                )
                attach_result(self, result)
                raise CaseFailed(result)
            # the task class itself is broken, or a pin names a missing directory
            self._fail_with("harness.case_invalid", str(self.error), status="load_error")
        try:
            sut = bench.sut_for(self.task_class)
        except CodegenieEvalError as exc:
            self._fail_with("harness.case_invalid", str(exc))
        try:
            measured, spent = self._attempt(bench, sut)
        except Exception as exc:
            # a harness bug still yields a recorded, failed case rather than a lost one
            self._fail_with("harness.internal_error", f"{type(exc).__name__}: {exc}")
        if measured is None:
            self._skip_for_cost_cap(spent, bench.run_settings.max_cost_usd or 0.0)
        attach_result(self, measured)
        if not measured.passed:
            raise CaseFailed(measured)

    def _attempt(self, bench: BenchSession, sut: SutSpec) -> tuple[CaseResult | None, float]:
        """This attempt's recorded result: cached, or run by the executor that owns it
        (``None`` and the spend when the cost cap kept it from starting)."""
        assert self.task_class is not None
        assert self.entry is not None
        settings = bench.run_settings
        key = cache_key(self.entry, self.task_class, sut, settings, self.repeat)
        executor = bench.executor_for(self.nodeid)
        if executor is bench.local:
            # a case a cluster runs was looked up before it was submitted
            hit = cached_result(settings, key, self.nodeid, self.repeat)
            if hit is not None:
                return hit, 0.0
            bench.local.submit([self.local_job(sut)])
            bench.local.expect(self._next_local_job(bench))
        outcome = executor.wait(self.nodeid)
        if outcome.attempt is None:
            return None, outcome.spent_usd
        return record_attempt(settings, key, outcome.attempt), 0.0

    def runnable_sut(self, bench: BenchSession) -> SutSpec | None:
        """This item's SUT when an executor is to run its attempt: the case loaded and valid,
        and not cached (a broken case runs, and fails, in its item; a cache hit costs
        nothing: the item reads it itself)."""
        loaded, entry = self.task_class, self.entry
        if self.error is not None or loaded is None or entry is None:
            return None
        if entry.case is None or entry.error is not None:
            return None
        try:
            sut = bench.sut_for(loaded)
        except CodegenieEvalError:
            return None
        settings = bench.run_settings
        key = cache_key(entry, loaded, sut, settings, self.repeat)
        if cached_result(settings, key, self.nodeid, self.repeat) is not None:
            return None
        return sut

    def _next_local_job(self, bench: BenchSession) -> LocalJob | None:
        """The attempt pytest runs after this one, when the local executor will run it."""
        upcoming = bench.next_item
        if not isinstance(upcoming, CaseItem) or upcoming is self:
            return None
        if bench.executor_for(upcoming.nodeid) is not bench.local:
            return None
        sut = upcoming.runnable_sut(bench)
        return upcoming.local_job(sut) if sut is not None else None

    def local_job(self, sut: SutSpec) -> LocalJob:
        """This attempt as a job for a local executor."""
        assert self.task_class is not None
        assert self.entry is not None
        hook = self.config.pluginmanager.hook

        def run_hook(case: Any, workspace: Path, env: Any) -> Any:
            return hook.pytest_codegenie_eval_run_sut(
                case=case, workspace=workspace, task_class=self.task_class_name, env=env
            )

        return LocalJob(
            nodeid=self.nodeid,
            task_class=self.task_class,
            entry=self.entry,
            sut=sut,
            repeat=self.repeat,
            hook=run_hook if sut.kind == "hook" else None,
        )

    def _skip_for_cost_cap(self, spent: float, cap: float) -> NoReturn:
        """Record the attempt as kept from starting by the cost cap (the controller sees
        the cap in the report this record joins), and skip the item."""
        case = self.entry.case if self.entry is not None else None
        skipped = results.cost_cap_skipped(
            self.task_class_name,
            self.case_id,
            self.nodeid,
            case.curation_class if case else None,
            self.repeat,
        )
        attach_result(self, skipped)
        pytest.skip(f"codegenie {CostCapReached(spent, cap)}")

    def _fail_with(self, code: str, detail: str, *, status: CaseStatus = "crashed") -> NoReturn:
        result = results.harness_failure(
            self.task_class_name, self.case_id, self.nodeid, code, detail, status, self.repeat
        )
        attach_result(self, result)
        raise CaseFailed(result)

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, CaseFailed):
            tbstyle = style or self.config.getoption("tbstyle", "auto")
            result = excinfo.value.result
            text = format_result(result, style=str(tbstyle))
            # the report as written, and one line for pytest's short summary and JUnit's
            # message (a plain string would be the whole report there, on CI)
            return ReprExceptionInfo(
                reprtraceback=ReprTracebackNative([text if text.endswith("\n") else text + "\n"]),
                reprcrash=ReprFileLocation(str(self.path), 0, short_message(result)),
            )
        # a harness error: its message may still quote what a SUT or a rubric wrote
        headline, _, body = str(super().repr_failure(excinfo, style=style)).partition("\n")
        return printable_report(headline, body)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        attempt = f" attempt {self.repeat}" if self.name != self.case_id else ""
        domain = f"codegenie case {self.task_class_name}/{self.case_id}{attempt}"
        return self.path, 0, safe_line(domain)


def _attempts(parent: pytest.File, name: str, **kwargs: Any) -> Iterator[CaseItem]:
    """One item per attempt of a case: ``name``, or ``name[r1]`` ... ``name[rK]`` under
    ``--codegenie-repeat=K`` (a case that cannot run fails in every attempt, so the
    counts stay whole)."""
    repeats = parent.config.stash[SESSION_KEY].settings.repeat
    for repeat in range(1, repeats + 1):
        yield CaseItem.from_parent(
            parent, name=item_name(name, repeat, repeats), repeat=repeat, **kwargs
        )


class CaseFile(pytest.File):
    """A ``cases/<dir>/case.toml`` of a selected task class."""

    def collect(self) -> Iterator[CaseItem]:
        bench: BenchSession = self.config.stash[SESSION_KEY]
        tc_dir = task_class_dir_of_case(self.path)
        assert tc_dir is not None  # pytest_collect_file made this collector for one
        try:
            loaded = bench.load(tc_dir)
        except CodegenieEvalError as exc:
            # the task class itself is broken: every case of it fails with that reason
            yield from _attempts(
                self,
                self.path.parent.name,
                task_class=None,
                task_class_name=tc_dir.name,
                entry=None,
                error=exc,
            )
            return
        entry = loaded.by_dir.get(self.path.parent.name)
        if entry is None:  # appeared after the task class was loaded
            return
        yield from _attempts(
            self, entry.case_id, task_class=loaded, task_class_name=loaded.name, entry=entry
        )


class OrphanPinsFile(pytest.File):
    """``cases/digests.yaml``: pins for directories that no longer exist fail loudly."""

    def collect(self) -> Iterator[CaseItem]:
        bench: BenchSession = self.config.stash[SESSION_KEY]
        tc_dir = self.path.parent.parent
        try:
            loaded = bench.load(tc_dir)
        except CodegenieEvalError:
            return  # reported by every CaseFile of the task class
        cases_dir = self.path.parent
        for name in loaded.orphan_pins:
            error = CodegenieEvalError(
                f"{self.path}: pins case directory {name!r}, which does not exist under "
                f"{cases_dir}; restore it or re-pin with "
                f"`codegenie-eval digests --task-class {loaded.name} --write`"
            )
            yield from _attempts(
                self,
                name,
                task_class=loaded,
                task_class_name=loaded.name,
                entry=None,
                error=error,
            )
        for entry in loaded.cases:
            if not (entry.directory / CASE_TOML).is_file():
                # a directory without a case.toml file (none, or a directory of that name)
                # has no file to collect: report it here
                yield from _attempts(
                    self, entry.name, task_class=loaded, task_class_name=loaded.name, entry=entry
                )
