"""The local executors: attempts run in this process, one at a time, each when it is waited
for (so pytest reports it as it runs; the next one's rubric starts alongside), or with
``local:N`` up to N at once on threads, each driving its attempt's sandboxed processes (an
agent mostly waits on a model: the threads wait, the processes work), handed back in the
order they are waited for."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from pytest_codegenie_eval.execution.attempt import (
    Attempt,
    RunSettings,
    StagedAttempt,
    attempt_case,
    stage_attempt,
)
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


def run_job(job: LocalJob, settings: RunSettings, staged: StagedAttempt | None = None) -> Attempt:
    """Run one job's attempt here, in the calling thread (taking over ``staged``, its run
    directory and rubric started ahead, when there is one)."""
    return attempt_case(
        job.task_class,
        job.entry,
        job.sut,
        settings,
        nodeid=job.nodeid,
        hook=job.hook,
        repeat=job.repeat,
        staged=staged,
    )


class LocalExecutor:
    """Runs each submitted attempt in the calling thread when it is waited for; an attempt
    that would start after the run's recorded spend passed the cost cap does not start.

    The session may say which attempt it will ask for next (:meth:`expect`): that attempt's
    run directory and rubric are then staged as the current attempt starts, so its rubric's
    jail and interpreter come up while the current one runs, and it is scored without
    waiting for them. At most one attempt is staged ahead; one the session does not ask for
    next after all (the cost cap, ``-x``, an interrupted run) is ended unused."""

    label = "local"

    def __init__(self, settings: RunSettings) -> None:
        self.settings = settings
        self._jobs: dict[str, LocalJob] = {}
        self._expected: LocalJob | None = None
        self._staged: StagedAttempt | None = None

    def submit(self, jobs: Sequence[LocalJob]) -> None:
        for job in jobs:
            self._jobs[job.nodeid] = job

    def expect(self, job: LocalJob | None) -> None:
        """The attempt the session will ask for after the next :meth:`wait` (``None``: none
        known)."""
        self._expected = job

    def owns(self, nodeid: str) -> bool:
        return nodeid in self._jobs

    def wait(self, nodeid: str) -> Outcome:
        job = self._jobs.pop(nodeid)
        staged, self._staged = self._staged, None
        if staged is not None and staged.nodeid != nodeid:
            staged.close()
            staged = None
        settings = self.settings
        if settings.max_cost_usd is not None and settings.ledger is not None:
            spent = settings.ledger.total_usd()
            if cap_reached(spent, settings.max_cost_usd):
                if staged is not None:
                    staged.close()
                self._expected = None
                return Outcome(None, spent)
        if staged is None:
            staged = self._stage(job)  # this attempt's rubric first, then the next one's
        upcoming, self._expected = self._expected, None
        if upcoming is not None and upcoming.nodeid != nodeid:
            self._staged = self._stage(upcoming)
        return Outcome(run_job(job, settings, staged))

    def _stage(self, job: LocalJob) -> StagedAttempt | None:
        try:
            return stage_attempt(job.task_class, job.entry, self.settings, job.nodeid)
        except Exception:  # the attempt meets it again as it runs, and reports it
            return None

    def close(self) -> None:
        self._jobs.clear()
        self._expected = None
        staged, self._staged = self._staged, None
        if staged is not None:
            staged.close()


class ConcurrentLocalExecutor:
    """``--codegenie-executor=local:N``: every submitted attempt starts on one of N threads
    as soon as one is free, in submission (item) order; :meth:`wait` hands each back when
    its item asks, so results are reported, recorded (diff, ledger, cache) and chained in
    item order, exactly as with :class:`LocalExecutor`.

    The cost cap is checked before each attempt starts, against the spend recorded before
    this session's attempts plus what every attempt run here has cost so far. Attempts
    already running when the cap is reached finish and are recorded (their spend is real),
    so under a binding cap up to N - 1 more attempts run than one at a time would; every
    attempt not yet started is kept from starting. Closing cancels the attempts not yet
    started and waits for the running ones (each ends by its own timeout at the latest)."""

    def __init__(self, settings: RunSettings, workers: int) -> None:
        if workers < 2:
            raise ValueError(f"a concurrent executor needs 2 or more workers, got {workers}")
        self.settings = settings
        self.workers = workers
        self.label = f"local:{workers}"
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="codegenie-attempt")
        self._futures: dict[str, Future[Outcome]] = {}
        self._lock = threading.Lock()
        ledger = settings.ledger
        self._spent = ledger.total_usd() if ledger is not None else 0.0
        self._stopped = False

    def submit(self, jobs: Sequence[LocalJob]) -> None:
        for job in jobs:
            # each attempt sees this thread's context (the chain key, for one)
            context = contextvars.copy_context()
            self._futures[job.nodeid] = self._pool.submit(context.run, self._run, job)

    def _run(self, job: LocalJob) -> Outcome:
        cap = self.settings.max_cost_usd
        with self._lock:
            if self._stopped or (cap is not None and cap_reached(self._spent, cap)):
                self._stopped = True
                return Outcome(None, self._spent)
        attempt = run_job(job, self.settings)
        with self._lock:
            self._spent += attempt.result.cost_usd
        return Outcome(attempt)

    def owns(self, nodeid: str) -> bool:
        return nodeid in self._futures

    def wait(self, nodeid: str) -> Outcome:
        return self._futures.pop(nodeid).result()

    def close(self) -> None:
        with self._lock:
            self._stopped = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._futures.clear()


__all__ = ["ConcurrentLocalExecutor", "LocalExecutor", "LocalJob"]
