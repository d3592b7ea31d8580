"""A rubric starts while the SUT runs (issue 27): its jail and interpreter come up, it waits
for its request, and what it scores is what the workspace holds when the request is sent.
In every isolation this machine offers, as a root harness drops it to the sandbox user."""

from __future__ import annotations

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
from tests.conftest import copy_stub


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
