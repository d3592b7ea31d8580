"""``--codegenie-executor=local:N``: N attempts at once inside the pytest process (issue 27).

Real sessions of the stub bench, the SUT in its default sandbox. The results, the run id
and the aggregate are those of the sequential executor; the attempts overlap in time (each
SUT prints when it started and ended, and the report keeps what it printed); the cost cap
stops attempts from starting; ``-n`` with ``local:N``, a hook SUT and a bad value are usage
errors before any case starts.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from pytest_codegenie_eval.cli import main as cli
from pytest_codegenie_eval.execution.executors.spec import parse_executor
from tests.conftest import grow_stub, newest_report, run_cli

LOCAL = "--codegenie-executor=local:4"
RUN = ("run", "-p", "no:cacheprovider", "--codegenie-bench=stub", "--codegenie-no-cache")
# Answers right after a pause; with "stamp" it prints when it started and ended.
SLOW = """
import pathlib, sys, time
workspace, mode = pathlib.Path(sys.argv[1]), sys.argv[2]
started = time.time()
n = int((workspace / "question.txt").read_text().split()[-1])
time.sleep(0.6)
(workspace / "answer.txt").write_text(f"{n + 1}\\n")
if mode == "stamp":
    print(f"ran {started:.6f} {time.time():.6f}")
