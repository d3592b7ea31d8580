"""The local executor: attempts run in this process, one at a time, each when it is
waited for (so pytest reports it as it runs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pytest_codegenie_eval.execution.attempt import RunSettings, attempt_case
from pytest_codegenie_eval.execution.executors.protocol import Outcome
from pytest_codegenie_eval.execution.sut import HookRunner, SutSpec
from pytest_codegenie_eval.store.cost_ledger import cap_reached
from pytest_codegenie_eval.taskclass.loader import CaseEntry, LoadedTaskClass


@dataclass(frozen=True)
class LocalJob:
    """One attempt of a loaded case, to run here."""

    nodeid: str
    task_class: LoadedTaskClass
    entry: CaseEntry
    sut: SutSpec
    repeat: int = 1
    hook: HookRunner | None = None  # runs a SUT given as a pytest hook


class LocalExecutor:
    """Runs each submitted attempt in the calling thread when it is waited for; an attempt
    that would start after the run's recorded spend passed the cost cap does not start."""

    label = "local"

    def __init__(self, settings: RunSettings) -> None:
        self.settings = settings
        self._jobs: dict[str, LocalJob] = {}

    def submit(self, jobs: Sequence[LocalJob]) -> None:
        for job in jobs:
            self._jobs[job.nodeid] = job

    def owns(self, nodeid: str) -> bool:
        return nodeid in self._jobs

    def wait(self, nodeid: str) -> Outcome:
        job = self._jobs.pop(nodeid)
        settings = self.settings
        if settings.max_cost_usd is not None and settings.ledger is not None:
            spent = settings.ledger.total_usd()
            if cap_reached(spent, settings.max_cost_usd):
                return Outcome(None, spent)
        attempt = attempt_case(
            job.task_class,
            job.entry,
            job.sut,
            settings,
            nodeid=job.nodeid,
            hook=job.hook,
            repeat=job.repeat,
        )
        return Outcome(attempt)

    def close(self) -> None:
        self._jobs.clear()


__all__ = ["LocalExecutor", "LocalJob"]
