"""Shared fixtures: a copy of the stub task class inside a pytester directory, and the
three execution modes (no xdist, ``-n 0``, ``-n 2``) every plugin integration test runs in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import scipy.special  # noqa: F401  (imported only when a pass/fail bound is made)
from hypothesis import HealthCheck, settings

# In-process pytester runs drop modules first imported during the run; numpy cannot be
# imported twice in one process, so everything the plugin imports lazily is loaded here.
import pytest_codegenie_eval.evidence.verdicts
import pytest_codegenie_eval.pytest_plugin.items
import pytest_codegenie_eval.pytest_plugin.reporter  # noqa: F401

# Hypothesis profiles: "ci" (chosen when CI is set, as .ci/run does) never fails a test on a
# deadline or on slow data generation, since a loaded 2-core runner is not a slow property;
# "dev" keeps hypothesis's defaults. HYPOTHESIS_PROFILE overrides either.
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("dev")
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

REPO = Path(__file__).resolve().parent.parent
STUB = REPO / "tests" / "fixtures" / "bench" / "stub"

# Options of every pytest session a test starts (in process or not, and their xdist
# workers): hypothesis's and anyio's pytest plugins, test dependencies of this repository
# and not the plugin's, cost each such session over a second of start-up (an empty session:
# 1.4 s with them, 0.23 s without), and no inner session uses them.
CHILD_ADDOPTS = "-p no:hypothesispytest -p no:anyio"

RunBench = Callable[..., pytest.RunResult]


def copy_stub(dest_root: Path, name: str = "stub") -> Path:
    """Copy the stub task class to ``dest_root/bench/<name>`` and return that directory."""
    dest = dest_root / "bench" / name
    shutil.copytree(STUB, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def repin(task_class_dir: Path) -> None:
    """Rewrite cases/digests.yaml after a test edited a case on purpose."""
    from pytest_codegenie_eval.taskclass.digests import write_digests

    write_digests(task_class_dir / "cases")


def grow_stub(task_class_dir: Path, more: int) -> None:
    """Add ``more`` copies of the stub's ``alpha`` case (``more0``, ``more1`` …), each with a
    canary pin of its own, and repin."""
    for i in range(more):
        case = task_class_dir / "cases" / f"more{i}"
        shutil.copytree(task_class_dir / "cases" / "alpha", case)
        toml = (case / "case.toml").read_text().replace('"alpha"', f'"more{i}"')
        (case / "case.toml").write_text(toml.replace("0011223344556611", f"00112233445566a{i}"))
    repin(task_class_dir)


def run_stub(pytester: pytest.Pytester, *args: str, timeout: float = 120) -> pytest.RunResult:
    """Run the stub bench (``bench/stub`` under the pytester directory) in a subprocess."""
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--codegenie-bench=stub", *args, timeout=timeout
    )


def newest_report(root: Path) -> dict[str, Any]:
    """The newest run report under ``root``'s default state directory: the one the audit
    chain's last record names (file names sort by second only, and two runs of one second
    with one run id differ in a suffix that sorts before the plain name)."""
    state = root / ".codegenie" / "eval"
    chain = state / "audit.jsonl"
    if chain.is_file():
        lines = [line for line in chain.read_text().splitlines() if line.strip()]
        runs = [json.loads(line) for line in lines]
        runs = [r for r in runs if r.get("kind") != "repair"]
        if runs:
            report: dict[str, Any] = json.loads((state / runs[-1]["report_path"]).read_text())
            return report
    reports = sorted((state / "runs").glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    assert reports, f"no run report under {root}"
    unrecorded: dict[str, Any] = json.loads(reports[-1].read_text())
    return unrecorded


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytest's ``pytester``, whose sessions start without the plugins of
    :data:`CHILD_ADDOPTS` (pytester clears ``PYTEST_ADDOPTS`` as it starts; set it again)."""
    monkeypatch.setenv("PYTEST_ADDOPTS", CHILD_ADDOPTS)
    return pytester


@pytest.fixture
def stub_bench(pytester: pytest.Pytester) -> Path:
    return copy_stub(pytester.path)


@pytest.fixture(params=["no-xdist", "n0", "n2"])
def xdist_args(request: pytest.FixtureRequest) -> list[str]:
    """The three ways a suite runs: without xdist loaded at all, ``-n 0``, ``-n 2``."""
    modes = {"no-xdist": ["-p", "no:xdist"], "n0": ["-n", "0"], "n2": ["-n", "2"]}
    return modes[str(request.param)]


@pytest.fixture
def run_bench(pytester: pytest.Pytester, stub_bench: Path, xdist_args: list[str]) -> RunBench:
    """Run pytest in the pytester directory on the stub bench, in the parametrized mode."""

    argv = (*xdist_args, "--codegenie-bench=stub", "-p", "no:cacheprovider")
    # in process where nothing forks (no xdist, -n 0): a second interpreter is not what these
    # tests test, and it costs a second of start-up each; -n 2 needs real worker processes
    in_process = "-n" not in xdist_args or xdist_args[-1] == "0"

    def run(*args: str) -> pytest.RunResult:
        if in_process:
            return pytester.runpytest_inprocess(*argv, *args)
        return pytester.runpytest_subprocess(*argv, *args)

    return run


@pytest.fixture
def run_bench_once(pytester: pytest.Pytester, stub_bench: Path) -> RunBench:
    """Like ``run_bench``, in one mode only (in process, xdist not loaded): for tests whose
    outcome no execution mode can change, because they stop before any case runs, or check
    only what the controller does at session end (the chain, the verdict) with results that
    arrive alike in every mode (``test_aggregate_is_identical_with_and_without_xdist``)."""
    argv = ("-p", "no:xdist", "--codegenie-bench=stub", "-p", "no:cacheprovider")

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest_inprocess(*argv, *args)

    return run


def run_cli(
    cwd: Path | None,
    *args: str,
    timeout: float = 300,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the ``codegenie-eval`` console script in a child process (in ``cwd``), with
    ``env`` added to this process's environment and ``PYTEST_ADDOPTS`` set to
    :data:`CHILD_ADDOPTS` unless ``env`` sets it."""
    return subprocess.run(
        [sys.executable, "-m", "pytest_codegenie_eval.cli.main", *args],
        cwd=cwd,
        env={**os.environ, "PYTEST_ADDOPTS": CHILD_ADDOPTS, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium from the system (``.ci/run`` installs Debian's ``chromium``), one
    per test module that asks for it."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it with apt-get")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()
