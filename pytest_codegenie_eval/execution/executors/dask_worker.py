"""The Dask worker's side: a job is plain data (:class:`CaseJob` with the task class as
content, :class:`TaskClassBundle`), and :func:`run_on_worker` runs exactly what a local
attempt runs.

The task class definition and the case travel as content with the digests the controller
computed; the worker writes them into a directory of its own, digests them again and
refuses the case (``harness.bundle_mismatch``) when a byte differs, so a worker never
scores against another rubric than the controller digested. Then it runs
:func:`~pytest_codegenie_eval.execution.attempt.attempt_case` with a sandboxed SUT and
rubric, keeps nothing, and returns the result and the diff for the controller to record
(:mod:`.dask_controller`). This module never imports ``distributed`` at module level and
knows nothing of the controller.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pytest_codegenie_eval.errors import CodegenieEvalError
from pytest_codegenie_eval.execution import results
from pytest_codegenie_eval.execution.gateway.settings import GatewaySettings
from pytest_codegenie_eval.execution.isolation.jailuser import hand_over
from pytest_codegenie_eval.execution.sut import SutPolicy, SutSpec, resolve_sut
from pytest_codegenie_eval.models import CaseResult
from pytest_codegenie_eval.taskclass.digests import case_digest, case_files
from pytest_codegenie_eval.taskclass.layout import CASES, DIGESTS_FILE
from pytest_codegenie_eval.taskclass.loader import (
    CaseEntry,
    LoadedTaskClass,
    Pins,
    definition_files,
    load_cases,
    load_task_class,
    read_pins,
    rubric_digest,
)


@dataclass(frozen=True)
class TaskClassBundle:
    """A task class definition as content: the files its rubric digest covers, and the
    case pins (``cases/digests.yaml``)."""

    name: str
    rubric_digest: str
    files: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class CaseBundle:
    """One case directory as content, with the digest the controller computed."""

    dir_name: str
    case_digest: str
    files: tuple[tuple[str, bytes], ...]


def bundle_task_class(loaded: LoadedTaskClass) -> TaskClassBundle:
    files = [(rel, path.read_bytes()) for rel, path in definition_files(loaded.directory)]
    pins = loaded.directory / CASES / DIGESTS_FILE
    if pins.is_file():
        files.append(("cases/digests.yaml", pins.read_bytes()))
    return TaskClassBundle(loaded.name, loaded.rubric_digest, tuple(sorted(files)))


def bundle_case(entry: CaseEntry) -> CaseBundle:
    files = tuple(sorted((rel, path.read_bytes()) for rel, path in case_files(entry.directory)))
    return CaseBundle(entry.directory.name, entry.digest, files)


def _write_files(root: Path, files: Iterable[tuple[str, bytes]]) -> None:
    for rel, data in files:
        target = (root / rel).resolve()
        if not target.is_relative_to(root.resolve()):
            raise CodegenieEvalError(f"bundle path {rel!r} leaves its directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


@dataclass(frozen=True)
class CaseJob:
    """Everything but the task class a worker needs to run one attempt of a case."""

    nodeid: str
    task_class: str
    case_id: str
    case: CaseBundle
    sut: SutSpec
    sut_option: str | None  # --codegenie-sut, to find the baseline in the worker's copy
    policy: SutPolicy
    rubric_sandbox: str
    cassette_dir: Path | None
    cassette_digest: str
    run_scope: str
    repeat: int
    import_timeout_s: float
    stop_event: str  # the cluster-wide "cost cap reached" event ("" without a cost cap)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)  # a gateway per worker


@dataclass(frozen=True)
class WorkerReply:
    """What a worker sends back: the result (None when the cost cap stopped the case
    before it started), the diff the SUT made, and which worker ran it."""

    result: CaseResult | None
    diff: str
    worker: str
    transcript: bytes = b""  # the model gateway's transcript of the attempt


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


# What a worker logs, with a traceback, when the heartbeat it had in flight meets the
# connection its own shutdown closed (dask/distributed#7105): noise at the end of a session
# that passed, never a failure.
_HEARTBEAT_FAILED = "Failed to communicate with scheduler during heartbeat."
_CLOSING = frozenset({"closing", "closing_gracefully", "closed"})


class _ShutdownNoise(logging.Filter):
    """Drops :data:`_HEARTBEAT_FAILED` while this worker is closing; the same failure
    while it runs is still logged."""

    def __init__(self, worker: Any) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(getattr(self.worker, "status", None), "value", None)
        return not (status in _CLOSING and record.getMessage() == _HEARTBEAT_FAILED)


def quiet_shutdown() -> None:
    """Keep this worker's shutdown from logging :data:`_HEARTBEAT_FAILED` (idempotent; run
    as the worker warms up and before each case, so a worker its nanny restarted has it)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # not on a worker
        return
    log = logging.getLogger("distributed.worker")
    if not any(isinstance(f, _ShutdownNoise) for f in log.filters):
        log.addFilter(_ShutdownNoise(worker))