"""
SPENDER = """
import json, pathlib, sys, time
workspace = pathlib.Path(sys.argv[1])
n = int((workspace / "question.txt").read_text().split()[-1])
(workspace / "answer.txt").write_text(f"{n + 1}\\n")
(workspace / ".codegenie").mkdir(exist_ok=True)
(workspace / ".codegenie" / "sut-result.json").write_text(json.dumps({"cost_usd": 0.4}))
time.sleep(0.5)
"""


def _report(state: Path) -> dict[str, Any]:
    (path,) = sorted((state / "runs").glob("*-stub.json"))[-1:]
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _intervals(report: dict[str, Any]) -> list[tuple[float, float]]:
    spans = []
    for case in report["cases"]:
        _, start, end = case["stdout_tail"].split()
        spans.append((float(start), float(end)))
    return spans


def test_parse_local_values() -> None:
    assert parse_executor("local:8").label == "local:8"
    assert parse_executor("local:8").concurrent_local
    assert parse_executor("local:1").label == "local"
    assert not parse_executor("local").concurrent_local
    for bad in ("local:0", "local:x", "local:", "local:257"):
        with pytest.raises(ValueError, match="local:N"):
            parse_executor(bad)


def test_attempts_overlap_and_give_the_sequential_results(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    (pytester.path / "slow.py").write_text(SLOW)
    states = {name: pytester.path / name for name in ("one", "four", "stamped-1", "stamped-4")}
    for name, extra, mode in (
        ("one", (), "plain"),
        ("four", (LOCAL,), "plain"),
        ("stamped-1", (), "stamp"),
        ("stamped-4", (LOCAL,), "stamp"),
    ):
        done = run_cli(
            pytester.path,
            *RUN,
            "-v",
            f"--codegenie-state-dir={states[name]}",
            f"--codegenie-sut=python slow.py {{workspace}} {mode}",
            *extra,
        )
        assert done.returncode == cli.EXIT_OK, done.stdout[-3000:] + done.stderr[-3000:]
        # reported in item order, whatever order the attempts finished in
        order = [
            line.split("::")[1].split()[0] for line in done.stdout.splitlines() if " PASSED" in line
        ]
        assert order == ["alpha", "beta", "gamma"], done.stdout
        if extra:
            assert (
                "executor: local:4: up to 4 attempts at once in this pytest process" in done.stdout
            )
    one, four = _report(states["one"]), _report(states["four"])
    for name in ("run_id", "n", "passed_count", "mean", "lower_bound_95", "bound", "cases"):
        if name == "cases":
            strip = ("duration_s", "executor_attempts", "jail_uid")
            assert [{k: v for k, v in c.items() if k not in strip} for c in one[name]] == [
                {k: v for k, v in c.items() if k not in strip} for c in four[name]
            ]
        else:
            assert one[name] == four[name], name
    # one at a time, each attempt ends before the next starts; with local:4 all three ran
    # at once (the latest start is before the earliest end)
    sequential = sorted(_intervals(_report(states["stamped-1"])))
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(sequential))
    together = _intervals(_report(states["stamped-4"]))
    assert max(start for start, _ in together) < min(end for _, end in together), together
    # the chain records one run per session, in order, and verifies
    verify = run_cli(pytester.path, "verify", f"--state-dir={states['four']}")
    assert verify.returncode == cli.EXIT_OK, verify.stdout + verify.stderr


def test_the_cost_cap_stops_attempts_from_starting(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    grow_stub(stub_bench, 5)  # eight cases in all
    (pytester.path / "spender.py").write_text(SPENDER)
    done = run_cli(
        pytester.path,
        *RUN,
        "--codegenie-sut=python spender.py {workspace}",
        "--codegenie-max-cost-usd=0.5",
        "--codegenie-executor=local:2",
    )
    assert done.returncode == cli.EXIT_COST_CAP, done.stdout[-3000:] + done.stderr[-3000:]
    report = newest_report(pytester.path)
    assert report["incomplete_reason"] == "cost_cap"
    ran = [c for c in report["cases"] if c["status"] == "scored"]
    # two at once; the cap is passed by the second result, and at most the attempt started
    # when the first one freed its thread also ran: never the other five
    assert 2 <= len(ran) <= 3, [c["case_id"] for c in ran]
    assert report["skipped_count"] == 8 - len(ran)
    assert report["total_cost_usd"] == pytest.approx(0.4 * len(ran))


def test_usage_errors_before_any_case_starts(pytester: pytest.Pytester, stub_bench: Path) -> None:
    base = ("-p", "no:cacheprovider", "--codegenie-bench=stub")
    both = pytester.runpytest_inprocess(*base, LOCAL, "-n", "2")
    assert both.ret == pytest.ExitCode.USAGE_ERROR
    assert "one fan-out at a time (this process runs 4 attempts at once; drop -n)" in (
        both.stderr.str()
    )
    bad = pytester.runpytest_inprocess(*base, "--codegenie-executor=local:0")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "local:N takes 1 to 256 attempts at once" in bad.stderr.str()
    pytester.makeconftest(
        "def pytest_codegenie_eval_run_sut(case, workspace, task_class, env):\n    return {}\n"
    )
    hooked = pytester.runpytest_inprocess(*base, LOCAL)
    assert hooked.ret == pytest.ExitCode.USAGE_ERROR
    assert "not made to be called from several threads at once" in hooked.stderr.str()
    assert not list((pytester.path / ".codegenie" / "eval").glob("runs/*"))


# Watches the session's own os.environ while its attempts run side by side: every
# CODEGENIE_ variable that ever appears there is written down when the session ends.
ENVIRON_WATCH = """
import os, pathlib, threading, time

seen = set()
stop = threading.Event()


def _watch():
    while not stop.is_set():
        try:
            seen.update(name for name in list(os.environ) if name.startswith("CODEGENIE_"))
        except RuntimeError:  # changed while read: read it again
            continue
        time.sleep(0.002)


def pytest_sessionstart(session):
    threading.Thread(target=_watch, daemon=True).start()


def pytest_unconfigure(config):
    stop.set()
    pathlib.Path("environ-seen.txt").write_text(" ".join(sorted(seen)))
"""


def test_attempts_side_by_side_leave_the_harness_environment_alone(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    # os.environ is one per process: an attempt that put its case's canary there, and
    # restored it when done, would hand it to the attempt running beside it, and could
    # leave it behind (restoring a copy taken while the other attempt's canary was in)
    (pytester.path / "slow.py").write_text(SLOW)
    (pytester.path / "conftest.py").write_text(ENVIRON_WATCH)
    done = run_cli(pytester.path, *RUN, "--codegenie-sut=python slow.py {workspace} plain", LOCAL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (pytester.path / "environ-seen.txt").read_text() == ""
