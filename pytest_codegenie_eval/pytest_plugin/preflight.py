"""Checks that must pass before any case of a run starts (controller side).

A run that would produce evidence nobody can trust, or a question nobody can answer, stops
here as a usage error: a broken audit chain, stale digest pins under ``--codegenie-strict``,
or a ``--codegenie-verdict`` tier that the tier file or the task class does not define.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_codegenie_eval.errors import (
    BenchCaseDigestMismatch,
    CodegenieEvalError,
    DigestsFileInvalid,
)
from pytest_codegenie_eval.evidence.tiers import load_tier_config
from pytest_codegenie_eval.execution.isolation.sandbox import bwrap_status
from pytest_codegenie_eval.pytest_plugin.options import Settings
from pytest_codegenie_eval.pytest_plugin.session import BenchSession
from pytest_codegenie_eval.store.audit import verify
from pytest_codegenie_eval.taskclass.loader import load_registration

if TYPE_CHECKING:
    from pytest_codegenie_eval.execution.executors.dask_controller import DaskRunner


def check_chain(bench: BenchSession) -> None:
    """The audit chain must verify before more evidence is appended to it."""
    check = verify(bench.settings.state_dir)
    if not check.ok:
        bench.outcome.chain_tampered = True
        problems = "\n  ".join(check.problems[:10])
        state = bench.settings.state_dir
        hint = (
            "These are the leftovers of a killed session: `codegenie-eval repair --state-dir "
            f"{state}` fixes them and records what it did."
            if check.repairable
            else "Investigate with `codegenie-eval verify` before running again."
        )
        raise pytest.UsageError(
            f"codegenie: the audit chain in {state} does not verify; "
            f"no case was started:\n  {problems}\n{hint}"
        )
    _say_leftovers(bench)


def _say_leftovers(bench: BenchSession) -> None:
    """A killed session's leftovers in the evidence (the state directory and ``runs/``) do
    not stop a run (the chain verifies), but are never silent: one line says what was found
    and what to run. Plain ``verify`` also looks in the cache, diffs and transcripts."""
    from pytest_codegenie_eval.store.repair import leftovers

    state = bench.settings.state_dir
    found = leftovers(state, everywhere=False)  # the evidence only: start-up stays cheap
    terminal = bench.config.pluginmanager.get_plugin("terminalreporter")
    if found and terminal is not None:
        terminal.write_line(
            f"codegenie: leftovers of a killed session in {state}: {', '.join(found)}; run "
            f"`codegenie-eval repair --state-dir {state}`"
        )


def check_pins(bench: BenchSession) -> None:
    """Under --codegenie-strict, every case's digest pin must match."""
    bad: list[str] = []
    pin_errors = (BenchCaseDigestMismatch, DigestsFileInvalid)
    for name in bench.settings.benches:
        try:
            loaded = bench.load(bench.settings.bench_root / name)
        except CodegenieEvalError as exc:
            bad.append(str(exc))
            continue
        bad += [str(e.error) for e in loaded.cases if isinstance(e.error, pin_errors)]
        bad += [f"{name}: pinned but missing" for name in loaded.orphan_pins]
    if bad:
        bench.outcome.digest_mismatch = True
        raise pytest.UsageError(
            "codegenie --codegenie-strict: digest pins do not match; no case was started:\n  "
            + "\n  ".join(bad)
        )


def check_verdict_request(bench: BenchSession) -> None:
    """--codegenie-verdict=TIER must be answerable for every selected task class."""
    tier = bench.settings.verdict_tier
    try:
        config = load_tier_config(bench.settings.tiers_path)
        for name in bench.settings.benches:
            floors = load_registration(bench.settings.bench_root / name).min_cases_for_promotion
            if tier not in config.thresholds or tier not in floors:
                raise pytest.UsageError(
                    f"--codegenie-verdict={tier}: {bench.settings.tiers_path} defines tiers "
                    f"{', '.join(config.tiers)}; task class {name!r} declares floors for "
                    f"{', '.join(sorted(floors)) or 'no tier'}"
                )
    except CodegenieEvalError as exc:
        hint = ""
        if not bench.settings.tiers_path.exists():
            hint = "; create one with `codegenie-eval init` (uncalibrated thresholds)"
        raise pytest.UsageError(f"--codegenie-verdict={tier}: {exc}{hint}") from exc


