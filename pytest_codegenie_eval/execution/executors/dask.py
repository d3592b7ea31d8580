"""Cases on a Dask cluster: ``--codegenie-executor=dask://HOST:PORT`` or ``dask-local[:N]``.

pytest stays the controller. Once collection is done the plugin submits every selected,
uncached case (:meth:`DaskRunner.submit`), and each item's ``runtest`` waits for its own
future (:meth:`DaskRunner.wait`): the cluster runs the cases in parallel while the terminal
reports them in item order.

A worker runs exactly what a local case runs (:func:`run_on_worker`): the task class
definition and the case travel as content (:class:`TaskClassBundle`, :class:`CaseBundle`)
with the digests the controller computed, and the worker writes them into a directory of
its own, digests them again and refuses the case (``harness.bundle_mismatch``) when a byte
differs, so a worker never scores against another rubric than the controller digested.
Then it runs :func:`~pytest_codegenie_eval.execution.attempt.attempt_case` with a sandboxed
SUT and rubric, keeps nothing, and returns the :class:`~pytest_codegenie_eval.models.CaseResult`
and the diff. The controller records them with
:func:`~pytest_codegenie_eval.execution.attempt.record_attempt`, the function that records a
local attempt: the diff kept, the cost in the ledger, the result cached.

- **Cost cap.** With ``--codegenie-max-cost-usd`` the controller keeps at most one case
  per worker thread in flight and submits the next one as a result arrives; once the
  recorded spend passes the cap it submits nothing more, sets a cluster-wide event that
  makes a queued case return unstarted, and cancels the futures it has not submitted. A
  case that already started finishes and is recorded: its spend is real.
- **A worker that dies** mid-case: the case is submitted once more (Dask places it on a
  live worker) and both tries are recorded in ``executor_attempts``; when the retry is
  lost too the case fails with ``harness.worker_lost``. Either way it is never lost.
- **A scheduler that cannot be reached** is a usage error before any case starts.

The SUT is an adversary, and with ``--codegenie-sut-network=host`` it shares the network of
the machine it runs on. Anyone who can talk to a Dask scheduler runs code in it
(``Client.run_on_scheduler``) and on its workers (``Client.run``), where the cases' bundles,
expected answers included, pass through. So:

- **``dask-local[:N]``** runs its ``LocalCluster`` on ``127.0.0.1`` over ``tls://``, with
  credentials made for this session (:func:`local_security`): a key and a self-signed
  certificate, the only CA the scheduler, the workers and the controller's client accept.
  They are held in the memory of the pytest process and the worker processes (Dask writes
  them into a private temporary directory for the instant it loads them), nowhere a
  sandboxed SUT sees. A client without that certificate fails the TLS handshake. The Bokeh
  dashboard is off, and the HTTP servers Dask always opens (the scheduler's would show the
  workers, their logs and call stacks) listen on ``127.0.0.1`` with no routes
  (:func:`start_local_cluster`).
- **``dask+tls://HOST:PORT``** (or ``tls://HOST:PORT``) reaches a team's scheduler over TLS
  with the client credentials of Dask's own config (``distributed.comm.tls.*``, which
  ``Security()`` reads; :func:`remote_security`). Without them it is a usage error.
- **``dask://HOST:PORT``** (or ``tcp://HOST:PORT``) is plain TCP, with no authentication:
  together with ``--codegenie-sut-network=host`` it is refused before any case starts
  (:func:`check_sut_network`).

Needs the ``dask`` extra (``pip install 'pytest-codegenie-eval[dask]'``), which brings
``cryptography`` for the session's credentials.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from pytest_codegenie_eval.errors import CodegenieEvalError
from pytest_codegenie_eval.execution import results
from pytest_codegenie_eval.execution.sut import SutPolicy, SutSpec, resolve_sut
from pytest_codegenie_eval.models import CaseResult, ExecutorAttempt
from pytest_codegenie_eval.store.cost_ledger import cap_reached
from pytest_codegenie_eval.taskclass.digests import case_digest, case_files
from pytest_codegenie_eval.taskclass.layout import CASES, DIGESTS_FILE
from pytest_codegenie_eval.taskclass.loader import (
    CaseEntry,
    LoadedTaskClass,
    definition_files,
    load_cases,
    load_task_class,
    rubric_digest,
)

EXECUTOR_HELP = "local (default), dask-local[:WORKERS], dask://HOST:PORT or dask+tls://HOST:PORT"
DEFAULT_LOCAL_WORKERS = 2
CONNECT_TIMEOUT_S = 5.0
LOOPBACK = "127.0.0.1"
_DASK_URL = re.compile(
    r"(?P<scheme>dask|tcp|dask\+tls|tls)://(?P<host>[^\s/:]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})"
)
_TLS_SCHEMES = ("dask+tls", "tls")
_EXTRA = "pip install 'pytest-codegenie-eval[dask]'"
# The client's credentials for dask+tls://, in Dask's config (and the variables that set them).
_TLS_KEYS = (
    ("distributed.comm.tls.ca-file", "DASK_DISTRIBUTED__COMM__TLS__CA_FILE"),
    ("distributed.comm.tls.client.cert", "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT"),
    ("distributed.comm.tls.client.key", "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY"),
)


class ExecutorUnavailable(CodegenieEvalError):
    """The Dask executor cannot be used: not installed, no TLS credentials for a TLS
    scheduler, the scheduler unreachable, or an unsafe combination of options."""


class ExecutorRefused(ExecutorUnavailable):
    """The executor would let the SUT reach the scheduler: a plain-TCP scheduler (no
    authentication) while the SUT shares the host's network."""


