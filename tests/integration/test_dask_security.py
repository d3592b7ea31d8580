"""The Dask executor against an agent that shares the host's network (real LocalClusters).

The attack: an agent run with ``--codegenie-sut-network=host`` finds the scheduler's port
(``/proc/net/tcp``), connects with ``distributed`` and runs code inside the controller
with ``Client.run_on_scheduler``. Here the agent is a separate Python process that knows
only the scheduler's address.

- With security switched off (``insecure_for_tests``: plain TCP and Dask's default HTTP
  pages, as dask-local had them before), it succeeds: the code runs in this test process,
  which is the controller, and the cluster's pages answer anyone.
- With the defaults (TLS, credentials made for the session), it fails: with no
  credentials, over plain ``tcp://``, and over TLS without a certificate or with one it
  made itself (the scheduler's TLS alert); the session's own certificate, the control, is
  accepted. No HTTP page of the cluster answers, and nothing listens off loopback.
- ``dask+tls://`` runs a session on a team's TLS scheduler with the credentials of Dask's
  config; without them, or with a plain-TCP scheduler and a SUT on the host's network, the
  session is a usage error and no case runs.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_codegenie_eval.cli import main as cli
from pytest_codegenie_eval.execution.executors.dask_controller import DaskRunner, remote_security
from pytest_codegenie_eval.execution.executors.spec import (
    ExecutorRefused,
    ExecutorSpec,
    ExecutorUnavailable,
    check_sut_network,
    parse_executor,
)
from tests.conftest import newest_report, run_cli

distributed: Any = pytest.importorskip("distributed")
pytest.importorskip("cryptography")

RUN = ("run", "-p", "no:cacheprovider")
# The agent: the ways it might connect to the scheduler at argv[1], one JSON line each.
# The raw TLS tries do not check the server's certificate and send nothing: a server that
# accepts their certificate (or none) starts to speak Dask's protocol, or waits ("accepted");
# one that refuses it fails the handshake, sends an alert or hangs up.
AGENT = """
import json, os, socket, ssl, sys, tempfile
from distributed import Client
from distributed.security import Security

address = sys.argv[1]
host, port = address.split("://", 1)[1].rsplit(":", 1)


def client(target):
    with Client(target, timeout=2) as client:
        return {"pid": client.run_on_scheduler(os.getpid)}


def raw_tls(cert):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if cert:
        context.load_cert_chain(cert)
    with socket.create_connection((host, int(port)), timeout=3) as sock:
        with context.wrap_socket(sock) as tls:
            try:
                data = tls.recv(1)
            except TimeoutError:
                return {"accepted": True}
    if data:  # the server's first message of Dask's protocol
        return {"accepted": True}
    raise ConnectionError("the server hung up")


def own_certificate():
    made = Security.temporary()
    path = os.path.join(tempfile.mkdtemp(), "own.pem")
    with open(path, "w") as f:
        f.write(made.tls_client_cert + made.tls_client_key)
    return path


tries = {
    "no credentials": lambda: client(address),
    "plain tcp": lambda: client(f"tcp://{host}:{port}"),
    "tls without a certificate": lambda: raw_tls(None),
    "tls with a certificate of its own": lambda: raw_tls(own_certificate()),
    "tls with the session's certificate": lambda: raw_tls(os.environ["SESSION_PEM"]),
}
for name in sys.argv[2:]:
    try:
        outcome = tries[name]()
    except Exception as exc:
        outcome = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps({"try": name, **outcome}))
"""
REFUSED = (
    "no credentials",
    "plain tcp",
    "tls without a certificate",
    "tls with a certificate of its own",
)
# Pages that Dask's default HTTP routes serve to anyone who reaches the port.
PAGES = ("/info/main/workers.html", "/info/main/logs.html", "/json/identity.json", "/health")


def _agent(
    tmp_path: Path, address: str, *tries: str, session_pem: Path | None = None
) -> dict[str, dict[str, Any]]:
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    env = {**os.environ, "SESSION_PEM": str(session_pem or "")}
    done = subprocess.run(
        [sys.executable, str(script), address, *tries],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {line["try"]: line for line in lines}


def _status(port: int, path: str) -> int:
    """GET ``path`` from 127.0.0.1:port (http.client: no proxy in the way)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def _start(*, insecure: bool) -> DaskRunner:
    return DaskRunner(
        ExecutorSpec("dask-local", workers=1),
        max_cost_usd=None,
        run_scope="security",
        insecure_for_tests=insecure,
    )