def check_sandbox(settings: Settings) -> None:
    """--codegenie-require-sandbox: refuse to start unless the SUT sandbox works here."""
    if not settings.require_sandbox:
        return
    if settings.sut_policy.sandbox == "none":
        raise pytest.UsageError(
            "--codegenie-require-sandbox contradicts --codegenie-sut-sandbox=none; drop one"
        )
    status = bwrap_status(settings.sut_policy.jail_user)
    if not status.usable:
        raise pytest.UsageError(
            f"--codegenie-require-sandbox: the SUT sandbox is unavailable, no case was "
            f"started: {status.reason}"
        )


# How many entries of a large tree (a Python prefix, an agent's installation) are looked at;
# a task class directory is looked at whole.
_PREFIX_ENTRIES = 2_000
_BENCH_ENTRIES = 50_000


def _jail_visible_bench_paths(settings: Settings) -> tuple[list[Path], list[Path]]:
    """What of each selected task class a sandbox is shown: the directories themselves
    (first list, not their contents) and, below them, everything but ``cases/`` and each
    case directory (second list); ``cases/`` itself, with its pins, stays hidden."""
    from pytest_codegenie_eval.taskclass.layout import CASES

    tops: list[Path] = []
    paths: list[Path] = []
    for name in settings.benches:
        directory = settings.bench_root / name
        if not directory.is_dir():
            continue
        tops += [directory, directory / CASES]
        with contextlib.suppress(OSError):
            for child in sorted(directory.iterdir()):
                if child.name != CASES:
                    paths.append(child)
        cases = directory / CASES
        with contextlib.suppress(OSError):
            paths += sorted(p for p in cases.iterdir() if p.is_dir())
    return tops, paths


def check_jail_user_can_read(bench: BenchSession) -> None:
    """A root harness runs every sandbox as an unprivileged user: what the sandboxes read
    (the Python prefix, the harness package, each selected task class and its cases, the
    ``--codegenie-sut-ro`` paths and the cassettes) must be readable by that user, or the
    run would fail case by case. An unreadable path is a usage error naming it."""
    settings = bench.settings
    policy = settings.sut_policy
    user = policy.jail_user
    if user is None or not bwrap_status(user).usable:
        return
    from pytest_codegenie_eval.execution.isolation.jailuser import unreadable_for
    from pytest_codegenie_eval.execution.isolation.sandbox import (
        python_prefixes,
    )
    from pytest_codegenie_eval.process import harness_package_dir

    large = [*python_prefixes(), harness_package_dir(), *policy.ro_paths]
    if settings.cassettes is not None:
        large.append(settings.cassettes)
    tops, below = _jail_visible_bench_paths(settings)
    found = (
        unreadable_for(user, large, limit=_PREFIX_ENTRIES)
        or unreadable_for(user, tops, limit=1)
        or unreadable_for(user, below, limit=_BENCH_ENTRIES)
    )
    if found is not None:
        raise pytest.UsageError(
            f"codegenie: the harness runs as root and starts every sandbox as {user.name} "
            f"(uid {user.uid}), which cannot read {found}; no case was started. Make it "
            "readable by that user (chmod o+rX, or move it out of a private home directory), "
            "or name another user with --codegenie-sandbox-user (ini codegenie_sandbox_user)."
        )


def check_state_dir(bench: BenchSession) -> None:
    """The state directory must be a directory the session can create and write: finding
    out at session end, after every SUT has run, would lose the run's record."""
    state = bench.settings.state_dir
    try:
        state.mkdir(parents=True, exist_ok=True)
        probe = state / f".tmp-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise pytest.UsageError(
            f"codegenie: the state directory {state} cannot be written ({exc}); no case was "
            "started. Point --codegenie-state-dir (ini codegenie_state_dir) at a writable "
            "directory."
        ) from None


def check_compare_reference(bench: BenchSession) -> None:
    """--codegenie-compare-to is resolved now: at session end ``latest:`` would find the
    run being made, and a typo should stop the run before any SUT spends money."""
    reference = bench.settings.compare_to
    if reference is None:
        return
    from pytest_codegenie_eval.store.reports import resolve

    try:
        bench.compare_reference = resolve(reference, bench.settings.state_dir)
    except CodegenieEvalError as exc:
        raise pytest.UsageError(f"--codegenie-compare-to: {exc}") from None


