"""Cases on a real Dask LocalCluster with two worker processes (issue 17); no mocks of Dask.

The shipped benches give the aggregate a local run gives; a worker killed mid-case yields a
retried case or ``harness.worker_lost``, never a lost one; the cost cap stops submission;
a worker that receives other task-class bytes than the controller digested refuses the
case (and, without that check, would have scored the agent with the other rubric).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pytest_codegenie_eval.cli import main as cli
from pytest_codegenie_eval.execution.executors.dask_controller import DaskRunner
from pytest_codegenie_eval.execution.executors.dask_worker import (
    CaseJob,
    bundle_task_class,
    job_for,
    run_on_worker,
)
from pytest_codegenie_eval.execution.executors.spec import ExecutorSpec, parse_executor
from pytest_codegenie_eval.execution.sut import SutPolicy, resolve_sut
from pytest_codegenie_eval.taskclass.loader import (
    LoadedTaskClass,
    load_task_class,
    rubric_digest,
)
from tests.conftest import REPO, copy_stub, grow_stub, newest_report, repin, run_cli

pytest.importorskip("distributed")

DASK = "--codegenie-executor=dask-local:2"
RUN = ("run", "-p", "no:cacheprovider")
# A SUT that kills the Dask worker it runs under (its parent, with the sandbox off) in
# every try, or only in the first try of each case ("once": a marker file remembers).
KILLER = """
import os, pathlib, signal, sys
workspace, markers, mode = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
marker = markers / os.environ["CODEGENIE_CASE_ID"]
if mode == "always" or not marker.exists():
    marker.touch()
    os.kill(os.getppid(), signal.SIGKILL)
    os._exit(1)
