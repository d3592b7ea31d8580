"""Token and cost metering of the model gateway's exchanges.

:func:`usage_from_json` and :func:`usage_from_sse` read the tokens an upstream reply
reports, for OpenAI-compatible replies (Chat Completions and Responses) and Anthropic
Messages, whether the reply was one JSON body or a recorded Server-Sent Events stream. They
are pure and never raise: a body with no usage (an error, garbage, a cut stream) is None.
Input tokens are reported without the cached ones, which are counted apart.

:class:`PriceTable` is the price file (YAML, ``version: 1``, USD per million tokens per
model), read by :func:`load_price_table`; every problem with the file is a
:class:`PriceTableInvalid` naming the file and the field. :meth:`PriceTable.cost_usd` prices
a :class:`Usage` by its model (exact name, else the longest priced name that is a prefix of
it followed by ``-``), or is None when the model has no price.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pytest_codegenie_eval.errors import CodegenieEvalError
from pytest_codegenie_eval.taskclass.contract import strict_yaml

Provider = Literal["openai", "anthropic"]

PRICE_TABLE_VERSION = 1
PER_TOKENS = 1_000_000
"""Prices are per this many tokens."""


@dataclass(frozen=True)
class Usage:
    """The tokens of one exchange. ``input_tokens`` excludes ``cached_input_tokens``."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    model: str = ""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.cached_input_tokens + self.output_tokens


def is_sse(content_type: str) -> bool:
    """Whether a Content-Type header announces a Server-Sent Events stream."""
    return content_type.split(";", 1)[0].strip().lower() == "text/event-stream"


# --------------------------------------------------------------------------------------------
# reading usage


def _count(usage: Mapping[str, Any], key: str) -> int | None:
    """A token count: a non-negative int (never a bool), else None."""
    value = usage.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _model(obj: Mapping[str, Any], fallback: str) -> str:
    model = obj.get("model")
    return model if isinstance(model, str) and model else fallback


def _openai_usage(usage: Any, model: str) -> Usage | None:
    """Chat Completions (``prompt_tokens``...) or Responses (``input_tokens``...) usage."""
    if not isinstance(usage, dict):
        return None
    prompt = _count(usage, "prompt_tokens")
    if prompt is None:
        prompt = _count(usage, "input_tokens")
    output = _count(usage, "completion_tokens")
    if output is None:
        output = _count(usage, "output_tokens")
    if prompt is None and output is None:
        return None
    details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
    cached = (_count(details, "cached_tokens") if isinstance(details, dict) else None) or 0
    cached = min(cached, prompt or 0)
    return Usage((prompt or 0) - cached, output or 0, cached, model)


def _anthropic_usage(usage: Any, model: str) -> Usage | None:
    """Messages usage: ``input_tokens`` already excludes cache reads; cache writes are
    billed as input here."""
    if not isinstance(usage, dict):
        return None
    counts = [
        _count(usage, key)
        for key in (
            "input_tokens",
            "cache_creation_input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
        )
    ]
    if all(count is None for count in counts):
        return None
    fresh, written, output, read = (count or 0 for count in counts)
    return Usage(fresh + written, output, read, model)