# --------------------------------------------------------------------------- the option


@dataclass(frozen=True)
class ExecutorSpec:
    """Where cases run: ``local`` (in pytest, or its xdist workers), a ``LocalCluster``
    this session starts, or an existing scheduler."""

    kind: Literal["local", "dask-local", "dask"] = "local"
    address: str = ""  # tcp://HOST:PORT or tls://HOST:PORT for "dask"
    workers: int = DEFAULT_LOCAL_WORKERS  # for "dask-local"

    @property
    def is_dask(self) -> bool:
        return self.kind != "local"

    @property
    def plain_tcp(self) -> bool:
        """An existing scheduler reached without TLS: no authentication, anyone who reaches
        it runs code in it."""
        return self.kind == "dask" and self.address.startswith("tcp://")

    @property
    def label(self) -> str:
        if self.kind == "dask-local":
            return f"dask-local:{self.workers}"
        return self.address if self.kind == "dask" else "local"


def parse_executor(text: str) -> ExecutorSpec:
    """Parse the option value; raises ValueError naming what is accepted."""
    value = text.strip()
    if value in ("", "local"):
        return ExecutorSpec()
    if value == "dask-local" or value.startswith("dask-local:"):
        raw = value.partition(":")[2] or str(DEFAULT_LOCAL_WORKERS)
        if raw.isdigit() and 1 <= int(raw) <= 256:
            return ExecutorSpec("dask-local", workers=int(raw))
        raise ValueError(f"dask-local:WORKERS takes 1 to 256 workers, got {raw!r}")
    match = _DASK_URL.fullmatch(value)
    if match is not None and 0 < int(match.group("port")) < 65536:
        protocol = "tls" if match.group("scheme") in _TLS_SCHEMES else "tcp"
        address = f"{protocol}://{match.group('host')}:{match.group('port')}"
        return ExecutorSpec("dask", address=address)
    raise ValueError(f"--codegenie-executor must be {EXECUTOR_HELP}, got {text!r}")


# --------------------------------------------------------------------------- security


