"""A rubric starts while the SUT runs (issue 27): its jail and interpreter come up, it waits
for its request, and what it scores is what the workspace holds when the request is sent.
In every isolation this machine offers, as a root harness drops it to the sandbox user."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_codegenie_eval.execution.isolation.jailuser import default_jail_user, give_to
from pytest_codegenie_eval.execution.rubric_runner import start_rubric
from pytest_codegenie_eval.process import StartedProcess
from pytest_codegenie_eval.taskclass.loader import LoadedTaskClass, load_task_class
from tests.conftest import copy_stub, newest_report, run_stub


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> LoadedTaskClass:
    root = tmp_path_factory.mktemp("prestart")
    root.chmod(0o755)  # a root harness's sandbox user reads the task class
    return load_task_class(copy_stub(root))


@pytest.fixture
def workspace() -> Iterator[Path]:
    run_dir = Path(tempfile.mkdtemp(prefix="codegenie-prestart-"))
    ws = run_dir / "workspace"
    ws.mkdir()
    yield ws
    shutil.rmtree(run_dir, ignore_errors=True)


def _hand_over(workspace: Path, mode: str) -> None:
    """What an attempt does for a root harness: a rubric jailed as the sandbox user gets
    the run directory and the workspace; one outside bubblewrap runs as the harness."""
    user = default_jail_user()
    if user is not None and mode in ("bwrap", "auto"):
        os.chown(workspace.parent, user.uid, user.gid)
        give_to(user, workspace)


@pytest.mark.parametrize("mode", ["bwrap", "namespaces", "none"])
def test_the_rubric_scores_what_the_workspace_holds_when_asked(
    stub: LoadedTaskClass, workspace: Path, mode: str
) -> None:
    alpha = next(e for e in stub.cases if e.case is not None and e.case.case_id == "alpha")
    assert alpha.case is not None
    user = default_jail_user()
    _hand_over(workspace, mode)
    with start_rubric(stub, alpha.case, alpha.directory, workspace, mode, user) as pending:
        # started, waiting for its request; the SUT writes its answer only now
        expected = (alpha.directory / "expected" / "answer.txt").read_text()
        (workspace / "answer.txt").write_text(expected)
        _hand_over(workspace, mode)
        verdict = pending.score({"workspace": str(workspace)})
    assert verdict.score == 1.0, verdict.failure_modes
    assert verdict.breakdown["ANSWER_CORRECT"] == 1.0


def test_a_rubric_never_asked_is_ended_and_its_directory_removed(
    stub: LoadedTaskClass, workspace: Path
) -> None:
    alpha = next(e for e in stub.cases if e.case is not None and e.case.case_id == "alpha")
    assert alpha.case is not None
    _hand_over(workspace, "auto")
    pending = start_rubric(
        stub, alpha.case, alpha.directory, workspace, "auto", default_jail_user()
    )
    started = pending._started
    assert isinstance(started, StartedProcess)
    assert started.proc.poll() is None  # waiting for its request
    cwd = Path(pending._cwd.name)
    assert cwd.is_dir()
    pending.close()
    assert started.proc.poll() is not None
    assert not cwd.exists()


# -- the next attempt's rubric starts while this one runs (sequential local executor) -----

# Loaded by the session under test: logs every child the harness starts, in order, as
# ``kind case run_dir`` (a rubric names its case directory, a SUT its workspace).
SPAWN_LOG = """
import json, os, re, time
from pytest_codegenie_eval import process

_popen = process.popen
LOG = os.path.join(os.path.dirname(__file__), "spawns.jsonl")


def popen(argv, **kwargs):
    text = " ".join(argv)
    # the last of each: a root harness's jail binds staged sources onto the real paths
    run_dirs = re.findall(r"(/[^ ]*?codegenie-(?!stage-)[a-z0-9]+-[^/ ]+)/workspace", text)
    if "runpy" in text:
        case = re.findall(r"/cases/([a-z0-9]+)\\b", text)[-1]
        kind = "rubric"
    elif "answer.py" in text and run_dirs:
        case = re.search(r"codegenie-([a-z0-9]+)-[^/]+$", run_dirs[-1]).group(1)
        kind = "sut"
    else:
        return _popen(argv, **kwargs)
    run_dir = run_dirs[-1]
    with open(LOG, "a") as fh:
        fh.write(json.dumps({"kind": kind, "case": case, "run_dir": run_dir}) + "\\n")
    return _popen(argv, **kwargs)


