"""Hostile SUTs (command form): crashing, hanging, escaping the workspace and leaking the
canary each become a block failure of that case, whatever the rubric scores (docs/sut-contract.md).

Every run selects the ``sut-target`` case (rubric role "ok", sut_timeout_s = 2), so the
rubric would give 1.0: only the harness's own checks can fail these cases.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.adv.procs import survivors

Runner = Callable[..., tuple[pytest.RunResult, dict[str, dict[str, Any]]]]
BENCH = "adversarial-task-class"
SUTS = Path(__file__).resolve().parents[1] / "fixtures" / "bench" / BENCH / "suts"
TARGET = "sut-target"


def _sut(script: str, *args: str) -> str:
    command = shlex.join([sys.executable, "-I", str(SUTS / script)])
    return f"--codegenie-sut={command} {{workspace}} {shlex.join(args)}".rstrip()


def _codes(case: dict[str, Any]) -> list[str]:
    return [fm["code"] for fm in case["failure_modes"]]


def test_noop_control_passes(run_fixture_bench: Runner) -> None:
    # the target case passes with a harmless SUT, so each failure below is the SUT's doing
    result, cases = run_fixture_bench(BENCH, "-k", TARGET, "--codegenie-sut=noop")
    result.assert_outcomes(passed=1)
    assert cases[TARGET]["failure_modes"] == []


def test_sut_that_raises_is_sut_exception_with_its_traceback(run_fixture_bench: Runner) -> None:
    result, cases = run_fixture_bench(BENCH, "-k", TARGET, _sut("raises.py"))
    result.assert_outcomes(failed=1)
    case = cases[TARGET]
    assert _codes(case) == ["sut.exception"]
    detail = case["failure_modes"][0]["detail"]
    assert detail.startswith("exit code 1; stderr: Traceback")
    assert "RuntimeError: adversarial SUT exploded in" in detail
    assert case["passed"] is False
    result.stdout.fnmatch_lines(
        [
            "*[[]block[]] sut.exception: exit code 1; stderr: Traceback*",
            "SUT exit code: 1",
            "SUT stderr (tail):",
            "*RuntimeError: adversarial SUT exploded in*",
        ]
    )


@pytest.mark.parametrize(
    "child_mode",
    [
        "group",
        "setsid",
    ],
)
def test_hanging_sut_is_killed_with_its_children(
    run_fixture_bench: Runner, tmp_path: Path, recorded_pids: list[int], child_mode: str
) -> None:
    pid_file = tmp_path / "sut.pids"
    started = time.monotonic()
    # env-only, so the SUT can record its pids on the host: this is the harness's own
    # process-group and subreaper defence, which holds without the sandbox too
    result, cases = run_fixture_bench(
        BENCH,
        "-k",
        TARGET,
        _sut("hangs.py", str(pid_file), child_mode),
        "--codegenie-sut-sandbox=none",
        subprocess=True,
    )
    elapsed = time.monotonic() - started
    recorded_pids += [int(p) for p in pid_file.read_text().split()]

    result.assert_outcomes(failed=1)
    assert _codes(cases[TARGET]) == ["sut.timeout"]
    result.stdout.fnmatch_lines(["*[[]block[]] sut.timeout: killed after 2 s"])
    assert elapsed < 30  # the SUT never ends by itself
    assert survivors(recorded_pids) == []


def test_sut_writing_outside_its_workspace_is_escaped_workspace(run_fixture_bench: Runner) -> None:
    # without the sandbox the write lands next to the workspace and is detected
    result, cases = run_fixture_bench(
        BENCH, "-k", TARGET, _sut("escapes.py"), "--codegenie-sut-sandbox=none"
    )
    result.assert_outcomes(failed=1)
    case = cases[TARGET]
    assert _codes(case) == ["sut.escaped_workspace"]
    assert case["failure_modes"][0]["detail"] == "wrote outside its workspace: escape.txt"
    assert case["score"] == 1.0  # the rubric was satisfied; the harness still blocks
    result.stdout.fnmatch_lines(
        ["*[[]block[]] sut.escaped_workspace: wrote outside its workspace: escape.txt"]
    )


@pytest.mark.parametrize("channel", ["stdout", "stderr", "file"])
def test_sut_leaking_the_canary_is_canary_leaked(run_fixture_bench: Runner, channel: str) -> None:
    result, cases = run_fixture_bench(BENCH, "-k", TARGET, _sut("leaks_canary.py", channel))
    result.assert_outcomes(failed=1)
    case = cases[TARGET]
    assert _codes(case) == ["canary.leaked"]
    assert case["score"] == 1.0
    result.stdout.fnmatch_lines(
        ["*[[]block[]] canary.leaked: the SUT's output contains the case's canary"]
    )
