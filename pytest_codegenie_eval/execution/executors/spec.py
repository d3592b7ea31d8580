"""Where cases run: the ``--codegenie-executor`` value, parsed and checked against the
SUT's network before any case starts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pytest_codegenie_eval.errors import CodegenieEvalError

EXECUTOR_HELP = (
    "local (default), local:N, dask-local[:WORKERS], dask://HOST:PORT or dask+tls://HOST:PORT"
)
MAX_LOCAL_CONCURRENCY = 256
DEFAULT_LOCAL_WORKERS = 2
DASK_EXTRA = "pip install 'pytest-codegenie-eval[dask]'"
_DASK_URL = re.compile(
    r"(?P<scheme>dask|tcp|dask\+tls|tls)://(?P<host>[^\s/:]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})"
)
_TLS_SCHEMES = ("dask+tls", "tls")


class ExecutorUnavailable(CodegenieEvalError):
    """The Dask executor cannot be used: not installed, no TLS credentials for a TLS
    scheduler, the scheduler unreachable, or an unsafe combination of options."""


class ExecutorRefused(ExecutorUnavailable):
    """The executor would let the SUT reach the scheduler: a plain-TCP scheduler (no
    authentication) while the SUT shares the host's network."""


@dataclass(frozen=True)
class ExecutorSpec:
    """Where cases run: ``local`` (in pytest, or its xdist workers; ``local:N`` runs N
    attempts at once in the pytest process), a ``LocalCluster`` this session starts, or an
    existing scheduler."""

    kind: Literal["local", "dask-local", "dask"] = "local"
    address: str = ""  # tcp://HOST:PORT or tls://HOST:PORT for "dask"
    workers: int = 1  # attempts at once for "local", workers for "dask-local"

    @property
    def is_dask(self) -> bool:
        return self.kind != "local"

    @property
    def concurrent_local(self) -> bool:
        """``local:N`` with N > 1: attempts run N at once in the pytest process."""
        return self.kind == "local" and self.workers > 1

    @property
    def plain_tcp(self) -> bool:
        """An existing scheduler reached without TLS: no authentication, anyone who reaches
        it runs code in it."""
        return self.kind == "dask" and self.address.startswith("tcp://")

    @property
    def label(self) -> str:
        if self.kind == "dask-local":
            return f"dask-local:{self.workers}"
        if self.kind == "local":
            return f"local:{self.workers}" if self.workers > 1 else "local"
        return self.address


def parse_executor(text: str) -> ExecutorSpec:
    """Parse the option value; raises ValueError naming what is accepted."""
    value = text.strip()
    if value in ("", "local"):
        return ExecutorSpec()
    if value.startswith("local:"):
        raw = value.partition(":")[2]
        if raw.isdigit() and 1 <= int(raw) <= MAX_LOCAL_CONCURRENCY:
            return ExecutorSpec("local", workers=int(raw))
        raise ValueError(
            f"local:N takes 1 to {MAX_LOCAL_CONCURRENCY} attempts at once, got {raw!r}"
        )
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


__all__ = [
    "DEFAULT_LOCAL_WORKERS",
    "EXECUTOR_HELP",
    "MAX_LOCAL_CONCURRENCY",
    "ExecutorRefused",
    "ExecutorSpec",
    "ExecutorUnavailable",
    "check_sut_network",
    "parse_executor",
]
