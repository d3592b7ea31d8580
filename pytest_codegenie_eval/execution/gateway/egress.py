"""The gateway's egress allowlist: ``--codegenie-sut-egress=HOST[:PORT]``.

A jailed agent's only way out is its gateway listener. Besides model calls, the listener
speaks HTTP ``CONNECT`` (the agent's ``HTTPS_PROXY`` points at it): a tunnel to a host the
allowlist names is opened and spliced byte for byte (TLS stays end to end between the agent
and that host); any other host is refused with 403 and recorded. Every other request on the
connection is handed, unread, to the gateway's HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

_MAX_HEAD = 16 * 1024
DEFAULT_PORT = 443


@dataclass(frozen=True)
class Egress:
    """One allowed destination; a port of ``None`` allows 443 only."""

    host: str
    port: int | None = None

    def allows(self, host: str, port: int) -> bool:
        return host.lower().rstrip(".") == self.host and port == (self.port or DEFAULT_PORT)

    def __str__(self) -> str:
        return f"{self.host}:{self.port or DEFAULT_PORT}"


def parse_egress(text: str) -> Egress:
    """``HOST`` or ``HOST:PORT``; raises ValueError naming what is accepted."""
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host, port = text.strip(), ""
    host = host.lower().rstrip(".")
    if not host or any(c in host for c in "/@ ") or not host.isascii():
        raise ValueError(f"--codegenie-sut-egress {text!r}: expected HOST or HOST:PORT")
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        raise ValueError(f"--codegenie-sut-egress {text!r}: the port must be 1..65535")
    return Egress(host, int(port) if port else None)


class _Splice(asyncio.Protocol):
    """The upstream side of a tunnel: what the host sends goes to the agent."""

    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.write(data)

    def eof_received(self) -> bool | None:
        if self.client.can_write_eof():
            self.client.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class Dispatch(asyncio.Protocol):
    """One connection to an attempt's listener: a ``CONNECT`` tunnel, or HTTP for the
    gateway's server (``http``, a protocol factory such as aiohttp's ``web.Server``)."""

    def __init__(
        self,
        http: Callable[[], asyncio.Protocol],
        allowed: tuple[Egress, ...],
        on_egress: Callable[[str, bool], None],
    ) -> None:
        self.http = http
        self.allowed = allowed
        self.on_egress = on_egress
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.upstream is not None:  # an open tunnel
            self.upstream.write(data)
            return
        self.buffer += data
        if not self.buffer.startswith(b"CONNECT "):
            if len(self.buffer) < 8 and b"CONNECT ".startswith(self.buffer):
                return  # too short to tell yet
            self._hand_to_http()
        elif b"\r\n\r\n" in self.buffer:
            assert self.transport is not None
            self.transport.pause_reading()
            self.task = asyncio.ensure_future(self._connect())
        elif len(self.buffer) > _MAX_HEAD:
            self._answer(b"431 Request Header Fields Too Large")

    def eof_received(self) -> bool | None:
        if self.upstream is not None and self.upstream.can_write_eof():
            self.upstream.write_eof()
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()

    def _hand_to_http(self) -> None:
        assert self.transport is not None
        handler = self.http()
        self.transport.set_protocol(handler)
        handler.connection_made(self.transport)
        handler.data_received(self.buffer)
        self.buffer = b""

    def _answer(self, status: bytes) -> None:
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
        self.transport.close()

    async def _connect(self) -> None:
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        target = head.split(b"\r\n", 1)[0].split(b" ")
        authority = target[1].decode("ascii", "replace") if len(target) == 3 else ""
        host, _, port_text = authority.rpartition(":")
        port = int(port_text) if port_text.isdigit() else 0
        host = host.strip("[]")
        if not any(egress.allows(host, port) for egress in self.allowed):
            self.on_egress(authority or "(malformed CONNECT)", False)
            self._answer(b"403 Forbidden (not in --codegenie-sut-egress)")
            return
        self.on_egress(authority, True)
        assert self.transport is not None
        client = self.transport
        loop = asyncio.get_running_loop()
        try:
            upstream, _ = await loop.create_connection(lambda: _Splice(client), host, port)
        except OSError:
            self._answer(b"502 Bad Gateway")
            return
        self.upstream = upstream
        client.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if rest:
            upstream.write(rest)
        self.buffer = b""
        with contextlib.suppress(RuntimeError):
            client.resume_reading()


__all__ = ["DEFAULT_PORT", "Dispatch", "Egress", "parse_egress"]