def _stopped(name: str) -> bool:
    if not name:  # no cost cap: nothing can stop a case
        return False
    try:
        from distributed import Event

        event: Any = Event  # untyped in distributed
        return bool(event(name).is_set())
    except (ImportError, ValueError, RuntimeError):  # not on a worker, no client
        return False


def _mismatch(job: CaseJob, detail: str, worker: str) -> WorkerReply:
    result = results.harness_failure(
        job.task_class,
        job.case_id,
        job.nodeid,
        "harness.bundle_mismatch",
        detail,
        "crashed",
        job.repeat,
    )
    return WorkerReply(result, "", worker)


# A worker loads each task class definition once (its registration is imported in a child
# interpreter, ~50 ms): by rubric digest and case pins (the pins are not part of the rubric
# digest: a bench re-pinned between two sessions on one cluster has the same definition and
# other pins), in a directory of its own, re-checked before use.
_DEFINITIONS: dict[tuple[str, bytes], LoadedTaskClass] = {}
_DEFINITIONS_LOCK = threading.Lock()


def _definition(bundle: TaskClassBundle, import_timeout_s: float) -> LoadedTaskClass | str:
    """The loaded definition of ``bundle`` on this worker, or why its bytes are refused."""
    pins = b"".join(data for rel, data in bundle.files if rel == f"{CASES}/{DIGESTS_FILE}")
    key = (bundle.rubric_digest, hashlib.blake2b(pins).digest())
    with _DEFINITIONS_LOCK:
        known = _DEFINITIONS.get(key)
        if known is not None and rubric_digest(known.directory) == bundle.rubric_digest:
            return known
        root = Path(tempfile.mkdtemp(prefix="codegenie-dask-definition-"))
        atexit.register(shutil.rmtree, root, True)
        tc_dir = root / bundle.name
        _write_files(tc_dir, bundle.files)
        (tc_dir / CASES).mkdir(parents=True, exist_ok=True)
        got = rubric_digest(tc_dir)
        if got != bundle.rubric_digest:
            return (
                f"task class {bundle.name}: the worker's copy digests to {got[:16]}…, the "
                f"controller's to {bundle.rubric_digest[:16]}…; refusing to score against "
                "another rubric"
            )
        loaded = load_task_class(tc_dir, import_timeout_s=import_timeout_s)
        _DEFINITIONS[key] = loaded
        return loaded


# The pins of each loaded definition's digests.yaml, read once per worker (every case of a
# task class is checked against them; the file grows with the bench).
_PINS: dict[Path, Pins] = {}


def _pins_of(loaded: LoadedTaskClass) -> Pins:
    with _DEFINITIONS_LOCK:
        pins = _PINS.get(loaded.directory)
        if pins is None:
            pins = _PINS[loaded.directory] = read_pins(loaded.directory / CASES)
        return pins


def load_in_background(bundle: TaskClassBundle, import_timeout_s: float) -> None:
    """Start loading ``bundle`` on this worker in a thread of its own and return at once (run
    on every worker as the session starts, while pytest collects): the first case then finds
    it loaded, or waits for the load under way. What the load meets, the first case meets
    again and reports."""
    threading.Thread(
        target=_definition, args=(bundle, import_timeout_s), name="codegenie-load", daemon=True
    ).start()


