"""The Dask controller: ``--codegenie-executor=dask://HOST:PORT``, ``dask+tls://…`` or
``dask-local[:N]``.

pytest stays the controller. Once collection is done the plugin submits every selected,
uncached case (:meth:`DaskRunner.submit`), and each item's ``runtest`` waits for its own
future (:meth:`DaskRunner.wait`): the cluster runs the cases in parallel while the terminal
reports them in item order.

A worker runs exactly what a local case runs (:mod:`.dask_worker`): jobs are plain data,
never pytest items. The controller hands what a worker sent back to the caller as an
:class:`~.protocol.Outcome`, which records it with
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

import contextlib
import hashlib
import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_codegenie_eval.execution import results
from pytest_codegenie_eval.execution.attempt import Attempt
from pytest_codegenie_eval.execution.executors.dask_worker import (
    CaseJob,
    TaskClassBundle,
    WorkerReply,
    load_in_background,
    run_on_worker,
)
from pytest_codegenie_eval.execution.executors.protocol import Outcome
from pytest_codegenie_eval.execution.executors.spec import (
    DASK_EXTRA,
    ExecutorSpec,
    ExecutorUnavailable,
)
from pytest_codegenie_eval.models import CaseResult, ExecutorAttempt
from pytest_codegenie_eval.store.cost_ledger import cap_reached

CONNECT_TIMEOUT_S = 5.0
LOOPBACK = "127.0.0.1"
# The client's credentials for dask+tls://, in Dask's config (and the variables that set them).
_TLS_KEYS = (
    ("distributed.comm.tls.ca-file", "DASK_DISTRIBUTED__COMM__TLS__CA_FILE"),
    ("distributed.comm.tls.client.cert", "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT"),
    ("distributed.comm.tls.client.key", "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY"),
)


def _warm_up() -> str:
    """Make a worker ready for its first case, run on every worker as the runner starts:
    import what a case needs, and find out once what isolation the worker has (bubblewrap,
    as the default jail user through its staging namespace for a root worker, the rlimits
    its shell sets), so the first case pays none of it."""
    import pytest_codegenie_eval.execution.attempt
    import pytest_codegenie_eval.rubric  # noqa: F401
    from pytest_codegenie_eval import __version__
    from pytest_codegenie_eval.execution.executors.dask_worker import quiet_shutdown
    from pytest_codegenie_eval.execution.isolation.jailuser import Stage, default_jail_user
    from pytest_codegenie_eval.execution.isolation.sandbox import bwrap_status
    from pytest_codegenie_eval.process import ResourceLimits, sandbox_prefix

    user = default_jail_user()
    if bwrap_status(user).usable:
        if user is not None:
            Stage.for_process()
    else:
        sandbox_prefix()
    ResourceLimits(cpu_seconds=1).shell_commands()
    quiet_shutdown()
    return __version__


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
            f"the cryptography package, which is not installed: {DASK_EXTRA}"
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
    if "forkserver" in multiprocessing.get_all_start_methods():
        # the nannies fork their workers from one server that imported distributed once,
        # instead of starting N interpreters that each import it (1.4 s against 1.8-2.1 s
        # for 4 workers on 2 cores); the server's socket is its user's alone
        config["distributed.worker.multiprocessing-method"] = "forkserver"
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


def _hide_main_script() -> Callable[[], None]:
    """Keep the workers of a ``dask-local`` cluster from running the script that started
    this process, until the returned function puts it back; nothing when pytest was not
    started from a script of the user's.

    Dask starts workers the way ``multiprocessing`` does without ``fork``: each new process
    imports the main module again, by its file when it was run as ``python script.py``. A
    script that calls ``pytest.main()`` without an ``if __name__ == "__main__":`` guard then
    runs a whole pytest session in every worker (each starting a cluster of its own, and
    failing with an INTERNALERROR). The workers run only this package's functions and never
    need that module; without its ``__file__`` they skip it. Console scripts (``pytest``)
    and ``python -m pytest`` lose nothing either.
    """
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:
        return lambda: None  # -m or an interactive session: children import no file
    path = main.__dict__.pop("__file__", None)
    if path is None:
        return lambda: None

    def restore() -> None:
        main.__dict__.setdefault("__file__", path)

    return restore


class _ClosingListener(logging.Filter):
    """Drops the TLS handshake warnings of one scheduler's listener: installed only while
    its ``dask-local`` cluster closes, when workers die with a connection half open. At any
    other time such a warning may be a client without the session's certificate, and it
    stays."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self.prefix = f"Listener on {address!r}: TLS handshake failed"

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


@contextlib.contextmanager
def _quiet_listener(address: str) -> Iterator[None]:
    log = logging.getLogger("distributed.comm.tcp")
    quiet = _ClosingListener(address)
    log.addFilter(quiet)
    try:
        yield
    finally:
        log.removeFilter(quiet)


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


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ExecutorUnavailable(
            f"--codegenie-executor needs Dask's distributed, which is not installed: {DASK_EXTRA}"
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
        self._restore_main: Callable[[], None] = lambda: None
        try:
            if spec.kind == "dask-local":
                # kept hidden while the cluster lives: a nanny restarts a worker it lost
                self._restore_main = _hide_main_script()
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
                f"version on them ({DASK_EXTRA})"
            ) from exc
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._queue: list[str] = []  # submitted when a slot frees (cost cap only)
        self._spent = 0.0
        self._stopped = False
        self._in_flight = 0
        self._closed = False

    # -- submission ----------------------------------------------------------------------
    def prepare(self, bundles: Sequence[TaskClassBundle], import_timeout_s: float) -> None:
        """Have every worker start loading these task class definitions now, in the
        background (while pytest collects), so no first case waits for it. Best effort: a
        worker that cannot load one says so when its first case of it runs."""
        for bundle in bundles:
            with contextlib.suppress(Exception):
                self.client.run(load_in_background, bundle, import_timeout_s)

    def capacity(self) -> int:
        info = self.client.scheduler_info()
        return max(1, sum(int(w.get("nthreads", 1)) for w in info["workers"].values()))

    def submit(self, jobs: Sequence[tuple[CaseJob, TaskClassBundle]]) -> None:
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

    def owns(self, nodeid: str) -> bool:
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
            return Outcome(None, self._spent)
        if pending.error is not None:
            return self._outcome(
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
            return self._outcome(lost.model_copy(update={"executor_attempts": tuple(pending.lost)}))
        reply = pending.reply
        assert reply.result is not None
        result = reply.result
        done = ExecutorAttempt(worker=reply.worker, outcome="completed", cost_usd=result.cost_usd)
        result = result.model_copy(update={"executor_attempts": (*pending.lost, done)})
        return self._outcome(result, reply.diff, reply.transcript)

    @staticmethod
    def _outcome(result: CaseResult, diff: str = "", transcript: bytes = b"") -> Outcome:
        # the worker's attempt kept nothing: its cost goes into the ledger when recorded
        return Outcome(Attempt(result, diff, cost_recorded=False, transcript=transcript))

    @property
    def label(self) -> str:
        return self.spec.label

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
            with _quiet_listener(str(self.cluster.scheduler_address)):
                self.cluster.close()
            self.cluster = None
        self._restore_main()


__all__ = [
    "DaskRunner",
    "local_security",
    "remote_security",
    "start_local_cluster",
]