n = int((workspace / "question.txt").read_text().split()[-1])
(workspace / "answer.txt").write_text(f"{n + 1}\\n")
"""
# Answers right, reports a cost, and takes a moment (so that cases overlap on the cluster).
SPENDER = """
import json, pathlib, sys, time
workspace = pathlib.Path(sys.argv[1])
n = int((workspace / "question.txt").read_text().split()[-1])
(workspace / "answer.txt").write_text(f"{n + 1}\\n")
(workspace / ".codegenie").mkdir(exist_ok=True)
(workspace / ".codegenie" / "sut-result.json").write_text(json.dumps({"cost_usd": 0.4}))
time.sleep(0.5)
"""


def _report_of(state: Path, task_class: str) -> dict[str, Any]:
    (path,) = sorted((state / "runs").glob(f"*-{task_class}.json"))[-1:]
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_parse_executor_values() -> None:
    assert parse_executor("local").kind == "local"
    assert parse_executor("dask-local").workers == 2
    assert parse_executor("dask-local:4").label == "dask-local:4"
    assert parse_executor("dask://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"
    for bad in ("dask-local:0", "dask://host", "dask://host:99999", "ray://x:1", "dask-local:x"):
        with pytest.raises(ValueError, match="dask"):
            parse_executor(bad)


def test_the_shipped_benches_give_the_local_aggregate(tmp_path: Path) -> None:
    benches = (
        "--codegenie-bench=vuln-remediation",
        "--codegenie-bench=migration-chainguard-distroless",
    )
    local, remote = tmp_path / "local", tmp_path / "dask"
    done = run_cli(REPO, *RUN, *benches, f"--codegenie-state-dir={local}")
    assert done.returncode == cli.EXIT_OK, done.stdout[-3000:]
    done = run_cli(REPO, *RUN, *benches, f"--codegenie-state-dir={remote}", DASK)
    assert done.returncode == cli.EXIT_OK, done.stdout[-3000:] + done.stderr[-3000:]
    assert "executor: dask-local:2:" in done.stdout
    for task_class in ("vuln-remediation", "migration-chainguard-distroless"):
        a, b = _report_of(local, task_class), _report_of(remote, task_class)
        for name in ("run_id", "n", "passed_count", "mean", "lower_bound_95", "bound"):
            assert a[name] == b[name], (task_class, name)
        tries = [t for c in b["cases"] for t in c["executor_attempts"]]
        assert len(tries) == len(b["cases"])  # every case ran on a worker, once
        assert all(t["worker"].startswith("tls://127.0.0.1:") for t in tries)  # TLS, loopback
        assert all(c["sut_isolation"] == a["cases"][0]["sut_isolation"] for c in b["cases"])
    # the diffs came back with the results and are kept on the controller
    case = _report_of(remote, "vuln-remediation")["cases"][0]
    digest = case["diff_digest"]
    assert (remote / "diffs" / digest[:2] / f"{digest}.diff").is_file()


@pytest.fixture
def killer(pytester: pytest.Pytester, stub_bench: Path) -> Path:
    (pytester.path / "killer.py").write_text(KILLER)
    markers = pytester.path / "markers"
    markers.mkdir()
    return markers


def _run_killer(pytester: pytest.Pytester, markers: Path, mode: str, case: str) -> Any:
    return run_cli(
        pytester.path,
        *RUN,
        "--codegenie-bench=stub",
        "--codegenie-sut-sandbox=none",  # the SUT must see (and kill) its worker
        f"--codegenie-sut=python killer.py {{workspace}} {markers} {mode}",
        DASK,
        "-k",
        case,
    )


def test_a_worker_killed_mid_case_is_retried_once_and_both_tries_recorded(
    pytester: pytest.Pytester, killer: Path
) -> None:
    done = _run_killer(pytester, killer, "once", "alpha")
    assert done.returncode == cli.EXIT_OK, done.stdout[-3000:]
    (case,) = newest_report(pytester.path)["cases"]
    assert case["passed"]
    tries = case["executor_attempts"]
    assert [t["outcome"] for t in tries] == ["lost", "completed"]
    assert tries[0]["cost_usd"] is None  # the worker died before the SUT could report
    assert "1 lost with their worker and retried" in done.stdout


def test_a_case_whose_retry_dies_too_is_recorded_as_worker_lost(
    pytester: pytest.Pytester, killer: Path
) -> None:
    done = _run_killer(pytester, killer, "always", "beta")
    assert done.returncode == cli.EXIT_GENERIC
    report = newest_report(pytester.path)
    (case,) = report["cases"]
    assert [fm["code"] for fm in case["failure_modes"]] == ["harness.worker_lost"]
    assert [t["outcome"] for t in case["executor_attempts"]] == ["lost", "lost"]
    assert report["block_failure_count"] == 1


def test_the_cost_cap_stops_submission_across_the_cluster(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    grow_stub(stub_bench, 5)  # eight cases in all
    (pytester.path / "spender.py").write_text(SPENDER)
    done = run_cli(
        pytester.path,
        *RUN,
        "--codegenie-bench=stub",
        "--codegenie-sut=python spender.py {workspace}",
        "--codegenie-max-cost-usd=0.5",
        DASK,
    )
    assert done.returncode == cli.EXIT_COST_CAP, done.stdout[-3000:] + done.stderr[-3000:]
    report = newest_report(pytester.path)
    assert report["incomplete_reason"] == "cost_cap"
    ran = [c for c in report["cases"] if c["status"] == "scored"]
    # two in flight (one per worker); the cap is passed by the second result, and at most
    # the one submitted after the first result had started: never the other five
    assert 2 <= len(ran) <= 3, [c["case_id"] for c in ran]
    assert report["skipped_count"] == 8 - len(ran)
    assert report["total_cost_usd"] == pytest.approx(0.4 * len(ran))


@pytest.fixture(scope="module")
def runner() -> Iterator[DaskRunner]:
    started = DaskRunner(ExecutorSpec("dask-local", workers=2), max_cost_usd=None, run_scope="t")
    yield started
    started.close()


ALWAYS_ONE = """
from pytest_codegenie_eval.rubric import serve

def score(case, out):
    return {"score": 1.0, "breakdown": {"ANSWER_CORRECT": 1.0, "NO_EXTRA_FILES": 1.0}}

if __name__ == "__main__":
    serve(score)
"""


def _noop_job(loaded: LoadedTaskClass, rootdir: Path, stop_event: str = "") -> CaseJob:
    """A job for the stub's ``alpha`` with the no-op SUT (it answers nothing: score 0)."""
    return job_for(
        nodeid="alpha",
        loaded=loaded,
        entry=loaded.by_dir["alpha"],
        sut=resolve_sut("noop", baseline_script=None, rootdir=rootdir, hook_identity=None),
        sut_option="noop",
        policy=SutPolicy(),
        rubric_sandbox="auto",
        cassette_dir=None,
        cassette_digest="",
        run_scope="t",
        repeat=1,
        import_timeout_s=60,
        stop_event=stop_event,
    )