def _case_entry(loaded: LoadedTaskClass, job: CaseJob, scratch: Path) -> CaseEntry | str:
    """The job's case written under ``scratch``, loaded as the loader loads any case (its
    pin checked against the task class's ``digests.yaml``), or why it is refused."""
    cases_dir = scratch / CASES
    case_dir = cases_dir / job.case.dir_name
    _write_files(case_dir, job.case.files)
    got = case_digest(case_dir)
    if got != job.case.case_digest:
        return (
            f"case {job.case_id}: the worker's copy digests to {got[:16]}…, the "
            f"controller's to {job.case.case_digest[:16]}…"
        )
    entries, _ = load_cases(cases_dir, _pins_of(loaded))
    return next(e for e in entries if e.name == job.case.dir_name)


def run_on_worker(bundle: TaskClassBundle, job: CaseJob) -> WorkerReply:
    """Run one attempt on a Dask worker, exactly as a local case runs (module docstring)."""
    from pytest_codegenie_eval.execution.attempt import RunSettings, attempt_case

    quiet_shutdown()
    worker = _worker_address()
    if _stopped(job.stop_event):
        return WorkerReply(None, "", worker)
    definition = _definition(bundle, job.import_timeout_s)
    if isinstance(definition, str):
        return _mismatch(job, definition, worker)
    scratch = Path(tempfile.mkdtemp(prefix="codegenie-dask-"))
    if job.policy.jail_user is not None:
        # the rubric's jail binds the case from here: its user must be able to enter it, or
        # every case would be staged on its own (a mount per case, kept for the worker's life)
        hand_over(scratch, job.policy.jail_user)
    try:
        entry = _case_entry(definition, job, scratch)
        if isinstance(entry, str):
            return _mismatch(job, entry, worker)
        if entry.error is not None or entry.case is None:
            failed = results.load_error(
                job.task_class, job.case_id, job.nodeid, entry.error, None, job.repeat
            )
            return WorkerReply(failed, "", worker)
        loaded = replace(
            definition,
            cases=(entry,),
            orphan_pins=(),
            by_dir=MappingProxyType({entry.name: entry}),
        )
        sut = job.sut
        if sut.kind == "baseline":
            # the baseline lives in the task class: run the worker's (verified) copy
            sut = resolve_sut(
                job.sut_option,
                baseline_script=loaded.task_class.baseline_sut_path,
                rootdir=loaded.directory,
                hook_identity=None,
            )
            if sut.digest != job.sut.digest:
                return _mismatch(job, "the baseline SUT's bytes differ on the worker", worker)
        # nothing is recorded here: the controller keeps the diff, the cost and the cache
        # entry of this reply as it does for a local attempt (record_attempt)
        settings = RunSettings(
            cache=None,
            ledger=None,
            run_scope=job.run_scope,
            cassette_dir=job.cassette_dir,
            cassette_digest=job.cassette_digest,
            sut_policy=job.policy,
            rubric_sandbox=job.rubric_sandbox,
            gateway=job.gateway,
        )
        done = attempt_case(loaded, entry, sut, settings, nodeid=job.nodeid, repeat=job.repeat)
        return WorkerReply(done.result, done.diff, worker, done.transcript)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def job_for(
    *,
    nodeid: str,
    loaded: LoadedTaskClass,
    entry: CaseEntry,
    sut: SutSpec,
    sut_option: str | None,
    policy: SutPolicy,
    rubric_sandbox: str,
    cassette_dir: Path | None,
    cassette_digest: str,
    run_scope: str,
    repeat: int,
    import_timeout_s: float,
    stop_event: str,
    gateway: GatewaySettings | None = None,
) -> CaseJob:
    """A :class:`CaseJob` for one attempt of a loaded case."""
    assert entry.case is not None
    return CaseJob(
        nodeid=nodeid,
        task_class=loaded.name,
        case_id=entry.case.case_id,
        case=bundle_case(entry),
        sut=sut,
        sut_option=sut_option,
        policy=policy,
        rubric_sandbox=rubric_sandbox,
        cassette_dir=cassette_dir,
        cassette_digest=cassette_digest,
        run_scope=run_scope,
        repeat=repeat,
        import_timeout_s=import_timeout_s,
        stop_event=stop_event,
        gateway=gateway or GatewaySettings(),
    )


__all__ = [
    "CaseBundle",
    "CaseJob",
    "TaskClassBundle",
    "WorkerReply",
    "bundle_case",
    "bundle_task_class",
    "job_for",
    "run_on_worker",
]
