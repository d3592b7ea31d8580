"""The gateway's metering: usage read from recorded replies of both providers, JSON and
SSE, and the price file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_codegenie_eval.errors import CodegenieEvalError
from pytest_codegenie_eval.execution.gateway.metering import (
    ModelPrice,
    PriceTable,
    PriceTableInvalid,
    Provider,
    Usage,
    is_sse,
    load_price_table,
    sse_events,
    usage_from_json,
    usage_from_sse,
)

PROVIDERS: list[Provider] = ["openai", "anthropic"]

# --------------------------------------------------------------------------------------------
# recorded replies

CHAT_JSON = b"""{
  "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
  "object": "chat.completion",
  "created": 1741570283,
  "model": "gpt-4o-mini-2024-07-18",
  "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!",
    "refusal": null}, "logprobs": null, "finish_reason": "stop"}],
  "usage": {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
  "service_tier": "default",
  "system_fingerprint": "fp_06737a9306"
}"""

RESPONSES_JSON = b"""{
  "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
  "object": "response", "created_at": 1741476542, "status": "completed",
  "model": "gpt-4.1-2025-04-14",
  "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
    "content": [{"type": "output_text", "text": "In a peaceful grove...",
      "annotations": []}]}],
  "usage": {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 87, "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 123}
}"""

ANTHROPIC_JSON = b"""{
  "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF", "type": "message", "role": "assistant",
  "model": "claude-sonnet-4-5-20250929",
  "content": [{"type": "text", "text": "Hi! My name is Claude."}],
  "stop_reason": "end_turn", "stop_sequence": null,
  "usage": {"input_tokens": 2095, "cache_creation_input_tokens": 500,
    "cache_read_input_tokens": 12000, "output_tokens": 503, "service_tier": "standard"}
}"""

OPENAI_ERROR = (
    b'{"error": {"message": "Incorrect API key provided: sk-****.", '
    b'"type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}'
)
ANTHROPIC_ERROR = (
    b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
)

CHAT_SSE = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,'
    b'"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"role":"assistant",'
    b'"content":""},"finish_reason":null}],"usage":null}\n\n'
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,'
    b'"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":"Hi"},'
    b'"finish_reason":null}],"usage":null}\n\n'
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,'
    b'"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{},'
    b'"finish_reason":"stop"}],"usage":null}\n\n'
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,'
    b'"model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":2048,'
    b'"completion_tokens":12,"total_tokens":2060,"prompt_tokens_details":'
    b'{"cached_tokens":1536}}}\n\n'
    b"data: [DONE]\n\n"
)

RESPONSES_SSE = (
    b"event: response.created\n"
    b'data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_1",'
    b'"object":"response","status":"in_progress","model":"gpt-4.1-mini-2025-04-14",'
    b'"output":[],"usage":null}}\n\n'
    b"event: response.output_text.delta\n"
    b'data: {"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1",'
    b'"output_index":0,"content_index":0,"delta":"Hello"}\n\n'
    b"event: response.completed\n"
    b'data: {"type":"response.completed","sequence_number":9,"response":{"id":"resp_1",'
    b'"object":"response","status":"completed","model":"gpt-4.1-mini-2025-04-14",'
    b'"output":[],"usage":{"input_tokens":1300,"input_tokens_details":{"cached_tokens":1280},'
    b'"output_tokens":20,"output_tokens_details":{"reasoning_tokens":0},'
    b'"total_tokens":1320}}}\n\n'
)

ANTHROPIC_SSE = (
    b"event: message_start\r\n"
    b'data: {"type":"message_start","message":{"id":"msg_1","type":"message",'
    b'"role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929",'
    b'"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,'
    b'"cache_creation_input_tokens":100,"cache_read_input_tokens":4000,'
    b'"output_tokens":1}}}\r\n\r\n'
    b"event: content_block_start\r\n"
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text",'
    b'"text":""}}\r\n\r\n'
    b": keep-alive comment\r\n\r\n"
    b"event: ping\r\n"
    b'data: {"type": "ping"}\r\n\r\n'
    b"event: content_block_delta\r\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
    b'"text":"Hello"}}\r\n\r\n'
    b"event: content_block_stop\r\n"
    b'data: {"type":"content_block_stop","index":0}\r\n\r\n'
    b"event: message_delta\r\n"
    b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
    b'"stop_sequence":null},"usage":{"output_tokens":7}}\r\n\r\n'
    b"event: message_delta\r\n"
    b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
    b'"stop_sequence":null},"usage":{"output_tokens":15}}\r\n\r\n'
    b"event: message_stop\r\n"
    b'data: {"type":"message_stop"}\r\n\r\n'
)


# --------------------------------------------------------------------------------------------
# JSON bodies


def test_chat_completion_reports_cached_tokens_apart() -> None:
    assert usage_from_json("openai", CHAT_JSON) == Usage(93, 46, 1024, "gpt-4o-mini-2024-07-18")


def test_responses_body() -> None:
    assert usage_from_json("openai", RESPONSES_JSON) == Usage(36, 87, 0, "gpt-4.1-2025-04-14")


def test_anthropic_body_bills_cache_writes_as_input() -> None:
    usage = usage_from_json("anthropic", ANTHROPIC_JSON)
    assert usage == Usage(2595, 503, 12000, "claude-sonnet-4-5-20250929")
    assert usage.total_tokens == 2595 + 503 + 12000


def test_model_falls_back_to_the_request() -> None:
    body = b'{"usage": {"prompt_tokens": 10, "completion_tokens": 2}}'
    assert usage_from_json("openai", body, request_model="gpt-4o") == Usage(10, 2, 0, "gpt-4o")
    assert usage_from_json("openai", body) == Usage(10, 2, 0, "")


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        ("openai", OPENAI_ERROR),
        ("anthropic", ANTHROPIC_ERROR),
        ("openai", b'{"model": "gpt-4o", "choices": []}'),
        ("openai", b'{"model": "gpt-4o", "usage": null}'),
        ("openai", b'{"usage": {}}'),
        ("anthropic", b'{"usage": {"input_tokens": "12", "output_tokens": true}}'),
        ("openai", b"[1, 2]"),
        ("openai", b""),
        ("anthropic", b"<html>502 Bad Gateway</html>"),
        ("anthropic", b"\xff\xfe\x00"),
        ("openai", b"[" * 100_000),
        ("openai", b'{"usage": {"prompt_tokens": 1' + b"0" * 5000 + b"}}"),
    ],
)
def test_no_usage_is_none(provider: Provider, body: bytes) -> None:
    assert usage_from_json(provider, body) is None


def test_bad_counts_are_left_out() -> None:
    body = b'{"usage": {"prompt_tokens": -3, "completion_tokens": 5, "prompt_tokens_details": 1}}'
    assert usage_from_json("openai", body) == Usage(0, 5, 0, "")
    # more cached tokens than prompt tokens cannot make input negative
    body = b'{"usage": {"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": 9}}}'
    assert usage_from_json("openai", body) == Usage(0, 0, 3, "")


# --------------------------------------------------------------------------------------------
# SSE streams


def test_chat_stream_takes_the_usage_chunk() -> None:
    assert usage_from_sse("openai", CHAT_SSE) == Usage(512, 12, 1536, "gpt-4o-mini-2024-07-18")


def test_responses_stream_takes_the_completed_event() -> None:
    assert usage_from_sse("openai", RESPONSES_SSE) == Usage(20, 20, 1280, "gpt-4.1-mini-2025-04-14")


def test_anthropic_stream_sums_start_and_last_delta() -> None:
    assert usage_from_sse("anthropic", ANTHROPIC_SSE) == Usage(
        125, 15, 4000, "claude-sonnet-4-5-20250929"
    )
    lf = ANTHROPIC_SSE.replace(b"\r\n", b"\n")
    assert usage_from_sse("anthropic", lf) == usage_from_sse("anthropic", ANTHROPIC_SSE)
    cr = ANTHROPIC_SSE.replace(b"\r\n", b"\r")
    assert usage_from_sse("anthropic", cr) == usage_from_sse("anthropic", ANTHROPIC_SSE)


def test_anthropic_stream_cut_after_start_keeps_what_it_saw() -> None:
    cut = ANTHROPIC_SSE.split(b"event: content_block_start")[0]
    assert usage_from_sse("anthropic", cut) == Usage(125, 1, 4000, "claude-sonnet-4-5-20250929")


def test_anthropic_delta_with_cumulative_input_overrides_start() -> None:
    stream = (
        b'data: {"type":"message_start","message":{"model":"claude-haiku-4-5",'
        b'"usage":{"input_tokens":10,"output_tokens":1}}}\n\n'
        b'data: {"type":"message_delta","usage":{"input_tokens":10,'
        b'"cache_read_input_tokens":0,"output_tokens":42}}\n\n'
    )
    assert usage_from_sse("anthropic", stream) == Usage(10, 42, 0, "claude-haiku-4-5")


def test_multi_line_data_and_comments() -> None:
    stream = (
        b": this is a comment\n"
        b"retry: 1000\n"
        b'data: {"model": "gpt-4o",\n'
        b'data:  "usage": {"prompt_tokens": 7,\n'
        b'data: "completion_tokens": 3}}\n'
        b"\n"
        b"data: [DONE]"
    )
    assert next(sse_events(stream)) == (
        "",
        '{"model": "gpt-4o",\n "usage": {"prompt_tokens": 7,\n"completion_tokens": 3}}',
    )
    assert usage_from_sse("openai", stream) == Usage(7, 3, 0, "gpt-4o")


def test_stream_model_falls_back_to_the_request() -> None:
    stream = b'data: {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 1}}\n\n'
    assert usage_from_sse("openai", stream, "gpt-4o-mini") == Usage(4, 1, 0, "gpt-4o-mini")


def test_line_separator_inside_json_is_not_a_line_end() -> None:
    text = '{"model": "m", "choices": [{"delta": {"content": "a\u2028b"}}], '
    stream = b"data: " + text.encode() + b'"usage": {"prompt_tokens": 1}}\n\n'
    assert usage_from_sse("openai", stream) == Usage(1, 0, 0, "m")


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        ("openai", CHAT_SSE.replace(b',"usage":{"prompt_tokens"', b',"x":{"prompt_tokens"')),
        ("openai", b"data: [DONE]\n\n"),
        ("anthropic", b'event: ping\ndata: {"type": "ping"}\n\n'),
        ("anthropic", b"event: error\ndata: " + ANTHROPIC_ERROR + b"\n\n"),
        ("anthropic", CHAT_SSE),
        ("openai", b"data: {not json\n\n"),
        ("openai", b""),
    ],
)
def test_stream_without_usage_is_none(provider: Provider, body: bytes) -> None:
    assert usage_from_sse(provider, body) is None


@pytest.mark.parametrize("provider", PROVIDERS)
@given(body=st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(provider: Provider, body: bytes) -> None:
    for found in (usage_from_json(provider, body), usage_from_sse(provider, body)):
        assert found is None or isinstance(found, Usage)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "usage",
                    "model",
                    "type",
                    "message",
                    "response",
                    "input_tokens",
                    "output_tokens",
                    "prompt_tokens",
                    "cached_tokens",
                    "prompt_tokens_details",
                    "cache_read_input_tokens",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("provider", PROVIDERS)
@given(events=st.lists(_json_values, max_size=6))
def test_json_shaped_garbage_never_raises(provider: Provider, events: list[object]) -> None:
    stream = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    found = usage_from_sse(provider, stream)
    assert found is None or min(found.input_tokens, found.output_tokens) >= 0
    for event in events:
        found = usage_from_json(provider, json.dumps(event).encode())
        assert found is None or found.cached_input_tokens >= 0


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/event-stream", True),
        ("text/event-stream; charset=utf-8", True),
        (" Text/Event-Stream ;charset=utf-8", True),
        ("application/json", False),
        ("", False),
        ("text/event-streams", False),
    ],
)
def test_is_sse(content_type: str, expected: bool) -> None:
    assert is_sse(content_type) is expected


# --------------------------------------------------------------------------------------------
# prices

PRICES = """\
version: 1
models:
  gpt-4o-mini: {input: 0.15, output: 0.60, cached_input: 0.075}   # USD per million tokens
  gpt-4o: {input: 2.5, output: 10}
  claude-sonnet-4-5: {input: 3.0, output: 15.0, cached_input: 0.30}
  claude-sonnet-4: {input: 3.0, output: 15.0, cached_input: 0.30}