@pytest.fixture(scope="module")
def secure() -> Iterator[DaskRunner]:
    runner = _start(insecure=False)
    yield runner
    runner.close()


def test_an_agent_runs_code_in_the_controller_when_security_is_off(tmp_path: Path) -> None:
    runner = _start(insecure=True)
    try:
        address = str(runner.client.scheduler.address)
        assert address.startswith("tcp://127.0.0.1:")
        got = _agent(tmp_path, address, "no credentials")
        # the agent's code ran in this process: the controller, next to the answer keys
        assert got["no credentials"].get("pid") == os.getpid(), got
        port = runner.cluster.scheduler.http_server.port
        assert [_status(port, page) for page in PAGES] == [200] * len(PAGES)
    finally:
        runner.close()


def test_an_agent_cannot_reach_the_default_cluster(tmp_path: Path, secure: DaskRunner) -> None:
    address = str(secure.client.scheduler.address)
    assert address.startswith("tls://127.0.0.1:")
    # the control, which the agent never has: the session's own certificate is accepted
    session_pem = tmp_path / "session.pem"
    credentials = secure.client.security
    session_pem.write_text(credentials.tls_client_cert + credentials.tls_client_key)
    control = "tls with the session's certificate"
    got = _agent(tmp_path, address, *REFUSED, control, session_pem=session_pem)
    assert got.pop(control) == {"try": control, "accepted": True}
    assert sorted(got) == sorted(REFUSED)
    for outcome in got.values():
        assert set(outcome) == {"try", "error"}, outcome
        assert not outcome["error"].startswith(("ImportError", "NameError", "KeyError")), outcome
    # the server itself refuses a client without the session's certificate: a TLS alert
    for name in ("tls without a certificate", "tls with a certificate of its own"):
        assert got[name]["error"].startswith("SSLError"), got[name]
    # the controller's own client, with the session's credentials, gets through
    assert secure.client.run_on_scheduler(os.getpid) == os.getpid()


def test_no_page_of_the_default_cluster_answers_and_nothing_listens_off_loopback(
    secure: DaskRunner,
) -> None:
    psutil: Any = pytest.importorskip("psutil")
    scheduler = secure.cluster.scheduler
    assert "127.0.0.1" in secure.cluster.dashboard_link
    servers = scheduler.services.values()
    assert [s.address for s in servers] == ["127.0.0.1"] * len(servers)
    assert [_status(scheduler.http_server.port, page) for page in PAGES] == [404] * len(PAGES)
    # every socket the controller and the worker processes listen on: loopback only
    pids = [os.getpid(), *secure.client.run(os.getpid).values()]
    listening = [
        (pid, conn.laddr)
        for pid in pids
        for conn in psutil.Process(pid).net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    ]
    ports = {addr.port for _, addr in listening}
    assert scheduler.http_server.port in ports  # the check sees the cluster's sockets
    assert int(str(secure.client.scheduler.address).rsplit(":", 1)[1]) in ports
    assert [(pid, a) for pid, a in listening if a.ip not in ("127.0.0.1", "::1")] == []


def test_tls_addresses_and_the_plain_tcp_refusal() -> None:
    assert parse_executor("dask+tls://10.0.0.5:8786").address == "tls://10.0.0.5:8786"
    assert parse_executor("tls://[::1]:8786").address == "tls://[::1]:8786"
    assert parse_executor("dask://10.0.0.5:8786").plain_tcp
    assert not parse_executor("dask+tls://10.0.0.5:8786").plain_tcp
    assert not parse_executor("dask-local").plain_tcp
    with pytest.raises(ValueError, match="dask\\+tls://HOST:PORT"):
        parse_executor("dask://tls://10.0.0.5:8786")
    plain = parse_executor("dask://10.0.0.5:8786")
    with pytest.raises(ExecutorRefused, match="could reach this plain-TCP Dask scheduler"):
        check_sut_network(plain, "host")
    check_sut_network(plain, "none")
    check_sut_network(parse_executor("dask+tls://10.0.0.5:8786"), "host")
    check_sut_network(parse_executor("dask-local:2"), "host")


_NO_TLS = {
    "distributed.comm.tls.ca-file": None,
    "distributed.comm.tls.client.cert": None,
    "distributed.comm.tls.client.key": None,
}


