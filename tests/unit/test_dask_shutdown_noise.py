"""What a ``dask-local`` session's end logs: a worker's heartbeat that meets its own
shutdown, and a scheduler's listener that sees a dying worker's half-open TLS connection,
are dropped then and only then (dask/distributed#7105 prints both, tracebacks included,
after a session that passed)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_codegenie_eval.execution.executors import dask_worker
from pytest_codegenie_eval.execution.executors.dask_controller import _quiet_listener

# the statuses a worker really has: a value renamed upstream fails here, not in silence
Status: Any = pytest.importorskip("distributed.core").Status

ADDRESS = "tls://127.0.0.1:42477"
HANDSHAKE = "Listener on %r: TLS handshake failed with remote %r: %s"


@dataclass
class _Worker:
    status: Any


def _heartbeat_failure() -> logging.LogRecord:
    return logging.LogRecord(
        "distributed.worker", logging.ERROR, __file__, 1, dask_worker._HEARTBEAT_FAILED, (), None
    )


@pytest.mark.parametrize(
    ("status", "logged"),
    [
        ("running", True),
        ("paused", True),
        ("closing", False),
        ("closing_gracefully", False),
        ("closed", False),
    ],
)
def test_a_heartbeat_failure_is_dropped_only_while_the_worker_closes(
    status: str, logged: bool
) -> None:
    noise = dask_worker._ShutdownNoise(_Worker(Status(status)))
    assert noise.filter(_heartbeat_failure()) is logged
    other = logging.LogRecord(
        "distributed.worker", logging.ERROR, __file__, 1, "Compute Failed", (), None
    )
    assert noise.filter(other)


def test_quiet_shutdown_does_nothing_outside_a_worker() -> None:
    log = logging.getLogger("distributed.worker")
    before = list(log.filters)
    dask_worker.quiet_shutdown()
    assert log.filters == before


def test_the_listener_is_quiet_while_its_cluster_closes_and_only_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("distributed.comm.tcp")
    eof = "[SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred"
    other = "tls://127.0.0.1:50000"
    with caplog.at_level(logging.WARNING, logger="distributed.comm.tcp"):
        with _quiet_listener(ADDRESS):
            log.warning(HANDSHAKE, ADDRESS, "tls://127.0.0.1:34046", eof)
            log.warning(HANDSHAKE, other, "tls://127.0.0.1:34046", eof)
        log.warning(HANDSHAKE, ADDRESS, "tls://127.0.0.1:34047", eof)
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        HANDSHAKE % (other, "tls://127.0.0.1:34046", eof),
        HANDSHAKE % (ADDRESS, "tls://127.0.0.1:34047", eof),
    ]
    assert log.filters == []