"""


@pytest.fixture
def table(tmp_path: Path) -> PriceTable:
    path = tmp_path / "prices.yaml"
    path.write_text(PRICES)
    return load_price_table(path)


def test_lookup_exact_then_longest_prefix(table: PriceTable) -> None:
    assert table.price_for("gpt-4o") == ModelPrice(input=2.5, output=10.0)
    assert table.price_for("gpt-4o-mini") == table.models["gpt-4o-mini"]
    assert table.price_for("gpt-4o-mini-2024-07-18") == table.models["gpt-4o-mini"]
    assert table.price_for("gpt-4o-2024-08-06") == table.models["gpt-4o"]
    assert table.price_for("claude-sonnet-4-5-20250929") is table.models["claude-sonnet-4-5"]
    assert table.price_for("claude-sonnet-4-20250514") is table.models["claude-sonnet-4"]


@pytest.mark.parametrize("model", ["", "gpt-4", "gpt-4omni", "o3", "GPT-4O", "x-gpt-4o"])
def test_unknown_model_is_unpriced(table: PriceTable, model: str) -> None:
    assert table.price_for(model) is None
    assert table.cost_usd(Usage(1000, 1000, 0, model)) is None


def test_cost(table: PriceTable) -> None:
    usage = Usage(1_000_000, 2_000_000, 4_000_000, "gpt-4o-mini-2024-07-18")
    assert table.cost_usd(usage) == pytest.approx(0.15 + 1.20 + 0.30)
    # cached input defaults to the input price
    assert table.cost_usd(Usage(0, 0, 1_000_000, "gpt-4o")) == pytest.approx(2.5)
    recorded = usage_from_json("anthropic", ANTHROPIC_JSON)
    assert recorded is not None
    assert table.cost_usd(recorded) == pytest.approx((2595 * 3 + 503 * 15 + 12000 * 0.3) / 1e6)


_tokens = st.integers(min_value=0, max_value=10**12)
_prices = st.floats(min_value=0, max_value=1e4)


@given(
    price=st.builds(ModelPrice, input=_prices, output=_prices, cached_input=_prices | st.none()),
    base=st.tuples(_tokens, _tokens, _tokens),
    extra=st.tuples(_tokens, _tokens, _tokens),
)
def test_cost_is_monotone_in_tokens(
    price: ModelPrice, base: tuple[int, int, int], extra: tuple[int, int, int]
) -> None:
    table = PriceTable(version=1, models={"m": price})
    more = (base[0] + extra[0], base[1] + extra[1], base[2] + extra[2])
    low, high = table.cost_usd(Usage(*base, "m")), table.cost_usd(Usage(*more, "m-1"))
    assert low is not None
    assert high is not None
    assert 0 <= low <= high


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        ("version: 1\nmodels:\n  gpt-4o: {input: '0.15', output: 1}\n", "models.gpt-4o.input",
         "valid number"),
        ("version: 1\nmodels:\n  gpt-4o: {input: true, output: 1}\n", "models.gpt-4o.input",
         "valid number"),
        ("version: 1\nmodels:\n  gpt-4o: {input: -1, output: 1}\n", "models.gpt-4o.input",
         "greater than or equal to 0"),
        ("version: 1\nmodels:\n  gpt-4o: {input: .inf, output: 1}\n", "models.gpt-4o.input",
         "finite number"),
        ("version: 1\nmodels:\n  gpt-4o: {input: .nan, output: 1}\n", "models.gpt-4o.input",
         "finite number"),
        ("version: 1\nmodels:\n  gpt-4o: {input: 1}\n", "models.gpt-4o.output", "required"),
        ("version: 1\nmodels:\n  gpt-4o: {input: 1, output: 1, cache: 1}\n",
         "models.gpt-4o.cache", "Extra inputs"),
        ("version: 1\nmodels:\n  gpt-4o: {input: 1, output: 1, cached_input: null}\n"
         "  o3: {input: 1, output: x}\n", "models.o3.output", "valid number"),
        ("version: 1\nmodels:\n  4: {input: 1, output: 1}\n", "models.4", "valid string"),
        ("version: 1\nmodels:\n  '': {input: 1, output: 1}\n", "models.''", "at least 1 char"),
        ("version: 1\nmodels: [gpt-4o]\n", "models", "valid dictionary"),
        ("version: 2\nmodels: {}\n", "version", "unsupported version 2"),
        ("version: true\nmodels: {}\n", "version", "valid integer"),
        ("version: 1.0\nmodels: {}\n", "version", "valid integer"),
        ("models: {}\n", "version", "required"),
        ("version: 1\nmodels: {}\ncurrency: EUR\n", "currency", "Extra inputs"),
    ],
)  # fmt: skip
def test_invalid_price_file_names_file_and_field(
    tmp_path: Path, text: str, field: str, problem: str
) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(PriceTableInvalid) as raised:
        load_price_table(path)
    assert raised.value.path == path
    assert raised.value.field == field
    assert problem in raised.value.problem
    assert str(raised.value).startswith(f"{path}: {field}: ")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"version: 1\nmodels:\n  gpt-4o: {input: 1, output: 1}\n  gpt-4o: {input: 2, output: 2}\n",
         "duplicate key 'models.gpt-4o'"),
        (b"version: 1\nmodels:\n  gpt-4o: {input: 1, input: 2, output: 1}\n",
         "duplicate key 'models.gpt-4o.input'"),
        (b"version: 1\nmodels: {gpt-4o: {input: 1, output: 1}\n", "not valid YAML"),
        (b"version: 1\nmodels:\n  a: &p {input: 1, output: 1}\n  b: *p\n", "alias"),
        (b"version: 1\nmodels: {}\n\xff\n", "not UTF-8"),
        (b"", "is empty"),
        (b"- 1\n", "valid dictionary"),
    ],
)  # fmt: skip
def test_unusable_price_file_names_the_file(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_bytes(content)
    with pytest.raises(PriceTableInvalid, match="^" + re.escape(str(path))) as raised:
        load_price_table(path)
    assert problem in str(raised.value)
    assert isinstance(raised.value, CodegenieEvalError)


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_price_file_names_the_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "prices.yaml"
    if kind == "directory":
        path.mkdir()
    with pytest.raises(PriceTableInvalid) as raised:
        load_price_table(path)
    assert raised.value.path == path
    assert str(raised.value).startswith(f"{path}: cannot be read")
