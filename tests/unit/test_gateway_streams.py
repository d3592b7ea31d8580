"""The gateway and an agent that hangs up mid-stream: the call is still metered whole."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")

from aiohttp import web

from pytest_codegenie_eval.execution.gateway.access import attempt_gateway
from pytest_codegenie_eval.execution.gateway.settings import (
    GatewaySettings,
    parse_upstream,
    with_upstreams,
)

EVENTS = [
    (
        "message_start",
        {
            "type": "message_start",
            "message": {"model": "claude-x", "usage": {"input_tokens": 7, "output_tokens": 1}},
        },
    ),
    (
        "content_block_delta",
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hi"}},
    ),
    ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 5}}),
    ("message_stop", {"type": "message_stop"}),
]


@pytest.fixture
def slow_upstream() -> Iterator[str]:
    """An Anthropic-shaped upstream that streams its events 0.2 s apart."""

    async def messages(request: web.Request) -> web.StreamResponse:
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        for name, data in EVENTS:
            await out.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            await asyncio.sleep(0.2)
        await out.write_eof()
        return out

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_an_agent_that_hangs_up_mid_stream_is_still_metered_for_the_whole_call(
    slow_upstream: str, tmp_path: Path
) -> None:
    settings = GatewaySettings(
        mode="live", upstreams=with_upstreams((parse_upstream(f"anthropic={slow_upstream}"),))
    )
    with attempt_gateway(
        settings, task_class="t", case_id="c", repeat=1, run_dir=tmp_path, jailed=False
    ) as (access, lease):
        body = json.dumps({"model": "claude-x", "stream": True, "messages": []}).encode()
        request = (
            f"POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {access.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        with socket.create_connection(("127.0.0.1", access.port or 0), timeout=10) as agent:
            agent.sendall(request)
            seen = b""
            while b"message_start" not in seen:  # the headers, then the first event
                chunk = agent.recv(65536)
                assert chunk, seen
                seen += chunk
            # then hang up, with the rest of the stream still to come
        deadline = time.monotonic() + 10
        while not lease.exchanges and time.monotonic() < deadline:
            time.sleep(0.05)
    (call,) = lease.exchanges
    assert call.usage is not None
    assert (call.usage.input_tokens, call.usage.output_tokens) == (7, 5)
    assert b"message_stop" in call.response
    assert lease.failures == []
