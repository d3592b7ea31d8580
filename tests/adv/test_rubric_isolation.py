"""A hostile rubric cannot see the harness's secrets, outlive its timeout, leave processes
behind, or blow up the harness's memory (docs/bench-authoring.md, process.py)."""

from __future__ import annotations

import json
import secrets as secrets_module
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_codegenie_eval.process import sandbox_prefix
from pytest_codegenie_eval.taskclass.digests import write_digests
from tests.adv.procs import alive, run_measuring_rss

Runner = Callable[..., tuple[pytest.RunResult, dict[str, dict[str, Any]]]]
BENCH = "adversarial-task-class"
ALLOWED_ENV = {"PATH", "LANG", "LC_ALL", "TZ", "PYTHONHASHSEED", "LC_CTYPE"}
SECRET_VARS = (
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "HOME",
    "USER",
)


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Credential-like variables in the harness's environment, each with a unique value."""
    values = {name: f"adv-sentinel-{name.lower()}-{uuid.uuid4().hex}" for name in SECRET_VARS}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def _env_report(case: dict[str, Any]) -> dict[str, Any]:
    (mode,) = case["failure_modes"]
    assert mode["code"] == "adv.report"
    report: dict[str, Any] = json.loads(mode["detail"])
    return report


def test_rubric_sees_only_the_allowlisted_environment(
    run_fixture_bench: Runner, secrets: dict[str, str], pytester: pytest.Pytester
) -> None:
    result, cases = run_fixture_bench(BENCH, "-k", "env-probe", subprocess=True)
    result.assert_outcomes(passed=1)
    case = cases["env-probe"]
    report = _env_report(case)
    assert set(report["environ"]) <= ALLOWED_ENV
    assert report["environ"]["TZ"] == "UTC"
    assert report["environ"]["PYTHONHASHSEED"] == "0"
    assert report["secret_names_seen"] == []
    assert case["breakdown"]["SECRETS_ABSENT"] == 1.0
    # its limits were applied before it ran: CPU a second past its 20 s timeout, 4 GiB of
    # address space, 64 MiB files (soft and hard)
    assert report["rlimits"] == {
        "cpu": [21, 21],
        "as": [4 * 1024**3] * 2,
        "fsize": [64 * 1024**2] * 2,
    }
    # no sentinel value reached the rubric under any name
    line = json.dumps(case)
    assert not [name for name, value in secrets.items() if value in line]
    # cwd is a fresh temporary directory, not the invocation directory, removed afterwards
    cwd = Path(report["cwd"])
    assert cwd != pytester.path
    assert cwd.name.startswith("codegenie-rubric-")
    assert not cwd.exists()


@pytest.mark.skipif(not sandbox_prefix(), reason="no unprivileged namespaces on this machine")
def test_rubric_cannot_read_secrets_from_the_harness_process(
    run_fixture_bench: Runner, secrets: dict[str, str]
) -> None:
    result, cases = run_fixture_bench(BENCH, "-k", "env-probe", subprocess=True)
    result.assert_outcomes(passed=1)
    assert _env_report(cases["env-probe"])["parent_environ_secret_names"] == []


# -- processes left behind -----------------------------------------------------------------


def _arm(task_class: Path, case: str, pid_file: Path, child_mode: str) -> str:
    """Point a case's pid_file at pid_file, choose how the rubric starts its child, and give
    the child a unique ``sleep`` argument; returns that argument."""
    token = f"300.{secrets_module.randbelow(10**9):09d}"
    toml = task_class / "cases" / case / "case.toml"
    text = toml.read_text(encoding="utf-8")
    text = text.replace(
        'pid_file = ""',
        f"pid_file = {json.dumps(str(pid_file))}\nsleep_token = {json.dumps(token)}",
    )
    text = text.replace('child_mode = "group"', f"child_mode = {json.dumps(child_mode)}")
    toml.write_text(text, encoding="utf-8")
    return token


