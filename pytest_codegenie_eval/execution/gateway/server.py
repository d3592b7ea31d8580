"""The model gateway: the only way an agent under test reaches a model.

One gateway runs in each harness process (the pytest controller, each xdist worker, each
Dask worker), on an asyncio loop in a thread of its own (aiohttp: ADR 0019). Each attempt
of a case gets its own listener, an :class:`AttemptLease`:

- in a bubblewrap jail, a Unix socket bound into that jail only (the jail's network stays
  ``none``; a forwarder inside it offers the socket on ``127.0.0.1``), so the listener
  itself says which attempt a call belongs to and one agent cannot spend another's budget;
- without a jail, a TCP port on ``127.0.0.1`` that answers only requests carrying the
  attempt's token as their API key.

A call to ``/<upstream>/<path>`` is forwarded to ``<upstream url>/<path>`` with the real key
added from the harness's environment (the agent holds only the token), streamed through
unchanged when the reply is Server-Sent Events, metered (tokens, latency, cost from the
price table) and kept in the lease. ``record`` also writes the attempt's cassette;
``replay`` answers from it and contacts no upstream. Failures of the infrastructure (after
the retries) are ``gateway.upstream_error``, never the agent's; a replay miss is
``gateway.cassette_miss``; a call after the run's spend passed the cost cap is refused with
HTTP 429 and ``gateway.cost_cap_reached``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import ClientError, ClientResponse, ClientSession, ClientTimeout, web

from pytest_codegenie_eval.execution.gateway.cassette import Player, RecordedExchange
from pytest_codegenie_eval.execution.gateway.egress import Dispatch
from pytest_codegenie_eval.execution.gateway.metering import (
    PriceTable,
    Usage,
    is_sse,
    usage_from_json,
    usage_from_sse,
)
from pytest_codegenie_eval.execution.gateway.settings import GatewaySettings, Upstream

# request headers never forwarded: the agent's placeholder key, hop-by-hop headers, and
# those aiohttp sets itself; Accept-Encoding is replaced by identity so what is recorded and
# metered is the plain body
_DROP = frozenset(
    {
        "host",
        "authorization",
        "x-api-key",
        "api-key",
        "content-length",
        "accept-encoding",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_RETRY_PAUSE_S = 0.2


@dataclass(frozen=True)
class Exchange:
    """One model call of an attempt, as the gateway saw and metered it."""

    upstream: str
    method: str
    path: str
    status: int
    latency_s: float
    usage: Usage | None
    cost_usd: float | None  # None: no usage, or a model the price table does not price
    replayed: bool
    request: bytes
    response: bytes
    content_type: str

    def recorded(self) -> RecordedExchange:
        return RecordedExchange(
            self.upstream,
            self.method,
            self.path,
            self.request,
            self.status,
            self.content_type,
            self.response,
        )


@dataclass
class AttemptLease:
    """One attempt's listener and everything the gateway saw on it."""

    settings: GatewaySettings
    token: str
    prices: PriceTable | None
    player: Player | None = None
    # the run's spend so far outside this attempt: the cost cap's check between calls
    spent_elsewhere: Callable[[], float] | None = None
    max_cost_usd: float | None = None
    socket_path: Path | None = None
    port: int | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (code, detail)
    egress: list[tuple[str, bool]] = field(default_factory=list)  # (host:port, allowed)
    runner: web.AppRunner | None = None
    server: asyncio.AbstractServer | None = None

    def egress_seen(self, authority: str, allowed: bool) -> None:
        self.egress.append((authority, allowed))

    @property
    def metered_cost_usd(self) -> float:
        return sum(e.cost_usd or 0.0 for e in self.exchanges)

    @property
    def unpriced_calls(self) -> int:
        return sum(1 for e in self.exchanges if e.usage is not None and e.cost_usd is None)

    def fail(self, code: str, detail: str) -> None:
        if all(existing != (code, detail) for existing in self.failures):
            self.failures.append((code, detail))

    def limit_reached(self) -> str | None:
        """Why the attempt may make no further call (its own limits), or ``None``."""
        settings = self.settings
        if settings.max_calls is not None and len(self.exchanges) >= settings.max_calls:
            return (
                f"the attempt made {len(self.exchanges)} model calls, the most "
                f"--codegenie-gateway-max-calls allows"
            )
        used = sum(
            e.usage.input_tokens + e.usage.cached_input_tokens + e.usage.output_tokens
            for e in self.exchanges
            if e.usage is not None
        )
        if settings.max_tokens is not None and used >= settings.max_tokens:
            return (
                f"the attempt used {used} tokens, at least the {settings.max_tokens} "
                "--codegenie-gateway-max-tokens allows"
            )
        return None

    def unpriced(self, model: str) -> str | None:
        """Why a call of ``model`` is refused: under a cost cap every call must be priced,
        or an agent could spend freely on a model the price table does not name."""
        if self.max_cost_usd is None or self.prices is None or not model:
            return None
        if self.prices.price_for(model) is not None:
            return None
        return (
            f"model {model!r} has no price in the price table (--codegenie-prices), and a "
            "cost cap is set: its calls would go uncounted"
        )

    def cap_reached(self) -> str | None:
        if self.max_cost_usd is None:
            return None
        spent = self.metered_cost_usd + (self.spent_elsewhere() if self.spent_elsewhere else 0.0)
        if spent < self.max_cost_usd:
            return None
        return (
            f"the run's metered model spend {spent:.4f} USD reached the cost cap "
            f"{self.max_cost_usd:.4f} USD (--codegenie-max-cost-usd): no further model calls"
        )