def _load(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def usage_from_json(provider: Provider, body: bytes, request_model: str = "") -> Usage | None:
    """The usage a non-streamed reply reports; None when it reports none (not JSON, an
    error body). The model is the reply's, else ``request_model``."""
    data = _load(body)
    if not isinstance(data, dict):
        return None
    model = _model(data, request_model)
    if provider == "anthropic":
        return _anthropic_usage(data.get("usage"), model)
    return _openai_usage(data.get("usage"), model)


_LINE_END = re.compile(r"\r\n|\r|\n")
"""SSE's line endings only (``str.splitlines`` would also split at U+2028 inside JSON)."""


def sse_events(body: bytes) -> Iterator[tuple[str, str]]:
    """The ``(event name, data)`` of each event of a recorded SSE stream, per the
    WHATWG rules: any line ending, ``:`` comments, ``data:`` lines joined by newlines."""
    name, data = "", list[str]()
    for line in _LINE_END.split(body.decode("utf-8", errors="replace")):
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "", []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    if data:
        yield name, "\n".join(data)


def usage_from_sse(provider: Provider, body: bytes, request_model: str = "") -> Usage | None:
    """The usage a recorded streamed reply reports; None when no event carries any.

    OpenAI: the last usage seen, in a chunk's ``usage`` (Chat Completions with
    ``stream_options.include_usage``) or a ``response.usage`` (Responses' final event).
    Anthropic: ``message_start``'s ``message.usage``, each field overridden by the
    cumulative counts of later ``message_delta`` events.
    """
    model, found = request_model, None
    anthropic: dict[str, Any] = {}
    for name, data in sse_events(body):
        event = _load(data) if data != "[DONE]" else None
        if not isinstance(event, dict):
            continue
        kind = event.get("type", name)
        if provider == "anthropic":
            if kind == "message_start" and isinstance(event.get("message"), dict):
                model = _model(event["message"], model)
                usage = event["message"].get("usage")
            elif kind == "message_delta":
                usage = event.get("usage")
            else:
                continue
            if isinstance(usage, dict):
                anthropic.update((k, v) for k, v in usage.items() if _count(usage, k) is not None)
                found = _anthropic_usage(anthropic, model) or found
            continue
        response = event.get("response")  # Responses: the final event's response object
        carrier: dict[str, Any] = response if isinstance(response, dict) else event
        model = _model(carrier, model)
        found = _openai_usage(carrier.get("usage"), model) or found
    return None if found is None else replace(found, model=model)


# --------------------------------------------------------------------------------------------
# prices


class PriceTableInvalid(CodegenieEvalError):
    """A price file that cannot be used: unreadable, not YAML, or against the schema."""

    def __init__(self, path: Path, problem: str, field: str | None = None) -> None:
        self.path = path
        self.field = field
        self.problem = problem
        super().__init__(f"{path}: {field}: {problem}" if field else f"{path}: {problem}")


Price = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]


class ModelPrice(BaseModel):
    """One model's prices, USD per million tokens; ``cached_input`` defaults to ``input``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: Price
    output: Price
    cached_input: Price | None = None

    def cost_usd(self, usage: Usage) -> float:
        cached = self.input if self.cached_input is None else self.cached_input
        return (
            usage.input_tokens * self.input
            + usage.cached_input_tokens * cached
            + usage.output_tokens * self.output
        ) / PER_TOKENS


class PriceTable(BaseModel):
    """The price file: a schema version and the prices of each model, by name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Annotated[int, Field(strict=True)]
    models: dict[Annotated[str, Field(strict=True, min_length=1)], ModelPrice]

    @field_validator("version")
    @classmethod
    def _known_version(cls, version: int) -> int:
        if version != PRICE_TABLE_VERSION:
            raise ValueError(f"unsupported version {version} (this reads {PRICE_TABLE_VERSION})")
        return version

    def price_for(self, model: str) -> ModelPrice | None:
        """The exact name's price, else that of the longest name ``model`` starts with
        followed by ``-`` (``claude-sonnet-4-5-20250929`` is ``claude-sonnet-4-5``)."""
        if model in self.models:
            return self.models[model]
        prefixes = [name for name in self.models if model.startswith(f"{name}-")]
        return self.models[max(prefixes, key=len)] if prefixes else None

    def cost_usd(self, usage: Usage) -> float | None:
        price = self.price_for(usage.model)
        return None if price is None else price.cost_usd(usage)


def load_price_table(path: Path) -> PriceTable:
    """The price file at ``path``; any problem is a :class:`PriceTableInvalid`."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PriceTableInvalid(path, f"not UTF-8 (byte {exc.start}: {exc.reason})") from exc
    except OSError as exc:
        raise PriceTableInvalid(path, f"cannot be read ({exc.strerror or exc})") from exc
    try:
        data, duplicates = strict_yaml(text)
    except yaml.YAMLError as exc:
        raise PriceTableInvalid(path, f"not valid YAML: {exc}") from exc
    if duplicates:
        raise PriceTableInvalid(path, duplicates[0])
    if data is None:
        raise PriceTableInvalid(path, "is empty")
    try:
        return PriceTable.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(part) or "''" for part in err["loc"] if part != "[key]"]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise PriceTableInvalid(path, err["msg"] + more, ".".join(loc) or None) from exc
