"""Handing a session's case items to the Dask executor (``--codegenie-executor=dask…``):
the pytest side of :mod:`~pytest_codegenie_eval.execution.executors.dask_controller`, which
takes plain jobs and never sees an item."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pytest_codegenie_eval.errors import CodegenieEvalError
from pytest_codegenie_eval.execution.attempt import cache_key, cached_result
from pytest_codegenie_eval.execution.executors.dask_worker import (
    CaseJob,
    TaskClassBundle,
    bundle_task_class,
    job_for,
)
from pytest_codegenie_eval.pytest_plugin.items import CaseItem
from pytest_codegenie_eval.pytest_plugin.session import BenchSession


def submit_items(bench: BenchSession, items: Iterable[Any]) -> int:
    """Submit every runnable, uncached case item of the session; returns how many."""
    runner = bench.executor
    assert runner is not None
    settings = bench.run_settings
    bundles: dict[str, TaskClassBundle] = {}
    jobs: list[tuple[CaseJob, TaskClassBundle]] = []
    for item in items:
        if not isinstance(item, CaseItem) or item.error is not None:
            continue
        loaded, entry = item.task_class, item.entry
        if loaded is None or entry is None or entry.case is None or entry.error is not None:
            continue  # runs (and fails) in the item itself
        try:
            sut = bench.sut_for(loaded)
        except CodegenieEvalError:
            continue
        key = cache_key(entry, loaded, sut, settings, item.repeat)
        if cached_result(settings, key, item.nodeid, item.repeat) is not None:
            continue  # a cache hit costs nothing: the item reads it itself
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
