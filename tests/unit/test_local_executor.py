"""The sequential local executor stages the attempt the session asks for next: its run
directory and rubric start as the current attempt starts, the attempt takes them over, and
one the session never asks for is ended (issue 27). The attempts and the staging are
stand-ins here; tests/integration/test_rubric_prestart.py runs real ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_codegenie_eval.execution.attempt import Attempt, RunSettings
from pytest_codegenie_eval.execution.executors import local
from pytest_codegenie_eval.execution.executors.local import LocalExecutor, LocalJob
from pytest_codegenie_eval.execution.executors.protocol import Outcome
from pytest_codegenie_eval.models import CaseResult
from pytest_codegenie_eval.store.cost_ledger import CostLedger, Invocation


class FakeStaged:
    def __init__(self, nodeid: str, events: list[str]) -> None:
        self.nodeid = nodeid
        self.events = events
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.events.append(f"close {self.nodeid}")


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    log: list[str] = []
    staged: dict[str, FakeStaged] = {}

    def stage(task_class: Any, entry: Any, settings: Any, nodeid: str) -> FakeStaged:
        if nodeid == "broken":
            raise OSError("no space left")
        log.append(f"stage {nodeid}")
        staged[nodeid] = FakeStaged(nodeid, log)
        return staged[nodeid]

    def run(job: LocalJob, settings: RunSettings, staged: FakeStaged | None = None) -> Attempt:
        log.append(f"run {job.nodeid} with {staged.nodeid if staged else None}")
        result = CaseResult.model_construct(cost_usd=0.0)
        return Attempt(result)

    monkeypatch.setattr(local, "stage_attempt", stage)
    monkeypatch.setattr(local, "run_job", run)
    return log


def _job(nodeid: str) -> LocalJob:
    return LocalJob(nodeid, task_class=None, entry=None, sut=None)  # type: ignore[arg-type]


def _attempt(executor: LocalExecutor, nodeid: str, upcoming: str | None = None) -> Outcome:
    """What an item does: submit its job, say which one runs next, wait for its outcome."""
    executor.submit([_job(nodeid)])
    executor.expect(_job(upcoming) if upcoming else None)
    return executor.wait(nodeid)


def _settings(tmp_path: Path, cap: float | None = None) -> RunSettings:
    ledger = CostLedger(tmp_path / "ledger.jsonl")
    return RunSettings(cache=None, ledger=ledger, run_scope="s", max_cost_usd=cap)


def test_the_next_attempt_is_staged_as_this_one_starts(events: list[str], tmp_path: Path) -> None:
    executor = LocalExecutor(_settings(tmp_path))
    for nodeid, upcoming in (("a", "b"), ("b", "c"), ("c", None)):
        _attempt(executor, nodeid, upcoming)
    executor.close()
    assert events == [
        "stage a",  # its own first, then the next one's
        "stage b",
        "run a with a",
        "stage c",
        "run b with b",
        "run c with c",
    ]


def test_a_staged_attempt_not_asked_for_is_ended(events: list[str], tmp_path: Path) -> None:
    executor = LocalExecutor(_settings(tmp_path))
    _attempt(executor, "a", "b")
    # pytest ran something else next (b was deselected, or another plugin reordered)
    _attempt(executor, "c")
    # and the session ends with one staged
    _attempt(executor, "d", "e")
    executor.close()
    assert events == [
        "stage a",
        "stage b",
        "run a with a",
        "close b",
        "stage c",
        "run c with c",
        "stage d",
        "stage e",
        "run d with d",
        "close e",
    ]


def test_the_cost_cap_ends_a_staged_attempt(events: list[str], tmp_path: Path) -> None:
    settings = _settings(tmp_path, cap=1.0)
    executor = LocalExecutor(settings)
    _attempt(executor, "a", "b")
    assert settings.ledger is not None
    settings.ledger.record(Invocation("s:t:a", "t", "a", 2.0))  # a spent past the cap
    outcome = _attempt(executor, "b", "c")
    assert outcome.attempt is None
    assert outcome.spent_usd == 2.0
    executor.close()
    assert events == ["stage a", "stage b", "run a with a", "close b"]


def test_staging_that_fails_leaves_the_attempt_to_meet_it(
    events: list[str], tmp_path: Path
) -> None:
    executor = LocalExecutor(_settings(tmp_path))
    _attempt(executor, "a", "broken")
    _attempt(executor, "broken")
    assert events == ["stage a", "run a with a", "run broken with None"]
