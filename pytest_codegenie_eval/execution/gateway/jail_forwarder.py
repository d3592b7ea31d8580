"""Relay the agent's TCP connections on the jail's loopback to the model gateway's Unix socket.

The agent under test runs in a bubblewrap jail whose network is "none": a fresh network
namespace with a loopback device and nothing else. The harness's model gateway listens
outside the jail on a Unix socket (one socket per attempt) that is bind-mounted into the
jail; that socket is the jail's only way out. SDKs want a TCP base URL, so this script is
the jail's command::

    python -I jail_forwarder.py --socket /run/gateway.sock --port 0 \\
        --env OPENAI_BASE_URL=http://127.0.0.1:{port}/openai/v1 -- agent argv...

It listens on 127.0.0.1:PORT (0 picks a free port) before the agent starts, so the agent's
first connection never races; it starts the agent with its own environment plus the
``--env`` variables, ``{port}`` in their values replaced by the bound port; it relays every
accepted connection to a fresh connection to the Unix socket, bytes both ways, unbuffered,
half-closes passed on; and it exits with the agent's exit code (128+N when signal N killed
it), forwarding SIGTERM and SIGINT. It prints only a one-line error (exit 2) when its
arguments are bad, the port cannot be bound or the agent cannot be started.

Standalone on purpose: standard library only and never the package, which the jail's
``python -I`` may not be able to import.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass

USAGE = "usage: jail_forwarder.py --socket PATH [--port N] [--env NAME=VALUE]... -- ARGV..."
CHUNK = 65536
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class UsageError(Exception):
    """The command line is not one this script accepts."""


@dataclass(frozen=True)
class Options:
    socket_path: str
    port: int
    env: dict[str, str]
    command: list[str]


def parse_args(argv: Sequence[str]) -> Options:
    """Options before ``--``, the agent's argv after it."""
    if "--" not in argv:
        raise UsageError("missing '--' before the agent's argv")
    cut = list(argv).index("--")
    command = list(argv[cut + 1 :])
    if not command:
        raise UsageError("no agent argv after '--'")
    socket_path, port, env = None, 0, {}
    flags = iter(argv[:cut])
    for flag in flags:
        value = next(flags, None)
        if value is None:
            raise UsageError(f"{flag} needs a value")
        if flag == "--socket":
            socket_path = value
        elif flag == "--port":
            if not value.isdigit() or int(value) > 65535:
                raise UsageError(f"--port wants 0..65535, not {value!r}")
            port = int(value)
        elif flag == "--env":
            name, eq, text = value.partition("=")
            if not name or not eq:
                raise UsageError(f"--env wants NAME=VALUE, not {value!r}")
            env[name] = text
        else:
            raise UsageError(f"unknown option {flag!r}")
    if not socket_path:
        raise UsageError("--socket is required")
    return Options(socket_path, port, env, command)


def pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes until ``source`` ends, then half-close ``sink``; a broken side ends both."""
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


def relay(client: socket.socket, socket_path: str) -> None:
    """One TCP connection <-> one fresh gateway connection, until both directions end."""
    with client:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with upstream:
            try:
                upstream.connect(socket_path)
            except OSError:
                return
            back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
            back.start()
            pump(client, upstream)
            back.join()


def serve(listener: socket.socket, socket_path: str) -> None:
    """Accept until the listener is shut down, one daemonic relay thread per connection."""
    while True:
        try:
            client, _ = listener.accept()
        except ConnectionAbortedError:
            continue
        except OSError:
            return
        threading.Thread(target=relay, args=(client, socket_path), daemon=True).start()


def run_child(command: list[str], env: dict[str, str]) -> int:
    """Start the agent, forward SIGTERM/SIGINT to it, return its shell-style exit code."""
    pending: list[int] = []
    for signum in FORWARDED_SIGNALS:  # a signal before the agent exists waits for it
        signal.signal(signum, lambda received, _frame: pending.append(received))
    child = subprocess.Popen(command, env=env)
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, lambda received, _frame: child.send_signal(received))
    for early in pending:
        child.send_signal(early)
    code = child.wait()
    return 128 - code if code < 0 else code


def main(argv: Sequence[str]) -> int:
    try:
        options = parse_args(argv)
    except UsageError as error:
        print(f"jail_forwarder: {error}; {USAGE}", file=sys.stderr)
        return 2
    try:
        listener = socket.create_server(("127.0.0.1", options.port), backlog=128)
    except OSError as error:
        print(
            f"jail_forwarder: cannot listen on 127.0.0.1:{options.port}: {error}", file=sys.stderr
        )
        return 2
    with listener:
        port = str(listener.getsockname()[1])
        env = os.environ | {k: v.replace("{port}", port) for k, v in options.env.items()}
        threading.Thread(target=serve, args=(listener, options.socket_path), daemon=True).start()
        try:
            return run_child(options.command, env)
        except OSError as error:
            print(f"jail_forwarder: cannot start {options.command[0]!r}: {error}", file=sys.stderr)
            return 2
        finally:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