def check_sut_network(spec: ExecutorSpec, network: str) -> None:
    """Refuse a plain-TCP scheduler when the SUT shares the host's network
    (``--codegenie-sut-network=host``): it could connect to the scheduler, which
    authenticates no one over plain TCP, and run code there and on every worker. Raises
    :class:`ExecutorRefused`; call it before any case starts."""
    if spec.plain_tcp and network == "host":
        tls = spec.address.replace("tcp://", "dask+tls://", 1)
        raise ExecutorRefused(
            f"--codegenie-executor={spec.label} with --codegenie-sut-network=host: the agent "
            "shares the host's network and could reach this plain-TCP Dask scheduler, which "
            "authenticates no one, and run code in it and on its workers "
            "(Client.run_on_scheduler, Client.run), where the cases and their expected answers "
            f"pass; use a TLS scheduler ({tls}, with the client's credentials in Dask's config "
            "distributed.comm.tls.*) or dask-local, or keep the SUT off the network "
            "(--codegenie-sut-network=none)"
        )


def local_security() -> Any:
    """Credentials for one session's ``LocalCluster``: ``Security.temporary()``, a fresh
    key and self-signed certificate (the only CA every role accepts), in memory only, with
    encryption required on every connection. Needs ``cryptography``."""
    from distributed.security import Security

    security: Any = Security  # untyped in distributed
    try:
        return security.temporary()
    except ImportError as exc:
        raise ExecutorUnavailable(
            "--codegenie-executor=dask-local makes TLS credentials for each session with "
            f"the cryptography package, which is not installed: {_EXTRA}"
        ) from exc


def remote_security(spec: ExecutorSpec) -> Any:
    """The client's credentials for a TLS scheduler: ``Security()``, which reads Dask's own
    config (``distributed.comm.tls.*``, from its YAML files or ``DASK_DISTRIBUTED__COMM__TLS__…``
    variables). Raises :class:`ExecutorUnavailable` when the CA file or the client
    certificate is not configured, or a configured path is not a file."""
    from distributed.security import Security

    make: Any = Security  # untyped in distributed
    try:
        security: Any = make()
    except ValueError as exc:  # e.g. an unsupported distributed.comm.tls.min-version
        raise ExecutorUnavailable(
            f"--codegenie-executor={spec.label}: Dask's TLS config is invalid ({exc})"
        ) from exc
    values = (security.tls_ca_file, security.tls_client_cert, security.tls_client_key)
    settings = [(key, env, value) for (key, env), value in zip(_TLS_KEYS, values, strict=True)]
    missing = [f"{key} ({env})" for key, env, value in settings[:2] if not value]
    if missing:
        raise ExecutorUnavailable(
            f"--codegenie-executor={spec.label}: a TLS scheduler needs this client's TLS "
            f"credentials, and Dask's config sets no {' and no '.join(missing)}; set them "
            "in a Dask config file or those variables (and distributed.comm.tls.client.key "
            "unless the key is in the certificate file)"
        )
    for key, _, value in settings:
        # a value with a newline is the PEM itself, as Dask allows; anything else a path
        if value and "\n" not in value and not Path(value).is_file():
            raise ExecutorUnavailable(
                f"--codegenie-executor={spec.label}: {key} is {value}, which is not a file"
            )
    return security


def start_local_cluster(workers: int, *, insecure_for_tests: bool = False) -> tuple[Any, Any]:
    """Start the ``LocalCluster`` of ``dask-local``; returns it and the client's
    ``Security``. Its scheduler, nannies and workers listen on ``127.0.0.1`` only, over
    ``tls://`` with :func:`local_security`; the Bokeh dashboard is off; the HTTP servers
    Dask opens on every scheduler and worker listen on ``127.0.0.1`` and serve no route (by
    default the scheduler's shows the workers, their logs and call stacks to anyone).

    ``insecure_for_tests`` exists only so that the tests can show the attack the defaults
    stop: plain ``tcp://``, no credentials, and Dask's default HTTP routes.
    """
    distributed = _import_distributed()
    import dask

    security = None if insecure_for_tests else local_security()
    # a worker that dies fails its task at once: the controller retries it itself, once,
    # so that both tries are known and recorded
    config: dict[str, Any] = {"distributed.scheduler.allowed-failures": 0}
    worker_config: dict[str, Any] = {}
    if not insecure_for_tests:
        config["distributed.scheduler.http.routes"] = []
        # handed to each nanny, which applies it to every worker process it starts,
        # restarts included
        worker_config["distributed.worker.http.routes"] = []
    with dask.config.set(config):
        cluster = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host=LOOPBACK,
            protocol="tcp://" if security is None else "tls://",
            security=security,
            dashboard_address=None,
            # the scheduler's HTTP server: on loopback, on any free port (never 8787), and
            # without the Bokeh dashboard even where bokeh is installed
            scheduler_kwargs={"dashboard": False, "dashboard_address": f"{LOOPBACK}:0"},
            config=worker_config,
        )
    return cluster, security


