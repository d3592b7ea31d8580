"""A fake LLM upstream for offline tests: OpenAI Chat Completions and Responses, Anthropic
Messages, on 127.0.0.1 with an ephemeral port, served by aiohttp in a background thread.

    with FakeUpstream(key="sk-test") as up:
        env = {"OPENAI_BASE_URL": up.url + "/v1", "ANTHROPIC_BASE_URL": up.url, ...}
        up.fail_next = 2        # the next two requests get a 500
        up.requests[-1].body    # what the last request sent
        up.stop()               # idempotent; afterwards connections are refused

Replies are deterministic from the request: "What is N plus one?" (or "what is one more
than N", the stub bench's question) is answered with N+1,
anything else with "echo: <last user message>". Token counts are word counts: the words of
every input message (and system prompt) in, the words of the reply out.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

_CREATED = 1_700_000_000  # a fixed timestamp keeps whole responses deterministic
# "What is N plus one?", or the stub bench's own question "what is one more than N"
_PLUS_ONE = re.compile(r"what is (?:(-?\d+) plus one\?|one more than (-?\d+))", re.IGNORECASE)
_BODY = web.RequestKey("body", dict[str, Any])  # the validated JSON body, for the handlers


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # keys lowercased
    body: Any  # the parsed JSON body, or None when it was not JSON


def _text(content: Any) -> str:
    """The text of a message's content: a string, or a list of text parts/blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The conversation of any of the three APIs as a list of {role, content} dicts."""
    raw = body.get("messages", body.get("input", []))
    if isinstance(raw, str):  # Responses API: `input` may be a bare string
        raw = [{"role": "user", "content": raw}]
    return [m for m in raw if isinstance(m, dict)] if isinstance(raw, list) else []


def _reply(body: dict[str, Any]) -> tuple[str, int, int]:
    """(reply text, input tokens, output tokens) for a request body."""
    messages = _messages(body)
    user = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
    last = user[-1].strip() if user else ""
    match = _PLUS_ONE.search(last)
    reply = str(int(match.group(1) or match.group(2)) + 1) if match else f"echo: {last}"
    inputs = [_text(m.get("content")) for m in messages]
    inputs += [_text(body.get("system")), _text(body.get("instructions"))]
    return reply, sum(len(t.split()) for t in inputs), len(reply.split())


def _pieces(reply: str) -> list[str]:
    """The reply split into one streamed delta per word; joined they give back the reply."""
    words = reply.split(" ")
    return [words[0], *(" " + w for w in words[1:])]


def _error(anthropic: bool, status: int, kind: str, message: str) -> web.Response:
    """An error in the provider's JSON shape."""
    if anthropic:
        body = {"type": "error", "error": {"type": kind, "message": message}}
        return web.json_response(body, status=status)
    code = "invalid_api_key" if status == 401 else None
    error = {"message": message, "type": kind, "param": None, "code": code}
    return web.json_response({"error": error}, status=status)