def _sleepers(tokens: list[str]) -> list[int]:
    """Host pids of live `sleep TOKEN` processes (pids recorded inside a PID namespace
    mean nothing out here, so the children are found by their unique argument)."""
    wanted = {b"sleep\0" + token.encode() + b"\0" for token in tokens}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "cmdline").read_bytes() in wanted and alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_sleeper_scan_finds_a_live_child() -> None:
    import subprocess

    token = f"300.{secrets_module.randbelow(10**9):09d}"
    child = subprocess.Popen(["sleep", token])
    try:
        # Popen can return before the child has exec'd sleep: poll the process table
        deadline = time.monotonic() + 5.0
        while _sleepers([token]) != [child.pid] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _sleepers([token]) == [child.pid]
    finally:
        child.kill()
        child.wait()
    assert _sleepers([token]) == []


def _read_pids(pid_file: Path) -> list[int]:
    return [int(p) for p in pid_file.read_text().split()]


@pytest.mark.parametrize(
    "child_mode",
    [
        "group",
        "setsid",
    ],
)
def test_rubric_timeout_and_orphans_leave_no_process_behind(
    run_fixture_bench: Runner,
    copy_task_class: Callable[[str], Path],
    tmp_path: Path,
    recorded_pids: list[int],
    child_mode: str,
) -> None:
    task_class = copy_task_class(BENCH)
    timeout_pids, orphan_pids = tmp_path / "timeout.pids", tmp_path / "orphan.pids"
    tokens = [
        _arm(task_class, "sleep-past-timeout", timeout_pids, child_mode),
        _arm(task_class, "orphan-child", orphan_pids, child_mode),
    ]
    write_digests(task_class / "cases")

    started = time.monotonic()
    result, cases = run_fixture_bench(
        BENCH,
        "-k",
        "sleep-past-timeout or orphan-child",
        # the rubric records its pids in a host file, which a bwrap jail could not write;
        # bwrap's own PID namespace is covered in tests/adv/test_sut_sandbox.py
        "--codegenie-rubric-sandbox=namespaces",
        root=task_class.parent,
        subprocess=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert _read_pids(timeout_pids)
    assert _read_pids(orphan_pids)

    result.assert_outcomes(failed=1, passed=1)
    timed_out = cases["sleep-past-timeout"]
    assert [fm["code"] for fm in timed_out["failure_modes"]] == ["rubric.timeout"]
    assert timed_out["failure_modes"][0]["detail"] == "killed after 2 s"
    result.stdout.fnmatch_lines(["*[[]block[]] rubric.timeout: killed after 2 s"])
    assert cases["orphan-child"]["passed"] is True
    # the rubric sleeps 600 s: the session must end soon after its 2 s timeout
    assert elapsed < 30
    deadline = time.monotonic() + 2.0
    left = _sleepers(tokens)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a process table: there is nothing to wait on
        left = _sleepers(tokens)
    recorded_pids += left  # killed at teardown if the assertion fails
    assert left == []


# -- memory ------------------------------------------------------------------------------


def _harness_peak_rss_kb(pytester: pytest.Pytester, case: str, tag: str) -> int:
    root = Path(__file__).resolve().parents[1] / "fixtures" / "bench"
    _result, peak = run_measuring_rss(
        pytester,
        f"--codegenie-bench={BENCH}",
        f"--codegenie-bench-root={root}",
        f"--codegenie-state-dir={pytester.path / tag}",
        "--codegenie-no-cache",
        "-k",
        case,
        timeout=60,
    )
    return peak


def test_50_mb_of_rubric_stdout_does_not_grow_the_harness(pytester: pytest.Pytester) -> None:
    control = _harness_peak_rss_kb(pytester, "garbage", "control")
    huge = _harness_peak_rss_kb(pytester, "huge-stdout", "huge")
    # the rubric writes 50 MiB; the harness keeps at most 1 MiB of it
    assert huge - control < 24 * 1024, (control, huge)