def test_a_tls_scheduler_needs_credentials_in_dasks_config(tmp_path: Path) -> None:
    import dask

    spec = parse_executor("dask+tls://127.0.0.1:9")
    with dask.config.set(_NO_TLS), pytest.raises(ExecutorUnavailable) as missing:
        remote_security(spec)
    assert "DASK_DISTRIBUTED__COMM__TLS__CA_FILE" in str(missing.value)
    assert "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT" in str(missing.value)
    cert = tmp_path / "client.pem"
    cert.write_text("not checked here")
    gone = {**_NO_TLS, "distributed.comm.tls.ca-file": str(tmp_path / "nowhere.pem")}
    gone["distributed.comm.tls.client.cert"] = str(cert)
    with dask.config.set(gone), pytest.raises(ExecutorUnavailable, match=r"nowhere\.pem"):
        remote_security(spec)


def test_a_tls_address_without_credentials_is_a_usage_error(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    import dask

    with dask.config.set(_NO_TLS):
        done = pytester.runpytest_inprocess(
            "-p",
            "no:cacheprovider",
            "--codegenie-bench=stub",
            "--codegenie-executor=dask+tls://127.0.0.1:9",
        )
    assert done.ret == pytest.ExitCode.USAGE_ERROR
    assert "a TLS scheduler needs this client's TLS credentials" in done.stderr.str()
    assert not list((pytester.path / ".codegenie" / "eval").glob("runs/*"))


def test_a_plain_tcp_scheduler_with_the_sut_on_the_host_network_is_refused(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    from distributed.diagnostics.plugin import SchedulerPlugin

    class Tasks(SchedulerPlugin):
        """Records every task the scheduler is given."""

        name = "codegenie-test-tasks"

        def __init__(self) -> None:
            self.keys: list[str] = []

        def update_graph(self, scheduler: Any, *, keys: Any, **kwargs: Any) -> None:
            self.keys.extend(str(k) for k in keys)

    tasks = Tasks()
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
    ) as cluster:
        cluster.scheduler.add_plugin(tasks)
        address = str(cluster.scheduler_address).replace("tcp://", "dask://")
        done = pytester.runpytest_inprocess(
            "-p",
            "no:cacheprovider",
            "--codegenie-bench=stub",
            f"--codegenie-executor={address}",
            "--codegenie-sut-network=host",
        )
    assert done.ret == pytest.ExitCode.USAGE_ERROR
    stderr = done.stderr.str()
    assert "--codegenie-sut-network=host: the agent shares the host's network" in stderr
    assert "could reach this plain-TCP Dask scheduler" in stderr
    assert "dask+tls://127.0.0.1:" in stderr  # what to use instead
    assert tasks.keys == []  # no case reached the cluster
    assert "passed" not in done.stdout.str()
    assert not list((pytester.path / ".codegenie" / "eval").glob("runs/*"))


def test_a_teams_tls_scheduler_runs_the_cases_with_dasks_tls_config(
    pytester: pytest.Pytester, stub_bench: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dask+tls://`` with the client credentials in ``DASK_DISTRIBUTED__COMM__TLS__…``,
    the SUT on the host's network: accepted, and the cases run on that cluster."""
    from distributed.security import Security

    make: Any = Security
    security = make.temporary()
    files = {"ca.pem": security.tls_ca_file, "client.pem": security.tls_client_cert}
    files["client-key.pem"] = security.tls_client_key
    for name, text in files.items():
        (pytester.path / name).write_text(text)
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TLS__CA_FILE", str(pytester.path / "ca.pem"))
    monkeypatch.setenv(
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT", str(pytester.path / "client.pem")
    )
    monkeypatch.setenv(
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY", str(pytester.path / "client-key.pem")
    )
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        protocol="tls://",
        security=security,
        dashboard_address="127.0.0.1:0",
    ) as cluster:
        address = str(cluster.scheduler_address)
        assert address.startswith("tls://")
        done = run_cli(
            pytester.path,
            *RUN,
            "--codegenie-bench=stub",
            f"--codegenie-executor={address.replace('tls://', 'dask+tls://')}",
            "--codegenie-sut-network=host",
        )
        assert done.returncode == cli.EXIT_OK, done.stdout[-3000:] + done.stderr[-2000:]
        workers = set(cluster.scheduler_info["workers"])
    report = newest_report(pytester.path)
    assert report["passed_count"] == 3
    ran_on = {t["worker"] for c in report["cases"] for t in c["executor_attempts"]}
    assert ran_on
    assert ran_on <= workers