async def _sse(request: web.Request, events: list[tuple[str | None, Any]]) -> web.StreamResponse:
    """Stream (event name, data) pairs as server-sent events; a str data is sent verbatim."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    resp.headers["Cache-Control"] = "no-cache"
    await resp.prepare(request)
    for event, data in events:
        payload = data if isinstance(data, str) else json.dumps(data)
        head = f"event: {event}\n" if event else ""
        await resp.write(f"{head}data: {payload}\n\n".encode())
    await resp.write_eof()
    return resp


class FakeUpstream:
    def __init__(self, key: str = "sk-test", *, fail_next: int = 0, delay_s: float = 0.0):
        self.key = key
        self.fail_next = fail_next
        self.delay_s = delay_s
        self.requests: list[RecordedRequest] = []
        self.port = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeUpstream:
        """Serve in a background thread; returns once the port is bound and listening."""
        if self._thread is not None:
            raise RuntimeError("FakeUpstream already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(sock),), name="fake-llm-upstream", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise RuntimeError("FakeUpstream failed to start") from self._error
        return self

    def stop(self) -> None:
        """Close the listening socket and every connection, and join the thread."""
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join()

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def _serve(self, sock: socket.socket) -> None:
        try:
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
            app = web.Application(middlewares=[self._middleware])
            app.router.add_post("/v1/chat/completions", self._chat_completions)
            app.router.add_post("/v1/responses", self._responses)
            app.router.add_post("/v1/messages", self._messages)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
            await runner.setup()
            await web.SockSite(runner, sock).start()
        except BaseException as exc:
            sock.close()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            # First let connections already accepted get their transports (asyncio leaks the
            # socket of one accepted just before the server closes), then close everything.
            await asyncio.sleep(0.01)
            await runner.cleanup()

    # -- request pipeline: record, delay, inject failures, authenticate -------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(RecordedRequest(request.method, request.path, headers, body))
        anthropic = request.path.startswith("/v1/messages")
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        with self._lock:
            fail, self.fail_next = self.fail_next > 0, max(self.fail_next - 1, 0)
        if fail:
            kind = "api_error" if anthropic else "server_error"
            return _error(anthropic, 500, kind, "The server had an error (injected failure).")
        if anthropic and headers.get("x-api-key") != self.key:
            return _error(True, 401, "authentication_error", "invalid x-api-key")
        if not anthropic and headers.get("authorization") != f"Bearer {self.key}":
            return _error(False, 401, "invalid_request_error", "Incorrect API key provided.")
        if anthropic and "anthropic-version" not in headers:
            return _error(
                True, 400, "invalid_request_error", "anthropic-version: header is required"
            )
        if not isinstance(body, dict):
            return _error(
                anthropic, 400, "invalid_request_error", "The body must be a JSON object."
            )
        request[_BODY] = body
        return await handler(request)

    # -- the three APIs -------------------------------------------------------------------

    @staticmethod
    def _id(prefix: str, body: dict[str, Any]) -> str:
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        return f"{prefix}{digest[:24]}"

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = request[_BODY]
        reply, n_in, n_out = _reply(body)
        usage = {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}
        base = {"id": self._id("chatcmpl-", body), "created": _CREATED, "model": body.get("model")}
        if not body.get("stream"):
            message = {"role": "assistant", "content": reply}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return web.json_response(
                {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
        opts = body.get("stream_options")
        include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
        chunk: dict[str, Any] = {**base, "object": "chat.completion.chunk"}
        if include_usage:
            chunk["usage"] = None

        def delta(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**chunk, "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}

        events: list[tuple[str | None, Any]] = [(None, delta({"role": "assistant", "content": ""}))]
        events += [(None, delta({"content": piece})) for piece in _pieces(reply)]
        events.append((None, delta({}, "stop")))
        if include_usage:
            events.append((None, {**chunk, "choices": [], "usage": usage}))
        events.append((None, "[DONE]"))
        return await _sse(request, events)

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = request[_BODY]
        if body.get("stream"):
            msg = "The fake upstream does not stream the Responses API."
            return _error(False, 400, "invalid_request_error", msg)
        reply, n_in, n_out = _reply(body)
        message = {
            "type": "message",
            "id": self._id("msg_", body),
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": reply, "annotations": []}],
        }
        return web.json_response(
            {
                "id": self._id("resp_", body),
                "object": "response",
                "created_at": _CREATED,
                "status": "completed",
                "model": body.get("model"),
                "output": [message],
                "usage": {
                    "input_tokens": n_in,
                    "output_tokens": n_out,
                    "total_tokens": n_in + n_out,
                },
            }
        )

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = request[_BODY]
        reply, n_in, n_out = _reply(body)
        message: dict[str, Any] = {
            "id": self._id("msg_", body),
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": [{"type": "text", "text": reply}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": n_in, "output_tokens": n_out},
        }
        if not body.get("stream"):
            return web.json_response(message)
        # Streamed: the message starts empty, one text block grows a word at a time, and
        # the stop reason and output tokens arrive in message_delta.
        start = message | {"content": [], "stop_reason": None}
        start["usage"] = {"input_tokens": n_in, "output_tokens": 1}
        block: dict[str, Any] = {"type": "content_block_start", "index": 0}
        block["content_block"] = {"type": "text", "text": ""}
        events: list[tuple[str | None, Any]] = [
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", block),
        ]
        for piece in _pieces(reply):
            delta = {"type": "text_delta", "text": piece}
            events.append(
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
            )
        end = {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}}
        end["usage"] = {"output_tokens": n_out}
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", end),
            ("message_stop", {"type": "message_stop"}),
        ]
        return await _sse(request, events)