# --------------------------------------------------------------------------- bundles


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


# --------------------------------------------------------------------------- the worker


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


@dataclass(frozen=True)
class WorkerReply:
    """What a worker sends back: the result (None when the cost cap stopped the case
    before it started), the diff the SUT made, and which worker ran it."""

    result: CaseResult | None
    diff: str
    worker: str


def _warm_up() -> str:
    """Import what a case needs on a worker (run on every worker when the runner starts)."""
    import pytest_codegenie_eval.execution.attempt
    import pytest_codegenie_eval.rubric  # noqa: F401
    from pytest_codegenie_eval import __version__

    return __version__


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


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
# interpreter, ~50 ms): by rubric digest, in a directory of its own, re-checked before use.
_DEFINITIONS: dict[str, LoadedTaskClass] = {}
_DEFINITIONS_LOCK = threading.Lock()


def _definition(bundle: TaskClassBundle, import_timeout_s: float) -> LoadedTaskClass | str:
    """The loaded definition of ``bundle`` on this worker, or why its bytes are refused."""
    with _DEFINITIONS_LOCK:
        known = _DEFINITIONS.get(bundle.rubric_digest)
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
        _DEFINITIONS[bundle.rubric_digest] = loaded
        return loaded


def _case_entry(loaded: LoadedTaskClass, job: CaseJob, scratch: Path) -> CaseEntry | str:
    """The job's case written under ``scratch``, loaded as the loader loads any case (its
    pin checked against the task class's ``digests.yaml``), or why it is refused."""
    cases_dir = scratch / CASES
    case_dir = cases_dir / job.case.dir_name
    _write_files(case_dir, job.case.files)
    pins = loaded.directory / CASES / DIGESTS_FILE
    if pins.is_file():
        shutil.copyfile(pins, cases_dir / DIGESTS_FILE)
    got = case_digest(case_dir)
    if got != job.case.case_digest:
        return (
            f"case {job.case_id}: the worker's copy digests to {got[:16]}…, the "
            f"controller's to {job.case.case_digest[:16]}…"
        )
    entries, _ = load_cases(cases_dir)
    return next(e for e in entries if e.name == job.case.dir_name)


def run_on_worker(bundle: TaskClassBundle, job: CaseJob) -> WorkerReply:
    """Run one attempt on a Dask worker, exactly as a local case runs (module docstring)."""
    from pytest_codegenie_eval.execution.attempt import RunSettings, attempt_case

    worker = _worker_address()
    if _stopped(job.stop_event):
        return WorkerReply(None, "", worker)
    definition = _definition(bundle, job.import_timeout_s)
    if isinstance(definition, str):
        return _mismatch(job, definition, worker)
    scratch = Path(tempfile.mkdtemp(prefix="codegenie-dask-"))
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
        )
        done = attempt_case(loaded, entry, sut, settings, nodeid=job.nodeid, repeat=job.repeat)
        return WorkerReply(done.result, done.diff, worker)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# --------------------------------------------------------------------------- the controller


@dataclass
class _Pending:
    job: CaseJob
    bundle: TaskClassBundle
    done: threading.Event = field(default_factory=threading.Event)
    reply: WorkerReply | None = None
    lost: list[ExecutorAttempt] = field(default_factory=list)
    error: str | None = None
    future: Any = None
    cancelled: bool = False


