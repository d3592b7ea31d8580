"""One attempt's way to the model gateway, and what the attempt's result keeps of it.

:func:`attempt_gateway` opens the attempt's listener (a Unix socket in the attempt's run
directory for a jailed SUT, a token-guarded port on 127.0.0.1 otherwise), loads its
cassette for ``replay``, and on leaving writes it for ``record``. :class:`GatewayAccess` is
what the SUT runner needs: the variables that point the agent's SDKs at the gateway (with
the attempt's token where the real keys would be) and, in a jail, the forwarder that offers
the socket on ``127.0.0.1`` inside the jail's own network namespace. :func:`summarize`
turns the lease into the result's :class:`~pytest_codegenie_eval.models.ModelUsage`, its
failure modes and its transcript.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pytest_codegenie_eval.execution import results
from pytest_codegenie_eval.execution.gateway.cassette import (
    CassetteInvalid,
    Player,
    cassette_path,
    read_cassette,
    write_cassette,
)
from pytest_codegenie_eval.execution.gateway.latency import nearest_rank
from pytest_codegenie_eval.execution.gateway.server import AttemptLease, Exchange, Gateway
from pytest_codegenie_eval.execution.gateway.settings import GatewaySettings, Upstream
from pytest_codegenie_eval.execution.workspace import GATEWAY_DIR
from pytest_codegenie_eval.models import FailureMode, ModelUsage

FORWARDER = Path(__file__).with_name("jail_forwarder.py")
SOCKET_DIR = GATEWAY_DIR
SOCKET_NAME = "gateway.sock"
TOKEN_PREFIX = "codegenie-attempt-"
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes with its NUL; leave room


@dataclass(frozen=True)
class GatewayAccess:
    """How the agent of one attempt reaches the gateway."""

    token: str
    upstreams: tuple[Upstream, ...]
    socket_path: Path | None = None  # a jailed SUT: bound into its jail
    port: int | None = None  # an unjailed SUT: the listener on 127.0.0.1

    def url_env(self, base: str) -> dict[str, str]:
        """The variables that send SDKs to the gateway at ``base`` (``http://127.0.0.1:P``)."""
        env = {"CODEGENIE_MODEL_GATEWAY": base}
        for upstream in self.upstreams:
            url = f"{base}/{upstream.name}"
            if upstream.name == "openai":
                env["OPENAI_BASE_URL"] = env["OPENAI_API_BASE"] = f"{url}/v1"
            elif upstream.name == "anthropic":
                env["ANTHROPIC_BASE_URL"] = url
            env[f"CODEGENIE_UPSTREAM_{upstream.name.upper().replace('-', '_')}_URL"] = url
        return env

    def proxy_env(self, base: str) -> dict[str, str]:
        """A jailed agent's proxy variables: HTTPS through the gateway (a CONNECT tunnel to
        the hosts of --codegenie-sut-egress, a logged 403 for any other), the gateway itself
        reached directly."""
        return {
            "HTTPS_PROXY": base,
            "https_proxy": base,
            "HTTP_PROXY": base,
            "http_proxy": base,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    def key_env(self) -> dict[str, str]:
        """Every upstream's key variable, holding the attempt's token: SDKs start, and the
        real keys never enter the SUT's environment."""
        return {upstream.key_env: self.token for upstream in self.upstreams}

    def env(self) -> dict[str, str]:
        """The whole gateway environment of an unjailed SUT."""
        assert self.port is not None
        return {**self.url_env(f"http://127.0.0.1:{self.port}"), **self.key_env()}

    @property
    def bind_dir(self) -> Path:
        assert self.socket_path is not None
        return self.socket_path.parent

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """A jailed SUT's argv behind the forwarder, which listens on 127.0.0.1 inside the
        jail, exports the URL variables with the port it got, and relays to the socket."""
        assert self.socket_path is not None
        forwarder = self.bind_dir / FORWARDER.name
        exports: list[str] = []
        base = "http://127.0.0.1:{port}"
        for name, value in {**self.url_env(base), **self.proxy_env(base)}.items():
            exports += ["--env", f"{name}={value}"]
        return [
            sys.executable,
            "-I",
            str(forwarder),
            "--socket",
            str(self.socket_path),
            "--port",
            "0",
            *exports,
            "--",
            *argv,
        ]


@contextmanager
def attempt_gateway(
    settings: GatewaySettings,
    *,
    task_class: str,
    case_id: str,
    repeat: int,
    run_dir: Path,
    jailed: bool,
    max_cost_usd: float | None = None,
    spent_elsewhere: Callable[[], float] | None = None,
) -> Iterator[tuple[GatewayAccess, AttemptLease]]:
    """The attempt's listener, open while the SUT runs."""
    lease = AttemptLease(
        settings=settings,
        token=TOKEN_PREFIX + secrets.token_hex(16),
        prices=settings.prices,
        max_cost_usd=max_cost_usd,
        spent_elsewhere=spent_elsewhere,
    )
    cassette = (
        cassette_path(settings.cassette_dir, task_class, case_id, repeat)
        if settings.cassette_dir is not None
        else None
    )
    if settings.mode == "replay":
        try:
            lease.player = Player(read_cassette(cassette) if cassette else [])
        except CassetteInvalid as exc:
            lease.player = Player([])
            lease.fail("gateway.cassette_miss", f"unusable cassette: {exc}")
    spare: Path | None = None
    if jailed:
        directory = run_dir / SOCKET_DIR
        if len(str(directory / SOCKET_NAME)) > MAX_SOCKET_PATH:
            # a Unix socket's path has at most 107 bytes: a deep TMPDIR gets a short one
            spare = directory = Path(tempfile.mkdtemp(prefix="cg-gw-", dir="/tmp"))
        directory.mkdir(mode=0o755, exist_ok=True)
        directory.chmod(0o755)  # the jail's user (a root harness's) passes through it
        shutil.copyfile(FORWARDER, directory / FORWARDER.name)
        lease.socket_path = directory / SOCKET_NAME
    gateway = Gateway.shared()
    gateway.open(lease)
    access = GatewayAccess(lease.token, settings.upstreams, lease.socket_path, lease.port)
    try:
        yield access, lease
    finally:
        gateway.close(lease)
        if spare is not None:
            shutil.rmtree(spare, ignore_errors=True)
        if settings.mode == "record" and cassette is not None:
            write_cassette(
                cassette,
                task_class=task_class,
                case_id=case_id,
                repeat=repeat,
                exchanges=[e.recorded() for e in lease.exchanges],
            )


def transcript(exchanges: Sequence[Exchange]) -> bytes:
    """The attempt's transcript: one JSON line per model call (request and response as
    text, status, tokens, latency, cost)."""
    lines = []
    for e in exchanges:
        usage = e.usage
        lines.append(
            json.dumps(
                {
                    "upstream": e.upstream,
                    "method": e.method,
                    "path": e.path,
                    "status": e.status,
                    "model": usage.model if usage else "",
                    "input_tokens": usage.input_tokens if usage else 0,
                    "output_tokens": usage.output_tokens if usage else 0,
                    "cached_input_tokens": usage.cached_input_tokens if usage else 0,
                    "latency_s": round(e.latency_s, 6),
                    "cost_usd": e.cost_usd,
                    "replayed": e.replayed,
                    "request": e.request.decode("utf-8", errors="replace"),
                    "response": e.response.decode("utf-8", errors="replace"),
                },
                sort_keys=True,
                ensure_ascii=False,
            )
        )
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def summarize(lease: AttemptLease) -> tuple[ModelUsage, list[FailureMode], bytes]:
    """What the result keeps of the lease: the metered usage, the gateway's failure modes
    (block severity) and the transcript (stored by whoever records the attempt)."""
    exchanges = lease.exchanges
    usages = [e.usage for e in exchanges if e.usage is not None]
    latencies = [e.latency_s for e in exchanges]
    usage = ModelUsage(
        calls=len(exchanges),
        input_tokens=sum(u.input_tokens for u in usages),
        output_tokens=sum(u.output_tokens for u in usages),
        cached_input_tokens=sum(u.cached_input_tokens for u in usages),
        cost_usd=round(lease.metered_cost_usd, 9),
        unpriced_calls=lease.unpriced_calls,
        upstream_errors=sum(1 for code, _ in lease.failures if code == "gateway.upstream_error"),
        latency_p50_s=round(nearest_rank(latencies, 0.5), 6),
        latency_p95_s=round(nearest_rank(latencies, 0.95), 6),
        replayed=lease.settings.mode == "replay",
        egress_allowed=tuple(host for host, allowed in lease.egress if allowed),
        egress_refused=tuple(host for host, allowed in lease.egress if not allowed),
    )
    modes = [results.block(code, detail) for code, detail in lease.failures]
    return usage, modes, transcript(exchanges)


__all__ = [
    "FORWARDER",
    "GatewayAccess",
    "attempt_gateway",
    "summarize",
    "transcript",
]
