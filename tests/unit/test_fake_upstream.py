"""The fake LLM upstream (tests/fakes/llm_upstream.py) and the two scripted agents
(tests/fixtures/agents/) against it, with no network beyond 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.llm_upstream import FakeUpstream

KEY = "sk-test"
AGENTS = Path(__file__).resolve().parent.parent / "fixtures" / "agents"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(key=KEY) as up:
        yield up


def run_agent(
    agent: str,
    up: FakeUpstream,
    tmp_path: Path,
    *,
    provider: str = "openai",
    stream: bool = False,
    key: str = KEY,
    question: str = "What is 41 plus one?",
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "question.txt").write_text(question)
    env = {"PATH": os.environ.get("PATH", "")}
    if provider == "anthropic":
        env |= {"AGENT_PROVIDER": "anthropic", "ANTHROPIC_BASE_URL": up.url}
        env["ANTHROPIC_API_KEY"] = key
    else:
        env |= {"OPENAI_BASE_URL": up.url + "/v1", "OPENAI_API_KEY": key}
    if stream:
        env["AGENT_STREAM"] = "1"
    return subprocess.run(
        [sys.executable, str(AGENTS / f"{agent}.py"), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def post(
    up: FakeUpstream, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """POST JSON to the fake; (status, response text), errors included."""
    request = urllib.request.Request(up.url + path, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


OPENAI_AUTH = {"Authorization": f"Bearer {KEY}"}
ANTHROPIC_AUTH = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
QUESTION = [{"role": "user", "content": "What is 41 plus one?"}]


def sse(text: str) -> list[tuple[str | None, str]]:
    """(event name or None, data) for each event of an SSE body."""
    events: list[tuple[str | None, str]] = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields.get("event"), fields["data"]))
    return events


# -- the agents against the fake --------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(
    ("agent", "provider"),
    [("stdlib_agent", "openai"), ("stdlib_agent", "anthropic"), ("sdk_agent", "openai")],
)
def test_agent_answers(
    upstream: FakeUpstream, tmp_path: Path, agent: str, provider: str, stream: bool
) -> None:
    done = run_agent(agent, upstream, tmp_path, provider=provider, stream=stream)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "answer.txt").read_text() == "42"
    [request] = upstream.requests
    assert request.method == "POST"
    assert request.body["messages"] == QUESTION
    assert bool(request.body.get("stream")) is stream
    if provider == "anthropic":
        assert request.path == "/v1/messages"
        assert request.headers["x-api-key"] == KEY
        assert request.headers["anthropic-version"] == "2023-06-01"
        assert request.body["model"] == "claude-sonnet-4-5"
        assert request.body["max_tokens"] == 64
    else:
        assert request.path == "/v1/chat/completions"
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.body["model"] == "gpt-4o-mini"
        if stream:
            assert request.body["stream_options"] == {"include_usage": True}


def test_other_questions_are_echoed(upstream: FakeUpstream, tmp_path: Path) -> None:
    done = run_agent("stdlib_agent", upstream, tmp_path, stream=True, question="Say hi to me")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "answer.txt").read_text() == "echo: Say hi to me"


@pytest.mark.parametrize(
    ("agent", "provider"),
    [("stdlib_agent", "openai"), ("stdlib_agent", "anthropic"), ("sdk_agent", "openai")],
)
def test_wrong_key_is_401(
    upstream: FakeUpstream, tmp_path: Path, agent: str, provider: str
) -> None:
    done = run_agent(agent, upstream, tmp_path, provider=provider, key="sk-wrong")
    assert done.returncode == 1
    assert "401" in done.stderr
    assert not (tmp_path / "answer.txt").exists()


def test_injected_failures_then_recovery(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.fail_next = 2
    for _ in range(2):
        done = run_agent("stdlib_agent", upstream, tmp_path)
        assert done.returncode == 1
        assert "HTTP 500" in done.stderr
    assert upstream.fail_next == 0
    done = run_agent("stdlib_agent", upstream, tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "answer.txt").read_text() == "42"
    assert len(upstream.requests) == 3


def test_sdk_agent_retries_past_one_failure(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.fail_next = 1
    done = run_agent("sdk_agent", upstream, tmp_path, stream=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "answer.txt").read_text() == "42"
    assert len(upstream.requests) == 2  # the SDK retried the 500 once


def test_stop_refuses_connections(tmp_path: Path) -> None:
    up = FakeUpstream(key=KEY).start()
    assert up.running
    socket.create_connection(("127.0.0.1", up.port), timeout=5).close()
    up.stop()
    up.stop()  # idempotent
    assert not up.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", up.port), timeout=5)
    done = run_agent("stdlib_agent", up, tmp_path)
    assert done.returncode == 1
    assert "cannot reach the model" in done.stderr


# -- the wire formats -------------------------------------------------------------------


def test_chat_completions_json(upstream: FakeUpstream) -> None:
    body = {"model": "gpt-4o-mini", "messages": QUESTION}
    status, text = post(upstream, "/v1/chat/completions", body, OPENAI_AUTH)
    assert status == 200
    reply = json.loads(text)
    assert reply["object"] == "chat.completion"
    assert reply["id"].startswith("chatcmpl-")
    assert reply["model"] == "gpt-4o-mini"
    assert reply["choices"][0]["message"] == {"role": "assistant", "content": "42"}
    assert reply["usage"] == {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    assert post(upstream, "/v1/chat/completions", body, OPENAI_AUTH) == (status, text)


def test_chat_completions_stream(upstream: FakeUpstream) -> None:
    messages = [{"role": "user", "content": "three little words"}]
    body = {"model": "m", "messages": messages, "stream": True}
    _, plain = post(upstream, "/v1/chat/completions", body, OPENAI_AUTH)
    with_usage = body | {"stream_options": {"include_usage": True}}
    status, text = post(upstream, "/v1/chat/completions", with_usage, OPENAI_AUTH)
    assert status == 200
    for events, has_usage in ((sse(plain), False), (sse(text), True)):
        assert events[-1] == (None, "[DONE]")
        chunks = [json.loads(data) for _, data in events[:-1]]
        assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
        deltas = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
        assert deltas == ["", "echo:", " three", " little", " words", None]
        assert ("usage" in chunks[-1]) is has_usage
    final = json.loads(sse(text)[-2][1])
    assert final["choices"] == []
    assert final["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


def test_responses_json(upstream: FakeUpstream) -> None:
    body = {"model": "gpt-4o-mini", "input": "What is 99 plus one?", "instructions": "Be terse."}
    status, text = post(upstream, "/v1/responses", body, OPENAI_AUTH)
    assert status == 200
    reply = json.loads(text)
    assert reply["object"] == "response"
    assert reply["output"][0]["content"][0]["text"] == "100"
    assert reply["usage"] == {"input_tokens": 7, "output_tokens": 1, "total_tokens": 8}


def test_messages_json(upstream: FakeUpstream) -> None:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": QUESTION, "system": "Hi"}
    status, text = post(upstream, "/v1/messages", body, ANTHROPIC_AUTH)
    assert status == 200
    reply = json.loads(text)
    assert reply["type"] == "message"
    assert reply["content"] == [{"type": "text", "text": "42"}]
    assert reply["usage"] == {"input_tokens": 6, "output_tokens": 1}


def test_messages_stream(upstream: FakeUpstream) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "two words"}]}]
    body = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": messages, "stream": True}
    status, text = post(upstream, "/v1/messages", body, ANTHROPIC_AUTH)
    assert status == 200
    events = sse(text)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    data = [json.loads(d) for _, d in events]
    assert [d["type"] for d in data] == names
    assert data[0]["message"]["usage"]["input_tokens"] == 2
    assert "".join(d["delta"]["text"] for d in data[2:5]) == "echo: two words"
    assert data[6]["usage"] == {"output_tokens": 3}


def test_auth_error_shapes(upstream: FakeUpstream) -> None:
    body = {"model": "m", "messages": QUESTION}
    status, text = post(upstream, "/v1/chat/completions", body)
    assert status == 401
    assert json.loads(text)["error"]["code"] == "invalid_api_key"
    status, text = post(upstream, "/v1/messages", body, {"x-api-key": "sk-wrong"})
    assert status == 401
    assert json.loads(text) == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }
    status, text = post(upstream, "/v1/messages", body, {"x-api-key": KEY})
    assert status == 400  # no anthropic-version
    assert json.loads(text)["error"]["type"] == "invalid_request_error"


def test_fail_next_and_delay(upstream: FakeUpstream) -> None:
    body = {"model": "m", "messages": QUESTION}
    upstream.fail_next = 1
    status, text = post(upstream, "/v1/messages", body, ANTHROPIC_AUTH)
    assert status == 500
    assert json.loads(text)["error"]["type"] == "api_error"
    upstream.delay_s = 0.3
    started = time.monotonic()
    assert post(upstream, "/v1/messages", body, ANTHROPIC_AUTH)[0] == 200
    assert time.monotonic() - started >= 0.3
    assert [r.path for r in upstream.requests] == ["/v1/messages"] * 2