def test_a_worker_refuses_task_class_bytes_the_controller_did_not_digest(
    tmp_path: Path, runner: DaskRunner
) -> None:
    loaded = load_task_class(copy_stub(tmp_path))
    bundle = bundle_task_class(loaded)
    job = _noop_job(loaded, tmp_path, runner.stop_event)
    honest = runner.client.submit(run_on_worker, bundle, job, pure=False).result()
    assert honest.result.score == 0.0  # the no-op agent answers nothing
    swapped = tuple(
        (rel, ALWAYS_ONE.encode() if rel == "rubric.py" else data) for rel, data in bundle.files
    )
    tampered = replace(bundle, files=swapped)
    refused = runner.client.submit(run_on_worker, tampered, job, pure=False).result()
    assert [fm.code for fm in refused.result.failure_modes] == ["harness.bundle_mismatch"]
    assert not refused.result.passed
    assert "refusing to score against another rubric" in refused.result.failure_modes[0].detail

    # the attack is live without the check: the same bytes with their own digest score 1.0
    forged_dir = tmp_path / "forged" / "stub"
    for rel, data in swapped:
        (forged_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (forged_dir / rel).write_bytes(data)
    forged = replace(tampered, rubric_digest=rubric_digest(forged_dir))
    scored = runner.client.submit(run_on_worker, forged, job, pure=False).result()
    assert scored.result.score == 1.0


def test_usage_errors_before_any_case_starts(pytester: pytest.Pytester, stub_bench: Path) -> None:
    base = ("-p", "no:cacheprovider", "--codegenie-bench=stub")
    both = pytester.runpytest_inprocess(*base, DASK, "-n", "2")
    assert both.ret == pytest.ExitCode.USAGE_ERROR
    assert "one fan-out at a time" in both.stderr.str()
    gone = pytester.runpytest_inprocess(*base, "--codegenie-executor=dask://127.0.0.1:9")
    assert gone.ret == pytest.ExitCode.USAGE_ERROR
    assert "the Dask scheduler cannot be reached" in gone.stderr.str()
    assert not list((pytester.path / ".codegenie" / "eval").glob("runs/*"))
    pytester.makeconftest(
        "def pytest_codegenie_eval_run_sut(case, workspace, task_class, env):\n    return {}\n"
    )
    hooked = pytester.runpytest_inprocess(*base, DASK)
    assert hooked.ret == pytest.ExitCode.USAGE_ERROR
    assert "cannot run on a Dask worker" in hooked.stderr.str()


def test_results_are_cached_on_the_controller(pytester: pytest.Pytester, stub_bench: Path) -> None:
    first = run_cli(pytester.path, *RUN, "--codegenie-bench=stub", DASK)
    assert first.returncode == cli.EXIT_OK, first.stdout[-3000:]
    # the seconds a cluster takes to start are said, not silent (issue 26)
    assert "codegenie: starting the Dask executor dask-local:2 ..." in first.stdout
    assert "codegenie: Dask executor dask-local:2 ready (" in first.stdout
    measured = newest_report(pytester.path)
    again = run_cli(pytester.path, *RUN, "--codegenie-bench=stub", DASK)
    assert again.returncode == cli.EXIT_OK
    assert "cache hits 3/3" in again.stdout
    cached = newest_report(pytester.path)
    assert cached["run_id"] == measured["run_id"]
    assert all(not c["executor_attempts"] for c in cached["cases"])  # nothing was submitted


def test_an_existing_scheduler_is_used_by_its_address(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    """``dask://HOST:PORT``: a cluster the team runs (here one started beside the test)."""
    import distributed

    local_cluster: Any = distributed.LocalCluster  # untyped in distributed
    with local_cluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        address = str(cluster.scheduler_address).replace("tcp://", "dask://")
        done = run_cli(
            pytester.path, *RUN, "--codegenie-bench=stub", f"--codegenie-executor={address}"
        )
        assert done.returncode == cli.EXIT_OK, done.stdout[-3000:] + done.stderr[-2000:]
        workers = set(cluster.scheduler_info["workers"])
    report = newest_report(pytester.path)
    assert report["passed_count"] == 3
    ran_on = {t["worker"] for c in report["cases"] for t in c["executor_attempts"]}
    assert ran_on <= workers
    assert ran_on  # the cases ran on that cluster's workers, not in pytest


def test_a_worker_checks_a_re_pinned_case_against_its_new_pins(tmp_path: Path) -> None:
    # one long-lived worker, two sessions: between them a case was edited and re-pinned; the
    # definition (rubric digest) is the same, the pins are not. Run here, in this process,
    # as a worker runs it.
    task_class = copy_stub(tmp_path)

    def attempt() -> Any:
        loaded = load_task_class(task_class)
        job = _noop_job(loaded, tmp_path)
        return run_on_worker(bundle_task_class(loaded), job).result

    first = attempt()
    assert first.status == "scored", first.failure_modes
    (task_class / "cases" / "alpha" / "input" / "question.txt").write_text("What is 1 + 41?\n")
    repin(task_class)
    second = attempt()
    assert second.status == "scored", second.failure_modes
    assert second.case_digest != first.case_digest


def _loaded_digests() -> list[str]:
    from pytest_codegenie_eval.execution.executors import dask_worker

    return sorted(digest for digest, _pins in dask_worker._DEFINITIONS)


def test_workers_load_the_task_class_before_its_first_case(
    tmp_path: Path, runner: DaskRunner
) -> None:
    # started as the session starts: each worker loads in the background while pytest
    # collects, so no first case waits for the load
    task_class = copy_stub(tmp_path)
    (task_class / "rubric.py").write_text((task_class / "rubric.py").read_text() + "\n# v2\n")
    bundle = bundle_task_class(load_task_class(task_class))
    before = runner.client.run(_loaded_digests)
    assert all(bundle.rubric_digest not in got for got in before.values())
    runner.prepare([bundle], import_timeout_s=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        loaded = runner.client.run(_loaded_digests)
        if all(bundle.rubric_digest in got for got in loaded.values()):
            break
        time.sleep(0.1)
    assert all(bundle.rubric_digest in got for got in loaded.values()), loaded
    assert len(loaded) == 2  # every worker


def test_a_root_worker_stages_nothing_new_per_case(tmp_path: Path) -> None:
    # a root worker's jails start inside one staging namespace that binds what they read;
    # each case's copy on the worker must be reachable through what is staged already, or
    # every case adds a mount that lives as long as the worker (and that every later jail
    # copies)
    from pytest_codegenie_eval.execution.isolation.jailuser import Stage, default_jail_user
    from pytest_codegenie_eval.execution.isolation.sandbox import bwrap_status

    user = default_jail_user()
    if user is None or not bwrap_status(user).usable:
        pytest.skip("needs a root harness with bubblewrap (a jail user and its staging)")
    task_class = copy_stub(tmp_path)
    tmp_path.chmod(0o755)  # the sandbox user reads the task class
    loaded = load_task_class(task_class)
    job = _noop_job(loaded, tmp_path)
    bundle = bundle_task_class(loaded)
    first = run_on_worker(bundle, job).result
    assert first is not None
    assert first.rubric_isolation == "bwrap"
    staged = len(Stage.for_process()._staged)
    for _ in range(3):
        again = run_on_worker(bundle, job).result
        assert again is not None
        assert again.status == "scored"
    assert len(Stage.for_process()._staged) == staged


# A driver script of a user's that calls pytest.main() with no `if __name__ == "__main__":`
# guard, kills one worker mid-case (so that its nanny starts another), and prints its own
# path once the session is over.
UNGUARDED = """
import sys
import pytest

code = pytest.main(["-p", "no:cacheprovider", "--codegenie-bench=stub", "--codegenie-no-cache",
                    "--codegenie-sut-sandbox=none",
                    "--codegenie-sut=python killer.py {workspace} MARKERS once", "DASK",
                    "-k", "alpha"])
print("after the session:", __file__, int(code))
"""


def test_a_script_without_a_main_guard_is_not_run_again_by_the_workers(
    pytester: pytest.Pytester, killer: Path
) -> None:
    # workers start as multiprocessing's spawn and forkserver start a process: by importing
    # the main module again, which runs a whole session of pytest in each of them when the
    # script calling pytest.main() is not guarded
    script = pytester.path / "drive.py"
    script.write_text(UNGUARDED.replace("DASK", DASK).replace("MARKERS", str(killer)))
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.stdout.count("starting the Dask executor") == 1, done.stdout[-4000:]
    assert "INTERNALERROR" not in done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == f"after the session: {script} 0"
    report = _report_of(pytester.path / ".codegenie" / "eval", "stub")
    # the case lost its first worker, and its retry ran where a nanny had started another
    (case,) = report["cases"]
    assert [t["outcome"] for t in case["executor_attempts"]] == ["lost", "completed"]