LEASE_KEY = web.AppKey("lease", AttemptLease)


def _error(status: int, kind: str, message: str) -> web.Response:
    body = {"error": {"type": kind, "message": message, "code": kind}}
    return web.json_response(body, status=status)


async def _relay(out: web.StreamResponse, chunk: bytes | None) -> bool:
    """Write ``chunk`` to the agent (``None``: end the response); False when the agent has
    closed its connection."""
    try:
        if chunk is None:
            await out.write_eof()
        else:
            await out.write(chunk)
    except (ConnectionError, ClientError):
        return False
    return True


@dataclass(frozen=True)
class _Call:
    """One model call as the agent made it (its request body read once, its model once)."""

    upstream: Upstream
    method: str
    path: str
    body: bytes
    model: str
    started: float


def _model_of(body: bytes) -> str:
    try:
        parsed = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return ""
    model = parsed.get("model") if isinstance(parsed, dict) else None
    return model if isinstance(model, str) else ""


def _token_of(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key", "") or request.headers.get("api-key", "")


class Gateway:
    """The process's gateway: an event loop in a daemon thread, one listener per attempt."""

    _instance: Gateway | None = None
    _instance_lock = threading.Lock()

    @classmethod
    def shared(cls) -> Gateway:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._session: ClientSession | None = None
        thread = threading.Thread(target=self.loop.run_forever, name="codegenie-gateway")
        thread.daemon = True
        thread.start()
        atexit.register(self.shutdown)

    def shutdown(self) -> None:
        """Close the upstream connections and stop the loop (at interpreter exit)."""
        if self.loop.is_closed() or not self.loop.is_running():
            return
        if self._session is not None and not self._session.closed:
            with contextlib.suppress(Exception):
                self._call(self._session.close())
        self.loop.call_soon_threadsafe(self.loop.stop)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    # -- attempts ----------------------------------------------------------------------
    def open(self, lease: AttemptLease) -> AttemptLease:
        """Start the lease's listener: on ``lease.socket_path`` when it is set, else on a
        free TCP port of 127.0.0.1 (``lease.port``)."""
        self._call(self._open(lease))
        return lease

    def close(self, lease: AttemptLease) -> None:
        self._call(self._close(lease))

    async def _close(self, lease: AttemptLease) -> None:
        if lease.server is not None:
            lease.server.close()
            lease.server = None
        if lease.runner is not None:
            await lease.runner.cleanup()
            lease.runner = None

    async def _open(self, lease: AttemptLease) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app[LEASE_KEY] = lease
        app.router.add_route("*", "/{name}/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        lease.runner = runner
        http = runner.server
        assert http is not None

        def connection() -> Dispatch:
            # a CONNECT tunnel (the egress allowlist) or HTTP for the app above
            # an unjailed SUT shares the host's network: it needs no tunnel, and the port
            # must not be one for other local processes
            allowed = lease.settings.egress if lease.socket_path is not None else ()
            return Dispatch(http, allowed, lease.egress_seen)

        if lease.socket_path is not None:
            lease.server = await self.loop.create_unix_server(connection, str(lease.socket_path))
            os.chmod(lease.socket_path, 0o666)  # the jail's user connects to it
        else:
            lease.server = await self.loop.create_server(connection, "127.0.0.1", 0)
            lease.port = int(lease.server.sockets[0].getsockname()[1])

    def _client(self) -> ClientSession:
        if self._session is None or self._session.closed:
            self._session = ClientSession(auto_decompress=False)
        return self._session

    # -- one call ------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        lease = request.app[LEASE_KEY]
        if lease.socket_path is None and not secrets.compare_digest(
            _token_of(request), lease.token
        ):
            return _error(401, "codegenie_gateway_auth", "present the attempt's API key")
        upstream = lease.settings.upstream(request.match_info["name"])
        if upstream is None:
            names = ", ".join(u.name for u in lease.settings.upstreams)
            return _error(404, "codegenie_unknown_upstream", f"upstreams here: {names}")
        body = await request.read()
        path = request.match_info["tail"]
        if request.query_string:
            path += "?" + request.query_string
        refused = lease.cap_reached()
        if refused is not None:
            lease.fail("gateway.cost_cap_reached", refused)
            return _error(429, "codegenie_cost_cap", refused)
        limited = lease.limit_reached()
        if limited is not None:
            lease.fail("gateway.limit_reached", limited)
            return _error(429, "codegenie_attempt_limit", limited)
        call = _Call(upstream, request.method, path, body, _model_of(body), time.monotonic())
        unpriced = lease.unpriced(call.model)
        if unpriced is not None:
            lease.fail("gateway.unpriced_model", unpriced)
            return _error(403, "codegenie_unpriced_model", unpriced)
        if lease.settings.mode == "replay":
            return self._replay(lease, call)
        return await self._forward(request, lease, call)

    def _replay(self, lease: AttemptLease, call: _Call) -> web.Response:
        upstream, method, path = call.upstream, call.method, call.path
        found = (
            lease.player.answer(upstream.name, method, path, call.body) if lease.player else None
        )
        if found is None:
            detail = f"no recorded answer for {method} /{upstream.name}/{path}"
            lease.fail("gateway.cassette_miss", detail)
            return _error(502, "codegenie_cassette_miss", detail)
        self._meter(lease, call, found.status, found.content_type, found.response, replayed=True)
        return web.Response(
            status=found.status, body=found.response, headers={"Content-Type": found.content_type}
        )

    async def _forward(
        self, request: web.Request, lease: AttemptLease, call: _Call
    ) -> web.StreamResponse:
        upstream, path, body = call.upstream, call.path, call.body
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP}
        headers["Accept-Encoding"] = "identity"
        key = os.environ.get(upstream.key_env)
        if key:
            headers.update(upstream.auth_headers(key))
        url = f"{upstream.url}/{path}"
        timeout = ClientTimeout(total=lease.settings.timeout_s)
        reply: ClientResponse | None = None
        problem = ""
        for attempt in range(lease.settings.retries + 1):
            if attempt:
                await asyncio.sleep(_RETRY_PAUSE_S * 2 ** (attempt - 1))
            try:
                reply = await self._client().request(
                    request.method, url, data=body, headers=headers, timeout=timeout
                )
            except (ClientError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                continue
            if reply.status < 500 or attempt == lease.settings.retries:
                break
            problem = f"HTTP {reply.status}"
            reply.release()
            reply = None
        if reply is None:
            detail = f"{request.method} {url}: {problem} after {lease.settings.retries + 1} tries"
            lease.fail("gateway.upstream_error", detail)
            return _error(502, "codegenie_upstream_error", detail)
        async with reply:
            if reply.status >= 500:
                lease.fail(
                    "gateway.upstream_error",
                    f"{request.method} {url}: HTTP {reply.status} after "
                    f"{lease.settings.retries + 1} tries",
                )
            content_type = reply.headers.get("Content-Type", "application/octet-stream")
            if is_sse(content_type):
                out = web.StreamResponse(
                    status=reply.status,
                    headers={"Content-Type": content_type, "Cache-Control": "no-cache"},
                )
                await out.prepare(request)
                chunks: list[bytes] = []
                agent_gone = False
                try:
                    async for chunk in reply.content.iter_any():
                        chunks.append(chunk)
                        if not agent_gone:
                            agent_gone = not await _relay(out, chunk)
                except (ClientError, TimeoutError) as exc:
                    lease.fail("gateway.upstream_error", f"{url}: stream cut: {exc}")
                # an agent that stops reading once it has what it wants (before the stream's
                # last chunk) is not an error: the upstream is read to its end either way,
                # so the call is metered whole, as the provider bills it
                if not agent_gone:
                    await _relay(out, None)
                answer = b"".join(chunks)
                response: web.StreamResponse = out
            else:
                try:
                    answer = await reply.read()
                except (ClientError, TimeoutError) as exc:
                    detail = f"{request.method} {url}: {type(exc).__name__}: {exc}"
                    lease.fail("gateway.upstream_error", detail)
                    return _error(502, "codegenie_upstream_error", detail)
                response = web.Response(
                    status=reply.status, body=answer, headers={"Content-Type": content_type}
                )
        self._meter(lease, call, reply.status, content_type, answer, replayed=False)
        return response

    @staticmethod
    def _meter(
        lease: AttemptLease,
        call: _Call,
        status: int,
        content_type: str,
        answer: bytes,
        *,
        replayed: bool,
    ) -> None:
        shape, model = call.upstream.shape, call.model
        if is_sse(content_type):
            usage = usage_from_sse(shape, answer, model)
        else:
            usage = usage_from_json(shape, answer, model)
        cost = lease.prices.cost_usd(usage) if lease.prices and usage else None
        lease.exchanges.append(
            Exchange(
                upstream=call.upstream.name,
                method=call.method,
                path=call.path,
                status=status,
                latency_s=time.monotonic() - call.started,
                usage=usage,
                cost_usd=cost,
                replayed=replayed,
                request=call.body,
                response=answer,
                content_type=content_type,
            )
        )


__all__ = ["LEASE_KEY", "AttemptLease", "Exchange", "Gateway"]