def check_html(bench: BenchSession) -> None:
    """``--codegenie-html`` needs the html extra: say so before any agent runs, not after."""
    if bench.settings.html is None:
        return
    from pytest_codegenie_eval.output.html import HtmlDependencyMissing, require

    try:
        require()
    except HtmlDependencyMissing as exc:
        raise pytest.UsageError(f"--codegenie-html: {exc}") from exc


def start_executor(bench: BenchSession) -> None:
    """``--codegenie-executor``: start ``local:N``'s threads, or connect to the Dask
    scheduler (or start the LocalCluster) now, so an unreachable one is a usage error
    before any case starts."""
    spec = bench.settings.executor
    if spec is None or bench.executor is not None:
        return
    hook = bench.config.pluginmanager.hook.pytest_codegenie_eval_run_sut
    hooks = [i for i in hook.get_hookimpls() if i.plugin_name != "codegenie_eval"]
    if bench.settings.sut is None and hooks:
        where = (
            "runs pytest's hooks, which are not made to be called from several threads at once"
            if spec.concurrent_local
            else "runs inside this pytest process and cannot run on a Dask worker"
        )
        raise pytest.UsageError(
            f"--codegenie-executor={spec.label}: the SUT is the pytest_codegenie_eval_run_sut "
            f"hook, which {where}; give the agent as a command "
            "(--codegenie-sut='CMD {workspace}')"
        )
    if spec.concurrent_local:
        from pytest_codegenie_eval.execution.executors.local import ConcurrentLocalExecutor

        bench.executor = ConcurrentLocalExecutor(bench.run_settings, spec.workers)
        return
    from pytest_codegenie_eval.execution.executors.dask_controller import DaskRunner
    from pytest_codegenie_eval.execution.executors.spec import (
        ExecutorUnavailable,
        check_sut_network,
    )

    terminal = bench.config.pluginmanager.get_plugin("terminalreporter")
    try:
        # a plain-TCP scheduler is refused before the plugin connects to it
        check_sut_network(spec, bench.settings.sut_policy.network)
        if terminal is not None:  # a cluster takes seconds to start: say what is going on
            what = "starting" if spec.label.startswith("dask-local") else "connecting to"
            terminal.write_line(f"codegenie: {what} the Dask executor {spec.label} ...")
        started = time.monotonic()
        runner = DaskRunner(
            spec, max_cost_usd=bench.settings.max_cost_usd, run_scope=bench.run_scope
        )
        bench.executor = runner
        if terminal is not None:
            took = time.monotonic() - started
            terminal.write_line(f"codegenie: Dask executor {spec.label} ready ({took:.1f} s)")
        _load_on_workers(bench, runner)
    except ExecutorUnavailable as exc:
        raise pytest.UsageError(str(exc)) from exc


def check_gateway(bench: BenchSession) -> None:
    """``--codegenie-model-gateway``: its library is installed, before any agent runs (the
    price table was read with the options)."""
    gateway = bench.settings.gateway
    if not gateway.enabled:
        return
    import importlib.util

    if importlib.util.find_spec("aiohttp") is None:
        raise pytest.UsageError(
            f"--codegenie-model-gateway={gateway.mode} needs aiohttp, which is not installed: "
            "pip install 'pytest-codegenie-eval[gateway]'"
        )


def _load_on_workers(bench: BenchSession, runner: DaskRunner) -> None:
    """Have the workers load the named task classes while pytest collects (each loaded here
    once, for collection too). One that does not load is left to collection to report."""
    from pytest_codegenie_eval.execution.executors.dask_worker import bundle_task_class

    bundles = []
    for name in bench.settings.benches:
        try:
            bundles.append(bundle_task_class(bench.load(bench.settings.bench_root / name)))
        except (CodegenieEvalError, OSError):
            continue
    runner.prepare(bundles, bench.settings.import_timeout_s)


def run_all(bench: BenchSession) -> None:
    """Every preflight check that applies to this session."""
    check_state_dir(bench)
    check_gateway(bench)
    check_jail_user_can_read(bench)
    check_html(bench)
    check_chain(bench)
    check_compare_reference(bench)
    if bench.settings.verdict_tier is not None:
        check_verdict_request(bench)
    if bench.settings.strict:
        check_pins(bench)
