"""Cassettes: the model exchanges of one attempt of one case, recorded by the gateway
(``--codegenie-model-gateway=record``) and answered from (``replay``).

One JSON file per case and attempt, ``<cassette dir>/<task class>/<case id>/attempt-<n>.json``
(names made safe with :func:`~pytest_codegenie_eval.fsutil.name_part`)::

    {"version": 1, "task_class": "...", "case_id": "...", "repeat": 1,
     "exchanges": [{"upstream": "openai", "method": "POST", "path": "v1/chat/completions",
                    "request_digest": "<BLAKE3 of the canonical request body>",
                    "request": "<the request body, UTF-8 text>",
                    "status": 200, "content_type": "application/json",
                    "response": "<the response body, UTF-8 text>"}]}

Bodies that are not UTF-8 are stored base64 under ``request_b64`` / ``response_b64``. A
request's *canonical* body is its JSON with sorted keys and no spaces when it parses, else
its bytes: a replayed agent that builds the same request in another key order still finds
its answer. Replay serves, for each request, the first exchange not served yet with the
same upstream, method, path and canonical body, so an agent that repeats a question gets
the answers in the order they were recorded.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_codegenie_eval.fsutil import name_part
from pytest_codegenie_eval.hashing import blake3_hex

CASSETTE_VERSION = 1


class CassetteInvalid(ValueError):
    """A cassette file that cannot be read or is not a cassette."""


def canonical_body(body: bytes) -> bytes:
    try:
        parsed = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return body
    return json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def request_digest(body: bytes) -> str:
    return blake3_hex(canonical_body(body))


@dataclass(frozen=True)
class RecordedExchange:
    upstream: str
    method: str
    path: str
    request: bytes
    status: int
    content_type: str
    response: bytes

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.upstream, self.method, self.path, request_digest(self.request))

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "upstream": self.upstream,
            "method": self.method,
            "path": self.path,
            "request_digest": request_digest(self.request),
            "status": self.status,
            "content_type": self.content_type,
        }
        out.update(_text_or_b64("request", self.request))
        out.update(_text_or_b64("response", self.response))
        return out

    @classmethod
    def from_json(cls, raw: object, where: str) -> RecordedExchange:
        if not isinstance(raw, dict):
            raise CassetteInvalid(f"{where}: an exchange must be an object")
        try:
            return cls(
                upstream=_str(raw, "upstream", where),
                method=_str(raw, "method", where),
                path=_str(raw, "path", where),
                request=_bytes(raw, "request", where),
                status=_int(raw, "status", where),
                content_type=_str(raw, "content_type", where),
                response=_bytes(raw, "response", where),
            )
        except (ValueError, TypeError) as exc:
            raise CassetteInvalid(f"{where}: {exc}") from exc


def _text_or_b64(name: str, data: bytes) -> dict[str, str]:
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{name}_b64": base64.b64encode(data).decode("ascii")}


def _str(raw: dict[str, Any], name: str, where: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str):
        raise CassetteInvalid(f"{where}.{name}: must be a string")
    return value


def _int(raw: dict[str, Any], name: str, where: str) -> int:
    value = raw.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise CassetteInvalid(f"{where}.{name}: must be an integer")
    return value


def _bytes(raw: dict[str, Any], name: str, where: str) -> bytes:
    if isinstance(raw.get(name), str):
        return str(raw[name]).encode("utf-8")
    if isinstance(raw.get(f"{name}_b64"), str):
        return base64.b64decode(str(raw[f"{name}_b64"]), validate=True)
    raise CassetteInvalid(f"{where}.{name}: missing (text or {name}_b64)")


def cassette_path(directory: Path, task_class: str, case_id: str, repeat: int) -> Path:
    return directory / name_part(task_class) / name_part(case_id) / f"attempt-{repeat}.json"


def write_cassette(
    path: Path, *, task_class: str, case_id: str, repeat: int, exchanges: list[RecordedExchange]
) -> None:
    """Write the cassette atomically (a temporary file renamed into place)."""
    payload = {
        "version": CASSETTE_VERSION,
        "task_class": task_class,
        "case_id": case_id,
        "repeat": repeat,
        "exchanges": [e.as_json() for e in exchanges],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_cassette(path: Path) -> list[RecordedExchange]:
    """The exchanges of a cassette; :class:`CassetteInvalid` names the file and field."""
    try:
        payload = json.loads(path.read_bytes())
    except OSError as exc:
        raise CassetteInvalid(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise CassetteInvalid(f"{path}: not JSON: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("version") != CASSETTE_VERSION:
        raise CassetteInvalid(f"{path}: version: must be {CASSETTE_VERSION}")
    raw = payload.get("exchanges")
    if not isinstance(raw, list):
        raise CassetteInvalid(f"{path}: exchanges: must be a list")
    return [RecordedExchange.from_json(e, f"{path}: exchanges[{i}]") for i, e in enumerate(raw)]


@dataclass
class Player:
    """Answers requests from one cassette, each recorded exchange at most once."""

    exchanges: list[RecordedExchange]
    used: set[int] = field(default_factory=set)

    def answer(self, upstream: str, method: str, path: str, body: bytes) -> RecordedExchange | None:
        key = (upstream, method, path, request_digest(body))
        for index, exchange in enumerate(self.exchanges):
            if index not in self.used and exchange.key == key:
                self.used.add(index)
                return exchange
        return None


__all__ = [
    "CASSETTE_VERSION",
    "CassetteInvalid",
    "Player",
    "RecordedExchange",
    "canonical_body",
    "cassette_path",
    "read_cassette",
    "request_digest",
    "write_cassette",
]
