"""Handing a session's case items to its executor (``--codegenie-executor=local:N`` or
``dask…``): the pytest side of the executors, which take plain jobs and never see an
item."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pytest_codegenie_eval.execution.executors.dask_worker import (
    CaseJob,
    TaskClassBundle,
    bundle_task_class,
    job_for,
)
from pytest_codegenie_eval.execution.executors.local import ConcurrentLocalExecutor, LocalJob
from pytest_codegenie_eval.execution.sut import SutSpec
from pytest_codegenie_eval.pytest_plugin.items import CaseItem
from pytest_codegenie_eval.pytest_plugin.session import BenchSession


def submit_items(bench: BenchSession, items: Iterable[Any]) -> int:
    """Submit every runnable, uncached case item of the session to the session's executor
    (Dask, or ``local:N``); returns how many."""
    runner = bench.executor
    assert runner is not None
    settings = bench.run_settings
    if isinstance(runner, ConcurrentLocalExecutor):
        local: list[LocalJob] = []
        for item, sut in _runnable(bench, items):
            local.append(item.local_job(sut))
        runner.submit(local)
        return len(local)
    bundles: dict[str, TaskClassBundle] = {}
    jobs: list[tuple[CaseJob, TaskClassBundle]] = []
    for item, sut in _runnable(bench, items):
        loaded, entry = item.task_class, item.entry
        assert loaded is not None
        assert entry is not None
        if loaded.name not in bundles:
            bundles[loaded.name] = bundle_task_class(loaded)
        job = job_for(
            nodeid=item.nodeid,
            loaded=loaded,
            entry=entry,
            sut=sut,
            sut_option=bench.settings.sut,
            policy=settings.sut_policy,
            rubric_sandbox=settings.rubric_sandbox,
            cassette_dir=settings.cassette_dir,
            cassette_digest=settings.cassette_digest,
            run_scope=settings.run_scope,
            repeat=item.repeat,
            import_timeout_s=bench.settings.import_timeout_s,
            stop_event=runner.stop_event,
            gateway=settings.gateway,
        )
        jobs.append((job, bundles[loaded.name]))
    runner.submit(jobs)
    return len(jobs)


def _runnable(bench: BenchSession, items: Iterable[Any]) -> Iterator[tuple[CaseItem, SutSpec]]:
    """The case items an executor runs, with their SUT (:meth:`CaseItem.runnable_sut`)."""
    for item in items:
        if isinstance(item, CaseItem):
            sut = item.runnable_sut(bench)
            if sut is not None:
                yield item, sut