@dataclass(frozen=True)
class Outcome:
    """What :meth:`DaskRunner.wait` hands an item: a result (with its diff), or ``None``
    for a case the cost cap kept from starting."""

    result: CaseResult | None
    diff: str = ""


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ExecutorUnavailable(
            f"--codegenie-executor needs Dask's distributed, which is not installed: {_EXTRA}"
        ) from exc
    return distributed


class DaskRunner:
    """The controller's side: connect (or start a LocalCluster), submit, wait, close."""

    def __init__(
        self,
        spec: ExecutorSpec,
        *,
        max_cost_usd: float | None,
        run_scope: str,
        insecure_for_tests: bool = False,
    ) -> None:
        """``insecure_for_tests``: see :func:`start_local_cluster` (dask-local only)."""
        distributed = _import_distributed()
        self.spec = spec
        self.max_cost_usd = max_cost_usd
        # without a cap there is nothing to stop, and no worker asks the scheduler
        self.stop_event = f"codegenie-eval-cost-cap-{run_scope}" if max_cost_usd is not None else ""
        self.cluster: Any = None
        try:
            if spec.kind == "dask-local":
                self.cluster, security = start_local_cluster(
                    spec.workers, insecure_for_tests=insecure_for_tests
                )
                target: Any = self.cluster
            else:
                security = remote_security(spec) if spec.address.startswith("tls://") else None
                target = spec.address
            self.client = distributed.Client(target, security=security, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            self.close()
            hint = (
                "; check that its certificate and this client's are signed by the CA of "
                "distributed.comm.tls.ca-file"
                if spec.address.startswith("tls://")
                else ""
            )
            raise ExecutorUnavailable(
                f"--codegenie-executor={spec.label}: the Dask scheduler cannot be reached "
                f"({type(exc).__name__}: {exc}){hint}"
            ) from exc
        try:
            # import the harness on every worker now, in parallel: part of starting the
            # cluster, not of the first case each worker runs
            self.client.run(_warm_up)
        except Exception as exc:
            self.close()
            raise ExecutorUnavailable(
                f"--codegenie-executor={spec.label}: the workers cannot import "
                f"pytest_codegenie_eval ({type(exc).__name__}: {exc}); install the same "
                f"version on them ({_EXTRA})"
            ) from exc
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._queue: list[str] = []  # submitted when a slot frees (cost cap only)
        self._spent = 0.0
        self._stopped = False
        self._in_flight = 0
        self._closed = False

    # -- submission ----------------------------------------------------------------------
    def capacity(self) -> int:
        info = self.client.scheduler_info()
        return max(1, sum(int(w.get("nthreads", 1)) for w in info["workers"].values()))

    def submit(self, jobs: list[tuple[CaseJob, TaskClassBundle]]) -> None:
        """Submit the jobs: all at once, or one per worker thread under a cost cap."""
        with self._lock:
            for job, bundle in jobs:
                # the bundle travels inside each task, not scattered once: scattered data
                # dies with the worker holding it, and the retry would have nothing to read
                self._pending[job.nodeid] = _Pending(job, bundle)
                self._queue.append(job.nodeid)
            limit = len(self._queue) if self.max_cost_usd is None else self.capacity()
            while self._queue and self._in_flight < limit:
                self._start(self._queue.pop(0))

    def _start(self, nodeid: str) -> None:
        """Submit one try (the caller holds the lock)."""
        pending = self._pending[nodeid]
        tries = len(pending.lost) + 1
        digest = hashlib.blake2b(nodeid.encode(), digest_size=8).hexdigest()
        future = self.client.submit(
            run_on_worker,
            pending.bundle,
            pending.job,
            key=f"codegenie-case-{digest}-try{tries}-{os.urandom(4).hex()}",
            pure=False,
        )
        pending.future = future
        self._in_flight += 1
        future.add_done_callback(lambda f, n=nodeid: self._finished(n, f))

    def has(self, nodeid: str) -> bool:
        return nodeid in self._pending

    # -- completion (runs on the client's thread) -----------------------------------------
    def _finished(self, nodeid: str, future: Any) -> None:
        from distributed.scheduler import KilledWorker

        with self._lock:
            self._in_flight -= 1
            pending = self._pending[nodeid]
            if future is not pending.future or self._closed:
                return
            try:
                reply: WorkerReply = future.result()
            except KilledWorker as exc:
                worker = getattr(getattr(exc, "last_worker", None), "address", "") or "unknown"
                pending.lost.append(ExecutorAttempt(worker=str(worker), outcome="lost"))
                if len(pending.lost) < 2 and not self._stopped:
                    self._start(nodeid)  # once more, on a live worker
                    return
                pending.done.set()
            except BaseException as exc:  # cancelled, or the worker function raised
                pending.error = f"{type(exc).__name__}: {exc}"
                pending.done.set()
            else:
                pending.reply = reply
                if reply.result is not None:
                    self._spent += reply.result.cost_usd
                pending.done.set()
            self._after_result()

    def _after_result(self) -> None:
        """Enforce the cost cap, then fill the free slot (the caller holds the lock)."""
        if cap_reached(self._spent, self.max_cost_usd) and not self._stopped:
            self._stopped = True
            from distributed import Event

            event: Any = Event  # untyped in distributed
            event(self.stop_event, client=self.client).set()
            for nodeid in self._queue:
                self._pending[nodeid].cancelled = True
                self._pending[nodeid].done.set()
            self._queue.clear()
        if self._queue and not self._stopped:
            self._start(self._queue.pop(0))

    # -- waiting (the item's runtest) --------------------------------------------------------
    def wait(self, nodeid: str) -> Outcome:
        pending = self._pending[nodeid]
        pending.done.wait()
        job = pending.job
        if pending.cancelled or (pending.reply is not None and pending.reply.result is None):
            return Outcome(None)
        if pending.error is not None:
            return Outcome(
                results.harness_failure(
                    job.task_class,
                    job.case_id,
                    job.nodeid,
                    "harness.internal_error",
                    f"the Dask task failed: {pending.error}",
                    "crashed",
                    job.repeat,
                )
            )
        if pending.reply is None:  # both tries lost with their workers
            where = ", ".join(a.worker for a in pending.lost)
            lost = results.harness_failure(
                job.task_class,
                job.case_id,
                job.nodeid,
                "harness.worker_lost",
                f"the Dask worker died during the case, and again during its retry ({where}); "
                "what the SUT spent in those tries is unknown",
                "crashed",
                job.repeat,
            )
            return Outcome(lost.model_copy(update={"executor_attempts": tuple(pending.lost)}))
        reply = pending.reply
        assert reply.result is not None
        result = reply.result
        done = ExecutorAttempt(worker=reply.worker, outcome="completed", cost_usd=result.cost_usd)
        result = result.model_copy(update={"executor_attempts": (*pending.lost, done)})
        return Outcome(result, reply.diff)

    @property
    def spent_usd(self) -> float:
        return self._spent

    def close(self) -> None:
        self._closed = True
        client = getattr(self, "client", None)
        if client is not None:
            futures = [p.future for p in getattr(self, "_pending", {}).values() if p.future]
            if futures:
                client.cancel(futures, force=True)
            client.close()
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None


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
    )


__all__ = [
    "CaseBundle",
    "CaseJob",
    "DaskRunner",
    "ExecutorRefused",
    "ExecutorSpec",
    "ExecutorUnavailable",
    "Outcome",
    "TaskClassBundle",
    "WorkerReply",
    "bundle_case",
    "bundle_task_class",
    "check_sut_network",
    "job_for",
    "local_security",
    "parse_executor",
    "remote_security",
    "run_on_worker",
    "start_local_cluster",
]
