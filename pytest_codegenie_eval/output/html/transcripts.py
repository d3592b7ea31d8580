"""A model gateway transcript, parsed into what a case page shows of each call.

The gateway keeps one JSON line per model call (``execution/gateway/access.py``:
upstream, method, path, status, model, tokens, latency, cost, and the request and response
as text). :func:`parse_transcript` turns verified transcript bytes into
:class:`TranscriptCall` objects: the request's ``system`` and ``messages`` (OpenAI Chat
Completions and Responses, Anthropic Messages) and the reply's assistant text and tool
calls, reassembled from the Server-Sent Events when the reply was streamed. Whatever it
cannot read (a line that is not a JSON object, a body in another shape) is kept as raw text.

Every string here is text the agent or the model wrote: the templates escape it, nothing
marks it safe. Long texts are cut at :data:`MAX_TEXT` characters and a whole transcript
shows at most :data:`MAX_TRANSCRIPT_TEXT`; a note says so each time, and the raw
transcript the page links to has all of it. Parsing never raises.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pytest_codegenie_eval.execution.gateway.metering import sse_events

MAX_TEXT = 16 * 1024
"""Characters of one message part or raw body shown; the rest is cut with a note."""
MAX_TRANSCRIPT_TEXT = 1024 * 1024
"""Characters of one transcript shown on a page; later calls show their numbers only."""

_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


@dataclass(frozen=True)
class Part:
    """One piece of a message: ``kind`` is ``text``, ``tool call``, ``tool result``,
    ``thinking``, ``error`` or ``other``; ``label`` names the tool (or the part's type)."""

    kind: str
    text: str
    label: str = ""
    note: str = ""  # the text was cut


@dataclass(frozen=True)
class Message:
    """One message: its role as written, a CSS-safe ``kind`` for it, and its parts."""

    role: str
    parts: tuple[Part, ...]

    @property
    def kind(self) -> str:
        return self.role if self.role in _ROLES else "other"


@dataclass(frozen=True)
class Body:
    """One side of a call as the page shows it: parsed messages, else the raw text."""

    system: tuple[Part, ...] = ()
    messages: tuple[Message, ...] = ()
    raw: str = ""  # shown when the body could not be read as messages
    note: str = ""  # how it was read (streamed, cut, not shown)
    earlier: int = 0  # leading messages left out: the same as the previous call's request

    @property
    def chars(self) -> int:
        parts = [*self.system, *(p for m in self.messages for p in m.parts)]
        return len(self.raw) + sum(len(p.text) for p in parts)


@dataclass(frozen=True)
class TranscriptCall:
    """One model call of an attempt's transcript."""

    number: int
    upstream: str = ""
    method: str = ""
    path: str = ""
    status: int | None = None
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    latency_s: float | None = None
    cost_usd: float | None = None
    replayed: bool = False
    request: Body = field(default_factory=Body)
    response: Body = field(default_factory=Body)
    problem: str = ""  # the line is not a transcript record: its raw text is the request

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class Transcript:
    """An attempt's model calls, in order, and what the page leaves out of them."""

    calls: tuple[TranscriptCall, ...]
    note: str = ""

    @property
    def latencies(self) -> tuple[float, ...]:
        return tuple(c.latency_s for c in self.calls if c.latency_s is not None)


# --------------------------------------------------------------------------------------------
# small readers of untyped JSON


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _dumps(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def clip(text: str, limit: int = MAX_TEXT) -> tuple[str, str]:
    """``text`` cut to ``limit`` characters, and the note saying so (empty when whole)."""
    if len(text) <= limit:
        return text, ""
    return text[:limit], f"the first {limit:,} of {len(text):,} characters"


def _part(kind: str, text: str, label: str = "") -> Part:
    shown, note = clip(text)
    return Part(kind=kind, text=shown, label=label, note=note)


def _joined_text(content: Any) -> str:
    """The text of a content that is a string or a list of text blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            _str(b.get("text")) if isinstance(b, dict) and "text" in b else _dumps(b)
            for b in content
        )
    return "" if content is None else _dumps(content)


# --------------------------------------------------------------------------------------------
# messages: OpenAI Chat Completions and Responses, Anthropic Messages


def _content_parts(content: Any, names: Mapping[str, str]) -> list[Part]:
    """The parts of a message's ``content``: a string, or a list of typed blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [_part("text", content)] if content else []
    if not isinstance(content, list):
        return [_part("other", _dumps(content))]
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(_part("text", block))
            continue
        if not isinstance(block, dict):
            parts.append(_part("other", _dumps(block)))
            continue
        kind = _str(block.get("type"))
        if kind in _TEXT_PARTS:
            parts.append(_part("text", _str(block.get("text"))))
        elif kind == "tool_use":
            parts.append(
                _part("tool call", _dumps(block.get("input", {})), _str(block.get("name")))
            )
        elif kind == "tool_result":
            ref = _str(block.get("tool_use_id"))
            label = names.get(ref, ref) + (" (error)" if block.get("is_error") is True else "")
            parts.append(_part("tool result", _joined_text(block.get("content")), label))
        elif kind == "thinking":
            parts.append(_part("thinking", _str(block.get("thinking"))))
        elif kind in ("image", "image_url", "input_image", "document", "input_file"):
            parts.append(Part(kind="other", text=f"[{kind}]", label=kind))
        else:
            parts.append(_part("other", _dumps(block), kind))
    return parts


def _tool_names(messages: Iterable[Any]) -> dict[str, str]:
    """Tool call id → tool name, so that a tool result can be labelled with its tool."""
    names: dict[str, str] = {}
    for message in messages:
        if not isinstance(message, dict):
            continue
        for call in _list(message.get("tool_calls")):
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                names[_str(call.get("id"))] = _str(call["function"].get("name"))
        if message.get("type") == "function_call":
            names[_str(message.get("call_id"))] = _str(message.get("name"))
        content = message.get("content")
        for block in content if isinstance(content, list) else ():
            if isinstance(block, dict) and block.get("type") == "tool_use":
                names[_str(block.get("id"))] = _str(block.get("name"))
    names.pop("", None)
    return names


def _message(message: Any, names: Mapping[str, str]) -> Message:
    if not isinstance(message, dict):
        return Message(role="?", parts=(_part("other", _dumps(message)),))
    kind = _str(message.get("type"))
    if kind == "function_call":  # Responses: an input item, not a message
        return Message(
            role="assistant",
            parts=(_part("tool call", _str(message.get("arguments")), _str(message.get("name"))),),
        )
    if kind == "function_call_output":
        ref = _str(message.get("call_id"))
        return Message(
            role="tool",
            parts=(_part("tool result", _dumps(message.get("output")), names.get(ref, ref)),),
        )
    role = _str(message.get("role")) or "?"
    parts = _content_parts(message.get("content"), names)
    for call in _list(message.get("tool_calls")):
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            parts.append(
                _part(
                    "tool call", _dumps(function.get("arguments", "")), _str(function.get("name"))
                )
            )
        else:
            parts.append(_part("other", _dumps(call)))
    function_call = message.get("function_call")  # OpenAI's older single function call
    if isinstance(function_call, dict):
        parts.append(
            _part(
                "tool call",
                _dumps(function_call.get("arguments", "")),
                _str(function_call.get("name")),
            )
        )
    if role == "tool" and parts and all(p.kind == "text" for p in parts):
        ref = _str(message.get("tool_call_id"))
        label = names.get(ref, ref)
        parts = [replace(p, kind="tool result", label=label) for p in parts]
    return Message(role=role, parts=tuple(parts))


def _system(value: Any) -> tuple[Part, ...]:
    if value is None or value == "" or value == []:
        return ()
    return (_part("text", _joined_text(value)),)


def _raw_body(text: str, why: str) -> Body:
    shown, note = clip(text)
    return Body(raw=shown, note="; ".join(n for n in (why, note) if n))


def parse_request(text: str) -> Body:
    """The request's system prompt and messages (Chat Completions' and Anthropic's
    ``messages``, Responses' ``input`` and ``instructions``), else its raw text."""
    body = _load(text)
    if not isinstance(body, dict):
        return _raw_body(text, "" if not text else "not JSON: shown as sent")
    items = body.get("messages")
    if items is None:
        items = body.get("input")
        if isinstance(items, str):
            items = [{"role": "user", "content": items}]
    if not isinstance(items, list):
        return _raw_body(text, "no messages: shown as sent")
    names = _tool_names(items)
    system = _system(body.get("system")) or _system(body.get("instructions"))
    return Body(system=system, messages=tuple(_message(m, names) for m in items))


def _error_body(body: Mapping[str, Any]) -> Body | None:
    error = body.get("error")
    if error is None:
        return None
    text = _str(error.get("message")) if isinstance(error, dict) else _dumps(error)
    return Body(messages=(Message(role="error", parts=(_part("error", text or _dumps(error)),)),))


def _reply_of(body: Mapping[str, Any]) -> Body | None:
    """An assistant reply from a JSON response body, or None for another shape."""
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")  # OpenAI Chat Completions
        if isinstance(message, dict):
            return Body(messages=(_message({"role": "assistant", **message}, {}),))
    if isinstance(body.get("content"), list):  # Anthropic Messages
        return Body(messages=(Message("assistant", tuple(_content_parts(body["content"], {}))),))
    output = body.get("output")
    if isinstance(output, list):  # OpenAI Responses
        names = _tool_names(output)
        parts = tuple(
            p
            for item in output
            if isinstance(item, dict) and item.get("type") in ("message", "function_call")
            for p in _message(item, names).parts
        )
        return Body(messages=(Message("assistant", parts),))
    return _error_body(body)


@dataclass
class _Block:
    """One content block of a streamed reply as its deltas arrive."""

    kind: str = "text"
    label: str = ""
    chunks: list[str] = field(default_factory=list)

    def part(self) -> Part:
        return _part(self.kind, "".join(self.chunks), self.label)


def _stream_event(event: Mapping[str, Any], blocks: dict[tuple[str, int], _Block]) -> bool:
    """Add one streamed event's text to ``blocks``; whether the event was understood."""
    kind = _str(event.get("type"))
    if kind in ("content_block_start", "content_block_delta"):  # Anthropic Messages
        index = _int(event.get("index"))
        block = blocks.setdefault(("anthropic", index), _Block())
        start = event.get("content_block")
        if isinstance(start, dict):
            if start.get("type") == "tool_use":
                block.kind, block.label = "tool call", _str(start.get("name"))
            elif start.get("type") == "thinking":
                block.kind = "thinking"
            block.chunks.append(_str(start.get("text")))
        delta = event.get("delta")
        if isinstance(delta, dict):
            for key in ("text", "partial_json", "thinking"):
                block.chunks.append(_str(delta.get(key)))
        return True
    if kind == "error" and "error" in event:
        error = event["error"]
        text = _str(error.get("message")) if isinstance(error, dict) else _dumps(error)
        blocks[("error", len(blocks))] = _Block(kind="error", chunks=[text or _dumps(error)])
        return True
    if kind == "response.output_text.delta":  # OpenAI Responses
        blocks.setdefault(("responses", 0), _Block()).chunks.append(_str(event.get("delta")))
        return True
    if kind.startswith(("message_", "response.")) or kind in ("ping", "content_block_stop"):
        return True
    choices = event.get("choices")  # OpenAI Chat Completions chunks
    if not isinstance(choices, list):
        return False
    delta = choices[0].get("delta") if choices and isinstance(choices[0], dict) else None
    if isinstance(delta, dict):
        content = delta.get("content")
        if isinstance(content, str):
            blocks.setdefault(("openai", -1), _Block()).chunks.append(content)
        for call in _list(delta.get("tool_calls")):
            if not isinstance(call, dict):
                continue
            block = blocks.setdefault(("openai", _int(call.get("index"))), _Block("tool call"))
            function = call.get("function")
            if isinstance(function, dict):
                block.label = block.label or _str(function.get("name"))
                block.chunks.append(_str(function.get("arguments")))
    return True


def _reply_of_stream(text: str) -> Body | None:
    """The reply reassembled from a recorded SSE stream, or None when it is not one."""
    blocks: dict[tuple[str, int], _Block] = {}
    events = understood = 0
    for _, data in sse_events(text.encode("utf-8", errors="surrogateescape")):
        events += 1
        if data.strip() == "[DONE]":
            understood += 1
            continue
        event = _load(data)
        if isinstance(event, dict) and _stream_event(event, blocks):
            understood += 1
    if not events or not blocks:
        return None
    parts = tuple(b.part() for _, b in sorted(blocks.items(), key=lambda kv: kv[0][1]))
    note = f"streamed: reassembled from {events:,} events"
    if understood < events:
        note += f" ({events - understood:,} not understood)"
    return Body(messages=(Message("assistant", parts),), note=note)


def parse_response(text: str) -> Body:
    """The reply's assistant text and tool calls, from a JSON body or a recorded SSE
    stream, else its raw text."""
    body = _load(text)
    if isinstance(body, dict):
        return _reply_of(body) or _raw_body(text, "not a reply this page reads: shown as received")
    return _reply_of_stream(text) or _raw_body(
        text, "" if not text else "neither JSON nor a stream this page reads: shown as received"
    )


# --------------------------------------------------------------------------------------------
# the transcript


def _call(number: int, line: str) -> TranscriptCall:
    record = _load(line)
    if not isinstance(record, dict):
        return TranscriptCall(
            number=number,
            request=_raw_body(line, "shown as recorded"),
            problem="this line of the transcript is not a JSON object",
        )
    status = record.get("status")
    return TranscriptCall(
        number=number,
        upstream=_str(record.get("upstream")),
        method=_str(record.get("method")),
        path=_str(record.get("path")),
        status=status if isinstance(status, int) and not isinstance(status, bool) else None,
        model=_str(record.get("model")),
        input_tokens=_int(record.get("input_tokens")),
        output_tokens=_int(record.get("output_tokens")),
        cached_input_tokens=_int(record.get("cached_input_tokens")),
        latency_s=_float(record.get("latency_s")),
        cost_usd=_float(record.get("cost_usd")),
        replayed=record.get("replayed") is True,
        request=parse_request(_str(record.get("request"))),
        response=parse_response(_str(record.get("response"))),
    )


def _leave_out_repeats(previous: Body | None, request: Body) -> Body:
    """A request without the leading messages it repeats from the previous call's whole
    request (a chat client sends the whole conversation every time)."""
    if previous is None or not previous.messages or previous.system != request.system:
        return request
    n = len(previous.messages)
    if request.messages[:n] == previous.messages:
        return replace(request, messages=request.messages[n:], earlier=n)
    return request


def parse_transcript(data: bytes) -> Transcript:
    """The calls of a transcript (its bytes verified against their digest by the caller)."""
    text = data.decode("utf-8", errors="replace")
    calls: list[TranscriptCall] = []
    previous: Body | None = None
    shown = 0
    held_back = 0
    for number, line in enumerate((ln for ln in text.split("\n") if ln.strip()), start=1):
        call = _call(number, line)
        full_request = call.request
        call = replace(call, request=_leave_out_repeats(previous, full_request))
        previous = full_request
        size = call.request.chars + call.response.chars
        if held_back or shown + size > MAX_TRANSCRIPT_TEXT:
            held_back += 1  # this call and every later one: the page holds no more
            left_out = Body(note="not shown: the page holds no more of this transcript")
            call = replace(call, request=left_out, response=left_out)
        else:
            shown += size
        calls.append(call)
    note = ""
    if held_back:
        note = (
            f"the messages of {held_back:,} call(s) are not shown: the page shows at most "
            f"{MAX_TRANSCRIPT_TEXT // 1024:,} KiB of a transcript; the raw transcript has all of it"
        )
    return Transcript(calls=tuple(calls), note=note)


__all__ = [
    "MAX_TEXT",
    "MAX_TRANSCRIPT_TEXT",
    "Body",
    "Message",
    "Part",
    "Transcript",
    "TranscriptCall",
    "clip",
    "parse_request",
    "parse_response",
    "parse_transcript",
]
