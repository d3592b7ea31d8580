"""The model gateway's cost, against the fake upstream of the tests on 127.0.0.1. Prints
figures, asserts nothing.

1. Added latency: ``--calls`` sequential non-streamed Chat Completions POSTs per path, from
   a client process over a kept-alive ``http.client`` connection, alternating in blocks
   between the upstream directly, the gateway's token-guarded port (an unjailed SUT) and
   the gateway's Unix socket (a jailed SUT, without the in-jail forwarder); p50, p95 and
   the p50 added (goal <= 2 ms).
2. Throughput of one gateway: ``--clients`` client processes, each with its own kept-alive
   connection, calling for ``--seconds`` (goal >= 500 calls/s); the upstream alone beside.
3. A recorded bench replayed with the upstream down: ``--cases`` attempts of one call
   recorded, the upstream stopped, then all replayed twice in a fresh process (cold: the
   process's first gateway use, cassettes read fresh; then warm): open + call + close.

The upstream runs in a process of its own, the gateway in this one.

    .venv/bin/python benchmarks/bench_model_gateway.py [--calls 500] [--clients 8] \
        [--seconds 5] [--cases 100]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import socket
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `tests.fakes` of a checkout
from pytest_codegenie_eval.execution.gateway.access import attempt_gateway
from pytest_codegenie_eval.execution.gateway.settings import (
    GatewayMode,
    GatewaySettings,
    parse_upstream,
    with_upstreams,
)
from tests.fakes.llm_upstream import FakeUpstream

KEY = "sk-bench"
CTX = mp.get_context("spawn")  # no fork of a process whose gateway thread is running


class Target(NamedTuple):
    name: str
    path: str
    token: str
    port: int | None = None
    socket_path: str | None = None


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def _connect(target: Target) -> http.client.HTTPConnection:
    if target.socket_path is not None:
        return UnixHTTPConnection(target.socket_path)
    return http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)


def _body(n: int = 41) -> bytes:
    message = {"role": "user", "content": f"What is {n} plus one?"}
    return json.dumps({"model": "gpt-4o-mini", "messages": [message]}).encode()


def _call(conn: http.client.HTTPConnection, target: Target, body: bytes) -> int:
    headers = {"Authorization": f"Bearer {target.token}", "Content-Type": "application/json"}
    conn.request("POST", target.path, body=body, headers=headers)
    reply = conn.getresponse()
    reply.read()
    return reply.status


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def _ms(values: list[float]) -> str:
    return f"p50 {_p(values, 0.5) * 1000:6.2f} ms, p95 {_p(values, 0.95) * 1000:6.2f} ms"


def _serve_upstream(port_out: Connection, stop: Event) -> None:
    with FakeUpstream(key=KEY) as up:
        port_out.send(up.port)
        stop.wait()


def _latency_client(targets: list[Target], calls: int, block: int) -> dict[str, list[float]]:
    conns = {t.name: _connect(t) for t in targets}
    times: dict[str, list[float]] = {t.name: [] for t in targets}
    body = _body()
    for t in targets:  # warm-up: connections open, first-call paths taken
        for _ in range(20):
            _call(conns[t.name], t, body)
    done = 0
    while done < calls:
        n = min(block, calls - done)
        for t in targets:
            for _ in range(n):
                started = time.perf_counter()
                status = _call(conns[t.name], t, body)
                times[t.name].append(time.perf_counter() - started if status == 200 else -1.0)
        done += n
    return times


def _throughput_client(target: Target, seconds: float, barrier: Barrier, out: Queue[int]) -> None:
    conn, body = _connect(target), _body()
    for _ in range(5):
        _call(conn, target, body)
    barrier.wait()
    ok, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        ok += _call(conn, target, body) == 200
    out.put(ok)


def throughput(target: Target, clients: int, seconds: float) -> float:
    barrier, out = CTX.Barrier(clients + 1), CTX.Queue()
    procs = [
        CTX.Process(target=_throughput_client, args=(target, seconds, barrier, out))
        for _ in range(clients)
    ]
    for proc in procs:
        proc.start()
    barrier.wait()
    total: int = sum(out.get() for _ in procs)
    for proc in procs:
        proc.join()
    return total / seconds


def _settings(mode: GatewayMode, url: str, cassettes: Path | None = None) -> GatewaySettings:
    upstreams = with_upstreams((parse_upstream("openai=" + url),))
    return GatewaySettings(mode=mode, upstreams=upstreams, cassette_dir=cassettes)


def run_attempts(settings: GatewaySettings, cases: int, run_dir: Path) -> tuple[list[float], int]:
    """Per attempt: open, one call over a new connection, close; and how many got 200."""
    times, ok = [], 0
    for i in range(cases):
        started = time.perf_counter()
        with attempt_gateway(
            settings, task_class="bench", case_id=f"case-{i:03d}", repeat=1, run_dir=run_dir,
            jailed=False,
        ) as (access, _):  # fmt: skip
            target = Target("gw", "/openai/v1/chat/completions", access.token, access.port)
            conn = _connect(target)
            ok += _call(conn, target, _body(i)) == 200
            conn.close()
        times.append(time.perf_counter() - started)
    return times, ok


def _replay_passes(
    cassettes: Path, dead_url: str, cases: int, run_dir: Path
) -> list[tuple[list[float], int]]:
    settings = _settings("replay", dead_url, cassettes)
    return [run_attempts(settings, cases, run_dir) for _ in range(2)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500, help="sequential calls per path")
    parser.add_argument("--block", type=int, default=25, help="calls per path in a row")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--cases", type=int, default=100)
    args = parser.parse_args()
    os.environ["OPENAI_API_KEY"] = KEY  # the harness's key, which the gateway adds
    cpus = len(os.sched_getaffinity(0))
    print(f"machine: {cpus} CPU(s) usable ({os.cpu_count()} present); upstream in its own "
          "process, gateway in this one, clients in others")  # fmt: skip
    table: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        run_dir, cassettes = Path(tmp) / "run", Path(tmp) / "cassettes"
        run_dir.mkdir()
        port_in, port_out = CTX.Pipe(duplex=False)
        stop = CTX.Event()
        upstream = CTX.Process(target=_serve_upstream, args=(port_out, stop), daemon=True)
        upstream.start()
        url = f"http://127.0.0.1:{port_in.recv()}"
        live = _settings("live", url)
        with (
            attempt_gateway(live, task_class="bench", case_id="tcp", repeat=1, run_dir=run_dir,
                            jailed=False) as (tcp, _),
            attempt_gateway(live, task_class="bench", case_id="unix", repeat=1, run_dir=run_dir,
                            jailed=True) as (unix, _),
        ):  # fmt: skip
            gw_path = "/openai/v1/chat/completions"
            direct = Target("direct", "/v1/chat/completions", KEY, int(url.rsplit(":", 1)[1]))
            via_tcp = Target("gateway (port)", gw_path, tcp.token, tcp.port)
            via_unix = Target("gateway (socket)", gw_path, unix.token, None, str(unix.socket_path))
            with CTX.Pool(1) as pool:
                times = pool.apply(
                    _latency_client, ([direct, via_tcp, via_unix], args.calls, args.block)
                )
            print(f"\n1. latency, {args.calls} sequential calls per path, blocks of {args.block}")
            base = _p(times["direct"], 0.5)
            for name, values in times.items():
                failed = sum(1 for v in values if v < 0)
                good = [v for v in values if v >= 0]
                added = (_p(good, 0.5) - base) * 1000
                print(f"   {name:17} {_ms(good)}, p50 added {added:5.2f} ms, non-200: {failed}")
                if name != "direct":
                    table.append((f"p50 added, {name}", f"{added:.2f} ms", "<= 2 ms"))
            print("   (the socket path is the jailed SUT's, measured without the forwarder that "
                  "relays to it inside the jail)")  # fmt: skip
            print(f"\n2. throughput, {args.clients} client processes x {args.seconds:g} s")
            alone = throughput(direct, args.clients, args.seconds)
            through = throughput(via_tcp, args.clients, args.seconds)
            print(f"   upstream alone:  {alone:5.0f} calls/s")
            shared = f"{cpus} CPU(s) shared by clients, gateway and upstream"
            print(f"   through gateway: {through:5.0f} calls/s ({through / alone:.2f}x; {shared})")
            table.append(("throughput through one gateway", f"{through:.0f} calls/s", ">= 500"))
        rec_times, rec_ok = run_attempts(_settings("record", url, cassettes), args.cases, run_dir)
        stop.set()
        upstream.join()
        print(f"\n3. {args.cases} attempts of one call (open + call + close), upstream stopped "
              "after recording, replayed twice in a fresh process")  # fmt: skip
        print(f"   record:      {_ms(rec_times)}, total {sum(rec_times):.2f} s, "
              f"{rec_ok}/{args.cases} got 200")  # fmt: skip
        with CTX.Pool(1) as pool:
            passes = pool.apply(_replay_passes, (cassettes, url, args.cases, run_dir))
        for label, (values, ok) in zip(("cold", "warm"), passes, strict=True):
            print(f"   replay {label}: {_ms(values)}, first {values[0] * 1000:.2f} ms, "
                  f"total {sum(values):.2f} s, {ok}/{args.cases} got 200")  # fmt: skip
            table.append((f"replay {label}, {args.cases} attempts", f"{sum(values):.2f} s", "-"))
            table.append((f"replay {label}, p50 per attempt", f"{_p(values, 0.5) * 1000:.2f} ms",
                          "-"))  # fmt: skip
    print("\n" + "\n".join(f"{m:38} {f:>14}   goal {g}" for m, f, g in table))


if __name__ == "__main__":
    main()
