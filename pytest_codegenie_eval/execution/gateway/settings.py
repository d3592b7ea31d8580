"""What the model gateway is told by the session: its mode, the upstreams it forwards to
(and which harness variable holds each one's key), the cassettes and the price table.

Plain data: it travels to xdist and Dask workers, each of which runs its own gateway.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pytest_codegenie_eval import defaults
from pytest_codegenie_eval.errors import CodegenieEvalError
from pytest_codegenie_eval.execution.gateway.egress import Egress
from pytest_codegenie_eval.execution.gateway.metering import PriceTable

GatewayMode = Literal["off", "live", "record", "replay"]
GATEWAY_MODES = defaults.GATEWAY_MODES
UPSTREAM_HELP = defaults.UPSTREAM_HELP
Shape = Literal["openai", "anthropic"]


class GatewayConfigError(CodegenieEvalError):
    """A gateway option that cannot be used (an upstream, a mode, a price table)."""


@dataclass(frozen=True)
class Upstream:
    """A provider the gateway forwards to: the agent reaches it at
    ``http://127.0.0.1:<port>/<name>/…`` and the gateway at ``<url>/…``, adding the key held
    by the harness variable ``key_env`` (when it is set)."""

    name: str
    url: str
    key_env: str
    shape: Shape

    def auth_headers(self, key: str) -> dict[str, str]:
        if self.shape == "anthropic":
            return {"x-api-key": key}
        return {"Authorization": f"Bearer {key}"}


DEFAULT_UPSTREAMS: tuple[Upstream, ...] = (
    Upstream("openai", "https://api.openai.com", "OPENAI_API_KEY", "openai"),
    Upstream("anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY", "anthropic"),
)


def parse_upstream(text: str, key_env: str | None = None) -> Upstream:
    """``NAME=URL`` as an :class:`Upstream`; raises :class:`GatewayConfigError`."""
    name, sep, url = text.partition("=")
    name, url = name.strip(), url.strip().rstrip("/")
    if not sep or not name.replace("-", "").replace("_", "").isalnum() or not name.isascii():
        raise GatewayConfigError(
            f"--codegenie-upstream {text!r}: expected NAME=URL with NAME of letters, digits, "
            "'-' and '_'"
        )
    if not url.startswith(("http://", "https://")):
        raise GatewayConfigError(f"--codegenie-upstream {text!r}: the URL must be http(s)://")
    shape: Shape = "anthropic" if name.lower().startswith("anthropic") else "openai"
    default_env = f"{name.upper().replace('-', '_')}_API_KEY"
    return Upstream(name, url, key_env or default_env, shape)


def with_upstreams(extra: tuple[Upstream, ...]) -> tuple[Upstream, ...]:
    """The default upstreams, each replaced by an ``extra`` of the same name, then the
    other ``extra`` ones."""
    named = {u.name: u for u in DEFAULT_UPSTREAMS}
    for upstream in extra:
        named[upstream.name] = upstream
    return tuple(named.values())


@dataclass(frozen=True)
class GatewaySettings:
    """The session's gateway: ``off`` (the SUT talks to whatever its network allows),
    ``live`` (forward, meter, keep a transcript), ``record`` (as live, and write cassettes),
    ``replay`` (answer from cassettes only; no upstream is contacted)."""

    mode: GatewayMode = "off"
    upstreams: tuple[Upstream, ...] = DEFAULT_UPSTREAMS
    cassette_dir: Path | None = None
    prices: PriceTable | None = None  # read once by the controller; travels to workers
    timeout_s: float = 300.0
    retries: int = 2  # further tries of an upstream call that failed for infrastructure
    max_calls: int | None = None  # per attempt (--codegenie-gateway-max-calls)
    max_tokens: int | None = None  # per attempt, input and output together
    egress: tuple[Egress, ...] = ()  # hosts a jailed agent may reach through the gateway

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def upstream(self, name: str) -> Upstream | None:
        return next((u for u in self.upstreams if u.name == name), None)


__all__ = [
    "DEFAULT_UPSTREAMS",
    "GATEWAY_MODES",
    "UPSTREAM_HELP",
    "GatewayConfigError",
    "GatewayMode",
    "GatewaySettings",
    "Upstream",
    "parse_upstream",
    "with_upstreams",
]