process.popen = popen
"""
# Answers the question, except for the case named in its second argument.
ANSWER = """
import pathlib, sys
workspace = pathlib.Path(sys.argv[1])
n = int((workspace / "question.txt").read_text().split()[-1])
wrong = len(sys.argv) > 2 and workspace.parent.name.startswith(f"codegenie-{sys.argv[2]}-")
(workspace / "answer.txt").write_text(f"{n + (2 if wrong else 1)}\\n")
"""


@pytest.fixture
def logged(pytester: pytest.Pytester, stub_bench: Path) -> Path:
    """The stub bench with ``answer.py`` beside it and every child the session starts
    logged (:func:`_spawns` reads the log)."""
    (pytester.path / "conftest.py").write_text(SPAWN_LOG)
    (pytester.path / "answer.py").write_text(ANSWER)
    return stub_bench


def _spawns(root: Path) -> list[tuple[str, str, str]]:
    log = root / "spawns.jsonl"
    lines = log.read_text().splitlines() if log.is_file() else []
    return [(s["kind"], s["case"], s["run_dir"]) for s in map(json.loads, lines)]


def test_the_next_rubric_starts_while_this_attempt_runs(
    pytester: pytest.Pytester, logged: Path
) -> None:
    done = run_stub(
        pytester, "--codegenie-no-cache", "--codegenie-sut=python answer.py {workspace}"
    )
    done.assert_outcomes(passed=3)
    spawns = _spawns(pytester.path)
    # each rubric once, the next one started before this attempt's SUT
    assert [(kind, case) for kind, case, _ in spawns] == [
        ("rubric", "alpha"),
        ("rubric", "beta"),
        ("sut", "alpha"),
        ("rubric", "gamma"),
        ("sut", "beta"),
        ("sut", "gamma"),
    ]
    # and scored the attempt it was started for: the SUT's workspace is the rubric's
    for case in ("alpha", "beta", "gamma"):
        dirs = {run_dir for _, c, run_dir in spawns if c == case}
        assert len(dirs) == 1, spawns
    report = newest_report(pytester.path)
    assert [c["score"] for c in report["cases"]] == [1.0, 1.0, 1.0]


def test_a_rubric_started_for_an_attempt_that_never_runs_is_ended(
    pytester: pytest.Pytester, logged: Path
) -> None:
    # alpha fails and -x stops the session: beta's rubric was started and is never asked
    done = run_stub(
        pytester, "-x", "--codegenie-no-cache", "--codegenie-sut=python answer.py {workspace} alpha"
    )
    done.assert_outcomes(failed=1)
    spawns = _spawns(pytester.path)
    assert [(kind, case) for kind, case, _ in spawns] == [
        ("rubric", "alpha"),
        ("rubric", "beta"),
        ("sut", "alpha"),
    ]
    # nothing of either attempt is left behind: run directories removed
    for _, _, run_dir in spawns:
        assert not Path(run_dir).exists(), run_dir


def test_side_by_side_each_rubric_starts_once_its_sut_is_under_way(
    pytester: pytest.Pytester, logged: Path
) -> None:
    # local:N (and a Dask worker) stage nothing ahead: attempts start together, and each
    # rubric starts only after its SUT has (0.3 s in, or as it ends), so the SUTs do not
    # start competing with three rubric interpreters for the CPU
    done = run_stub(
        pytester,
        "--codegenie-no-cache",
        "--codegenie-executor=local:3",
        "--codegenie-sut=python answer.py {workspace}",
    )
    done.assert_outcomes(passed=3)
    spawns = [(kind, case) for kind, case, _ in _spawns(pytester.path)]
    assert sorted(spawns) == sorted(
        (kind, case) for kind in ("rubric", "sut") for case in ("alpha", "beta", "gamma")
    )
    for case in ("alpha", "beta", "gamma"):
        assert spawns.index(("sut", case)) < spawns.index(("rubric", case)), spawns
