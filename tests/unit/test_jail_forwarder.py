"""The jail's forwarder, run for real: a Unix-socket server in a thread stands in for the
model gateway, the forwarder runs as ``python -I jail_forwarder.py`` and its child is a
small Python script that talks to 127.0.0.1:$JF_PORT. No network beyond loopback."""

from __future__ import annotations

import ast
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest

from pytest_codegenie_eval.execution.gateway import jail_forwarder

SCRIPT = Path(jail_forwarder.__file__)
TIMEOUT = 30.0

PRELUDE = """\
import os, socket, sys
PORT = int(os.environ["JF_PORT"])

def connect():
    return socket.create_connection(("127.0.0.1", PORT), timeout=20)

def read_all(sock):
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
"""

ECHO_CHILD = """
sock = connect()
sock.sendall(sys.argv[1].encode())
sock.shutdown(socket.SHUT_WR)
sys.stdout.write(read_all(sock).decode())
sys.exit(int(sys.argv[2]))
"""

Handle = Callable[[socket.socket], object]


class Gateway(socketserver.ThreadingUnixStreamServer):
    """A stand-in for the model gateway: each connection goes to ``handle`` in a thread."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, path: str, handle: Handle) -> None:
        self.handle = handle
        self.connections = 0
        self.lock = threading.Lock()
        super().__init__(path, _Handler)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server = cast(Gateway, self.server)
        with server.lock:
            server.connections += 1
        server.handle(cast(socket.socket, self.request))


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def echo(sock: socket.socket) -> None:
    sock.sendall(b"echo:" + read_all(sock))


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a Unix socket's path has at most 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="jf-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def gateway(short_dir: Path) -> Iterator[Callable[[Handle], Gateway]]:
    servers: list[Gateway] = []

    def start(handle: Handle) -> Gateway:
        server = Gateway(str(short_dir / "gateway.sock"), handle)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def child(directory: Path, body: str) -> list[str]:
    """The argv of a child script: PRELUDE + ``body``."""
    path = directory / f"child{len(list(directory.glob('child*')))}.py"
    path.write_text(PRELUDE + body, encoding="utf-8")
    return [sys.executable, "-I", str(path)]


def forwarder_argv(socket_path: Path, command: list[str], *options: str) -> list[str]:
    return [
        sys.executable,
        "-I",
        str(SCRIPT),
        "--socket",
        str(socket_path),
        "--port",
        "0",
        "--env",
        "JF_PORT={port}",
        *options,
        "--",
        *command,
    ]


def forward(
    socket_path: Path, command: list[str], *options: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        forwarder_argv(socket_path, command, *options),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.mark.parametrize("code", [0, 3])
def test_round_trip_and_exit_code(
    short_dir: Path, gateway: Callable[[Handle], Gateway], code: int
) -> None:
    server = gateway(echo)
    done = forward(short_dir / "gateway.sock", [*child(short_dir, ECHO_CHILD), "hello", str(code)])
    assert (done.returncode, done.stdout, done.stderr) == (code, "echo:hello", "")
    assert server.connections == 1


def test_a_child_killed_by_a_signal_exits_128_plus_the_signal(short_dir: Path) -> None:
    body = "import signal\nos.kill(os.getpid(), signal.SIGKILL)\n"
    done = forward(short_dir / "gateway.sock", child(short_dir, body))
    assert (done.returncode, done.stdout, done.stderr) == (128 + signal.SIGKILL, "", "")


def test_port_zero_is_substituted_into_env_values(
    short_dir: Path, gateway: Callable[[Handle], Gateway]
) -> None:
    gateway(echo)
    body = (
        "print(os.environ['BASE_URL'], os.environ['TWICE'], os.environ['OWN'])\n"
        "sock = connect()\nsock.sendall(b'x')\nsock.shutdown(socket.SHUT_WR)\n"
        "print(read_all(sock).decode())\n"
    )
    argv = forwarder_argv(
        short_dir / "gateway.sock",
        child(short_dir, body),
        "--env",
        "BASE_URL=http://127.0.0.1:{port}/openai/v1",
        "--env",
        "TWICE={port}-{port}",
    )
    env = {**os.environ, "OWN": "inherited"}
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=TIMEOUT, check=False, env=env
    )
    assert done.returncode == 0, done.stderr
    url, twice, own, reply = done.stdout.split()
    port = url.removeprefix("http://127.0.0.1:").removesuffix("/openai/v1")
    assert port.isdigit()
    assert int(port) > 0
    assert (twice, own, reply) == (f"{port}-{port}", "inherited", "echo:x")


def test_64_concurrent_connections_round_trip(
    short_dir: Path, gateway: Callable[[Handle], Gateway]
) -> None:
    barrier = threading.Barrier(64, timeout=TIMEOUT / 2)

    def echo_when_all_are_open(sock: socket.socket) -> None:
        data = read_all(sock)
        barrier.wait()  # every connection is relayed at once, or this breaks
        sock.sendall(b"echo:" + data)

    server = gateway(echo_when_all_are_open)
    body = (
        "socks = [connect() for _ in range(64)]\n"
        "for i, sock in enumerate(socks):\n"
        "    sock.sendall(b'n%d' % i)\n"
        "    sock.shutdown(socket.SHUT_WR)\n"
        "replies = [read_all(sock) for sock in socks]\n"
        "sys.exit(0 if replies == [b'echo:n%d' % i for i in range(64)] else 1)\n"
    )
    done = forward(short_dir / "gateway.sock", child(short_dir, body))
    assert done.returncode == 0, done.stderr
    assert server.connections == 64


def test_http_keep_alive_uses_one_gateway_connection(
    short_dir: Path, gateway: Callable[[Handle], Gateway]
) -> None:
    def http(sock: socket.socket) -> None:
        stream = sock.makefile("rb")
        while head := stream.readline():
            length = 0
            while (line := stream.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            body = stream.read(length)[::-1]
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            assert head.startswith(b"POST /v1/messages ")

    server = gateway(http)
    body = (
        "import http.client\n"
        "conn = http.client.HTTPConnection('127.0.0.1', PORT, timeout=20)\n"
        "for i in range(3):\n"
        "    conn.request('POST', '/v1/messages', body=f'request {i}')\n"
        "    print(conn.getresponse().read().decode())\n"
    )
    done = forward(short_dir / "gateway.sock", child(short_dir, body))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["0 tseuqer", "1 tseuqer", "2 tseuqer"]
    assert server.connections == 1


def test_a_streamed_response_arrives_piece_by_piece(
    short_dir: Path, gateway: Callable[[Handle], Gateway]
) -> None:
    pieces = [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\n",
        b"data: 2\n\n",
        b"data: [DONE]\n\n",
    ]
    first_seen = threading.Event()
    seen_in_time: list[bool] = []

    def sse(sock: socket.socket) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            request += sock.recv(4096)
        sock.sendall(pieces[0])
        seen_in_time.append(first_seen.wait(TIMEOUT / 2))
        for piece in pieces[1:]:
            time.sleep(0.02)
            sock.sendall(piece)

    gateway(sse)
    body = (
        "sock = connect()\n"
        "sock.sendall(b'POST /v1/messages HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n"
        "got = b''\n"
        "while not got.endswith(b'data: 1\\n\\n'):\n"
        "    got += sock.recv(65536)\n"
        "print('first', flush=True)\n"
        "got += read_all(sock)\n"
        "print(got.hex(), flush=True)\n"
    )
    argv = forwarder_argv(short_dir / "gateway.sock", child(short_dir, body))
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "first\n"
        first_seen.set()
        rest = proc.stdout.read()
        assert proc.wait(TIMEOUT) == 0
    assert seen_in_time == [True]
    assert bytes.fromhex(rest.strip()) == b"".join(pieces)


def test_a_missing_gateway_socket_closes_the_connection(short_dir: Path) -> None:
    body = (
        "sock = connect()\n"
        "try:\n"
        "    sock.sendall(b'GET / HTTP/1.1\\r\\n\\r\\n')\n"
        "    data = sock.recv(1)\n"
        "except TimeoutError:\n"
        "    sys.exit(1)\n"
        "except OSError:\n"
        "    data = b''\n"
        "sys.exit(0 if data == b'' else 1)\n"
    )
    done = forward(short_dir / "missing.sock", child(short_dir, body))
    assert (done.returncode, done.stderr) == (0, "")


def test_the_forwarder_exits_with_the_child_while_a_relay_is_still_open(
    short_dir: Path, gateway: Callable[[Handle], Gateway]
) -> None:
    release = threading.Event()
    gateway(lambda sock: release.wait(TIMEOUT))  # never answers, never closes
    body = "sock = connect()\nsock.sendall(b'x')\nsys.exit(5)\n"
    try:
        done = forward(short_dir / "gateway.sock", child(short_dir, body))
    finally:
        release.set()
    assert (done.returncode, done.stdout, done.stderr) == (5, "", "")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_are_forwarded_to_the_child(
    short_dir: Path, signum: signal.Signals
) -> None:
    body = "import time\nprint('ready', flush=True)\ntime.sleep(60)\n"
    argv = forwarder_argv(short_dir / "gateway.sock", child(short_dir, body))
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signum)
        assert proc.wait(TIMEOUT) == 128 + signum


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--socket", "/s"],
        ["--socket", "/s", "--"],
        ["--", "true"],
        ["--socket", "/s", "--bogus", "1", "--", "true"],
        ["--socket", "/s", "--port", "http", "--", "true"],
        ["--socket", "/s", "--port", "65536", "--", "true"],
        ["--socket", "/s", "--port", "-1", "--", "true"],
        ["--socket", "/s", "--env", "NOEQUALS", "--", "true"],
        ["--socket", "/s", "--env", "=x", "--", "true"],
        ["--socket", "/s", "--port", "--", "true"],
        ["--socket", "/s", "--", "/no/such/agent"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-I", str(SCRIPT), *argv],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("jail_forwarder: ")


def test_a_port_in_use_exits_2_without_starting_the_child(short_dir: Path) -> None:
    marker = short_dir / "started"
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        command = [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]
        done = subprocess.run(
            [sys.executable, "-I", str(SCRIPT), "--socket", "/s", "--port", port, "--", *command],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    assert (done.returncode, done.stdout) == (2, "")
    assert len(done.stderr.splitlines()) == 1
    assert not marker.exists()


def test_parse_args() -> None:
    options = jail_forwarder.parse_args(
        ["--socket", "/g.sock", "--env", "A=x={port}", "--", "agent", "--", "-v"]
    )
    assert options == jail_forwarder.Options("/g.sock", 0, {"A": "x={port}"}, ["agent", "--", "-v"])


def test_the_script_imports_only_the_standard_library() -> None:
    tree = ast.parse(SCRIPT.read_text(encoding="utf-8"))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            assert node.module
            modules.add(node.module.split(".")[0])
        elif isinstance(node, ast.Name):
            assert node.id not in ("__import__", "import_module"), "dynamic import"
    assert "pytest_codegenie_eval" not in modules
    assert modules <= set(sys.stdlib_module_names) | {"__future__"}, modules
