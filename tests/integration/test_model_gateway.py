"""The model gateway end to end: agents in their jails reach a fake upstream on 127.0.0.1
only through the harness's gateway, which holds the key, meters the cost, records and
replays (offline: tests/fakes/llm_upstream.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import copy_stub, newest_report, run_cli
from tests.fakes.llm_upstream import FakeUpstream

pytest.importorskip("aiohttp")

REAL_KEY = "sk-real-key-that-must-stay-outside-0123456789"
PRICES = "version: 1\nmodels:\n  gpt-4o-mini: {input: 1000.0, output: 2000.0}\n"

# asks the model what the stub's question asks, writes the reply (stdlib only)
AGENT = r"""
import json, os, sys, urllib.request
from pathlib import Path
ws = Path(sys.argv[1])
n = int((ws / "question.txt").read_text().split()[-1])
calls = int(os.environ.get("CODEGENIE_CASE_ID") == "beta") + __CALLS__
reply = ""
for _ in range(calls):
    body = json.dumps({"model": "gpt-4o-mini",
                       "messages": [{"role": "user", "content": f"What is {n} plus one?"}]})
    req = urllib.request.Request(os.environ["OPENAI_BASE_URL"] + "/chat/completions",
                                 data=body.encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                 "Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            reply = json.load(resp)["choices"][0]["message"]["content"]
    except urllib.error.HTTPError as exc:
        print("HTTP", exc.code, exc.read().decode()[:300], file=sys.stderr)
        sys.exit(1)
(ws / "answer.txt").write_text(reply + "\n")
(ws / ".codegenie").mkdir(exist_ok=True)
(ws / ".codegenie" / "sut-result.json").write_text(json.dumps({"cost_usd": 0.0}))
"""

# looks everywhere it can for the real key: its environment, every process's environment
# and command line it can read, and the files it can reach
HUNTER = r"""
import os, sys
from pathlib import Path
key = sys.argv[2][::-1].encode()  # given reversed, so no command line holds it
found = []
if any(key in v.encode() for v in os.environ.values()):
    found.append("own environment")
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for part in ("environ", "cmdline"):
            try:
                if key in Path(f"/proc/{pid}/{part}").read_bytes():
                    found.append(f"/proc/{pid}/{part}")
            except OSError:
                pass
for root in ("/tmp", "/home", "/run", "/etc", os.getcwd()):
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                if key in (Path(dirpath) / name).read_bytes():
                    found.append(str(Path(dirpath) / name))
            except OSError:
                pass
print("KEY FOUND IN: " + ", ".join(found) if found else "KEY NOT FOUND")
"""


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(key=REAL_KEY) as up:
        yield up


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy_stub(pytester.path)
    (pytester.path / "prices.yaml").write_text(PRICES)
    monkeypatch.setenv("OPENAI_API_KEY", REAL_KEY)
    return pytester.path


def _agent(root: Path, calls: int = 1) -> str:
    path = root / "agent.py"
    path.write_text(AGENT.replace("__CALLS__", str(calls)))
    return f"--codegenie-sut={sys.executable} {path} {{workspace}}"


def _run(pytester: pytest.Pytester, up: FakeUpstream, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess(
        "-p",
        "no:xdist",
        "-p",
        "no:cacheprovider",
        "--codegenie-bench=stub",
        "--codegenie-no-cache",
        f"--codegenie-upstream=openai={up.url}",
        "--codegenie-prices=prices.yaml",
        *args,
    )


def _cases(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["case_id"]: c for c in report["cases"]}


def test_live_the_gateway_adds_the_key_and_meters_what_the_agent_spends(
    pytester: pytest.Pytester, project: Path, upstream: FakeUpstream
) -> None:
    result = _run(pytester, upstream, _agent(project), "--codegenie-model-gateway=live")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*model gateway: 4 call(s) in 3 attempt(s)*metered cost*"])
    cases = _cases(newest_report(project))
    for case in cases.values():
        usage = case["model_usage"]
        assert case["cost_source"] == "gateway"
        assert case["sut_reported_cost_usd"] == 0.0  # what the agent claimed
        assert usage["calls"] == (2 if case["case_id"] == "beta" else 1)
        assert usage["input_tokens"] > 0
        assert usage["output_tokens"] > 0
        expected = (usage["input_tokens"] * 1000.0 + usage["output_tokens"] * 2000.0) / 1e6
        assert case["cost_usd"] == pytest.approx(expected)
        assert len(usage["transcript_digest"]) == 64
    # the upstream saw the real key, never the agent's placeholder
    assert {r.headers["authorization"] for r in upstream.requests} == {f"Bearer {REAL_KEY}"}
    exported = run_cli(project, "transcripts", "latest:stub")
    assert exported.returncode == 0, exported.stderr
    calls = [json.loads(line) for line in exported.stdout.splitlines()]
    assert sorted(c["case_id"] for c in calls) == ["alpha", "beta", "beta", "gamma"]
    assert all(c["status"] == 200 and "plus one" in c["request"] for c in calls)
    # a transcript changed after it was recorded is refused, never exported as recorded
    stored = next((project / ".codegenie" / "eval" / "transcripts").rglob("*.jsonl"))
    stored.write_text(stored.read_text().replace("plus one", "minus one"))
    altered = run_cli(project, "transcripts", "latest:stub")
    assert altered.returncode == 1
    assert "is missing or altered" in altered.stderr


def test_record_then_replay_with_the_upstream_down_gives_the_same_run(
    pytester: pytest.Pytester, project: Path, upstream: FakeUpstream
) -> None:
    agent = _agent(project)
    cassettes = project / "cassettes"
    recorded = _run(
        pytester,
        upstream,
        agent,
        "--codegenie-model-gateway=record",
        f"--codegenie-cassettes={cassettes}",
    )
    recorded.assert_outcomes(passed=3)
    first = newest_report(project)
    assert sorted(p.name for p in cassettes.rglob("*.json")) == ["attempt-1.json"] * 3
    upstream.stop()
    calls = len(upstream.requests)
    replayed = _run(
        pytester,
        upstream,
        agent,
        "--codegenie-model-gateway=replay",
        f"--codegenie-cassettes={cassettes}",
    )
    replayed.assert_outcomes(passed=3)
    replayed.stdout.fnmatch_lines(["*model gateway:*replayed from cassettes*"])
    second = newest_report(project)
    assert len(upstream.requests) == calls  # nothing reached the upstream
    assert [c["score"] for c in second["cases"]] == [c["score"] for c in first["cases"]]
    assert [c["cost_usd"] for c in second["cases"]] == [c["cost_usd"] for c in first["cases"]]
    assert second["run_id"] == first["run_id"]
    assert all(c["model_usage"]["replayed"] for c in second["cases"])


def test_a_replay_without_a_recorded_answer_fails_typed(
    pytester: pytest.Pytester, project: Path, upstream: FakeUpstream
) -> None:
    cassettes = project / "cassettes"
    cassettes.mkdir()
    result = _run(
        pytester,
        upstream,
        _agent(project),
        "--codegenie-model-gateway=replay",
        f"--codegenie-cassettes={cassettes}",
    )
    result.assert_outcomes(failed=3)
    for case in newest_report(project)["cases"]:
        assert "gateway.cassette_miss" in [fm["code"] for fm in case["failure_modes"]]
    assert upstream.requests == []


def test_upstream_failures_are_infrastructure_not_the_agent(
    pytester: pytest.Pytester, project: Path, upstream: FakeUpstream
) -> None:
    upstream.fail_next = 1000
    result = _run(pytester, upstream, _agent(project), "--codegenie-model-gateway=live")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["*PARTIAL RUN of stub: model calls failed upstream*"])
    report = newest_report(project)
    assert report["incomplete_reason"] == "infrastructure"
    assert report["infrastructure_failures"] == 3
    assert report["run_id"].startswith("partial:")  # never evidence for a tier
    for case in report["cases"]:
        codes = [fm["code"] for fm in case["failure_modes"]]
        assert "gateway.upstream_error" in codes
        assert case["model_usage"]["upstream_errors"] == 1


def test_the_cost_cap_trips_between_model_calls_on_metered_cost(
    pytester: pytest.Pytester, project: Path, upstream: FakeUpstream
) -> None:
    # each call costs 0.007 USD at these prices (5 words in, 1 out); the agent claims 0.0
    # and makes 5 calls a case (beta 6): alpha spends 0.035; beta's third call starts at
    # 0.049, under the cap, and is answered; its fourth is refused
    result = _run(
        pytester,
        upstream,
        _agent(project, calls=5),
        "--codegenie-model-gateway=live",
        "--codegenie-max-cost-usd=0.05",
    )
    assert result.ret != 0
    report = newest_report(project)
    cases = _cases(report)
    assert cases["alpha"]["passed"]
    assert cases["alpha"]["model_usage"]["calls"] == 5
    beta = cases["beta"]
    assert "gateway.cost_cap_reached" in [fm["code"] for fm in beta["failure_modes"]]
    assert beta["model_usage"]["calls"] == 3  # the refused call is not a model call
    spent = sum(c["cost_usd"] for c in report["cases"])
    assert spent == pytest.approx(0.056)  # over the cap by at most the call in flight
    assert cases["gamma"]["status"] == "skipped_cost_cap"
    assert report["incomplete_reason"] == "cost_cap"


@pytest.mark.parametrize("control", [False, True], ids=["gateway", "key-passed-in"])
def test_a_hostile_agent_cannot_find_the_key(
    pytester: pytest.Pytester, project: Path, upstream: FakeUpstream, control: bool
) -> None:
    hunter = project / "hunter.py"
    hunter.write_text(HUNTER)
    args = [f"--codegenie-sut=python {hunter} {{workspace}} {REAL_KEY[::-1]}"]
    args.append(
        "--codegenie-sut-env=OPENAI_API_KEY" if control else "--codegenie-model-gateway=live"
    )
    result = _run(pytester, upstream, "-k", "alpha", *args)
    stdout = newest_report(project)["cases"][0]["stdout_tail"]
    assert result.ret != 0  # the hunter answers nothing
    if control:
        assert "KEY FOUND IN: own environment" in stdout
    else:
        assert "KEY NOT FOUND" in stdout, stdout
    assert os.environ["OPENAI_API_KEY"] == REAL_KEY


AGENTS = Path(__file__).resolve().parents[1] / "fixtures" / "agents"


@pytest.mark.parametrize(
    ("agent", "provider", "stream", "sandbox"),
    [
        ("stdlib_agent", "openai", "1", "bwrap"),
        ("stdlib_agent", "anthropic", "0", "bwrap"),
        ("stdlib_agent", "anthropic", "1", "bwrap"),
        ("sdk_agent", "openai", "1", "bwrap"),
        ("sdk_agent", "openai", "0", "none"),
        ("stdlib_agent", "anthropic", "1", "none"),
    ],
)
def test_unmodified_agents_reach_their_provider_through_the_gateway(
    pytester: pytest.Pytester,
    project: Path,
    upstream: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
    agent: str,
    provider: str,
    stream: str,
    sandbox: str,
) -> None:
    if agent == "sdk_agent":
        pytest.importorskip("openai")
    monkeypatch.setenv("ANTHROPIC_API_KEY", REAL_KEY)
    monkeypatch.setenv("AGENT_PROVIDER", provider)
    monkeypatch.setenv("AGENT_STREAM", stream)
    prices = "version: 1\nmodels:\n  gpt-4o-mini: {input: 1.0, output: 2.0}\n"
    prices += "  claude-sonnet-4-5: {input: 3.0, output: 15.0}\n"
    (project / "prices.yaml").write_text(prices)
    result = _run(
        pytester,
        upstream,
        f"--codegenie-sut={sys.executable} {AGENTS / (agent + '.py')} {{workspace}}",
        f"--codegenie-upstream=anthropic={upstream.url}",
        "--codegenie-model-gateway=live",
        f"--codegenie-sut-sandbox={sandbox}",
        "--codegenie-sut-env=AGENT_PROVIDER",
        "--codegenie-sut-env=AGENT_STREAM",
    )
    result.assert_outcomes(passed=3)
    report = newest_report(project)
    for case in report["cases"]:
        usage = case["model_usage"]
        assert usage["calls"] == 1
        assert usage["input_tokens"] > 0, usage  # metered from the stream's usage too
        assert usage["output_tokens"] == 1
        assert usage["unpriced_calls"] == 0
        assert case["cost_usd"] > 0
        assert case["sut_isolation"] == ("bwrap" if sandbox == "bwrap" else "env-only")
    header = "x-api-key" if provider == "anthropic" else "authorization"
    seen = {r.headers[header] for r in upstream.requests}
    assert seen == ({REAL_KEY} if provider == "anthropic" else {f"Bearer {REAL_KEY}"})


def test_an_unjailed_agent_without_the_attempts_token_is_refused(
    pytester: pytest.Pytester, project: Path, upstream: FakeUpstream
) -> None:
    # a process on the host that found the gateway's port cannot use it without the token
    thief = project / "thief.py"
    thief.write_text(
        AGENT.replace("__CALLS__", "1").replace(
            'os.environ["OPENAI_API_KEY"]', '"codegenie-attempt-guess"'
        )
    )
    result = _run(
        pytester,
        upstream,
        f"--codegenie-sut={sys.executable} {thief} {{workspace}}",
        "--codegenie-model-gateway=live",
        "--codegenie-sut-sandbox=none",
        "-k",
        "alpha",
    )
    result.assert_outcomes(failed=1)
    case = newest_report(project)["cases"][0]
    assert "HTTP 401" in case["stderr_tail"]
    assert upstream.requests == []


@pytest.mark.parametrize("mode", ["-n2", "dask", "local3"])
def test_each_worker_runs_its_own_gateway_that_records_and_replays(
    pytester: pytest.Pytester, project: Path, upstream: FakeUpstream, mode: str
) -> None:
    if mode == "dask" and importlib.util.find_spec("distributed") is None:
        # not importorskip: importing distributed here would leave this process unable to
        # load the plugin in the in-process pytester runs of the tests after this one
        pytest.skip("distributed is not installed")
    fan_out = {
        "-n2": ["-n", "2"],
        "dask": ["--codegenie-executor=dask-local:2"],
        # three attempts at once in one process, through its one gateway
        "local3": ["--codegenie-executor=local:3"],
    }[mode]
    cassettes = project / "cassettes"

    def run(gateway: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess(
            "-p",
            "no:cacheprovider",
            *fan_out,
            "--codegenie-bench=stub",
            "--codegenie-no-cache",
            f"--codegenie-upstream=openai={upstream.url}",
            "--codegenie-prices=prices.yaml",
            _agent(project),
            f"--codegenie-model-gateway={gateway}",
            f"--codegenie-cassettes={cassettes}",
            timeout=180,
        )

    run("record").assert_outcomes(passed=3)
    report = newest_report(project)
    assert all(c["cost_source"] == "gateway" for c in report["cases"])
    assert sum(c["model_usage"]["calls"] for c in report["cases"]) == 4
    assert report["total_cost_usd"] > 0
    upstream.stop()
    run("replay").assert_outcomes(passed=3)
    replayed = newest_report(project)
    assert replayed["run_id"] == report["run_id"]
    assert replayed["total_cost_usd"] == pytest.approx(report["total_cost_usd"])
    assert all(c["model_usage"]["replayed"] for c in replayed["cases"])
    digests = [c["model_usage"]["transcript_digest"] for c in report["cases"]]
    stored = project / ".codegenie" / "eval" / "transcripts"
    assert all((stored / d[:2] / f"{d}.jsonl").is_file() for d in digests)


@pytest.mark.parametrize(
    ("limit", "expected_calls"),
    [("--codegenie-gateway-max-calls=2", 2), ("--codegenie-gateway-max-tokens=10", 2)],
)
def test_a_runaway_agent_is_stopped_by_the_attempts_limits(
    pytester: pytest.Pytester,
    project: Path,
    upstream: FakeUpstream,
    limit: str,
    expected_calls: int,
) -> None:
    # 6 tokens a call (5 in, 1 out): the third call passes either limit
    result = _run(
        pytester,
        upstream,
        _agent(project, calls=5),
        "--codegenie-model-gateway=live",
        limit,
        "-k",
        "alpha",
    )
    result.assert_outcomes(failed=1)
    case = newest_report(project)["cases"][0]
    assert "gateway.limit_reached" in [fm["code"] for fm in case["failure_modes"]]
    assert case["model_usage"]["calls"] == expected_calls
    assert len(upstream.requests) == expected_calls


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--codegenie-model-gateway=live", "--codegenie-sut-env=OPENAI_API_KEY"],
            "*--codegenie-sut-env=OPENAI_API_KEY with --codegenie-model-gateway=live*",
        ),
        (["--codegenie-model-gateway=record"], "*needs --codegenie-cassettes=DIR*"),
        (
            ["--codegenie-model-gateway=live", "--codegenie-max-cost-usd=1", "--codegenie-prices="],
            "*needs a price table*",
        ),
        (
            ["--codegenie-model-gateway=live", "--codegenie-prices=bad.yaml"],
            "*--codegenie-prices: *bad.yaml: models.m.input*",
        ),
        (
            ["--codegenie-model-gateway=live", "--codegenie-gateway-max-calls=0"],
            "*--codegenie-gateway-max-calls must be a positive whole number*",
        ),
        (["--codegenie-upstream=no-equals-sign"], "*expected NAME=URL*"),
    ],
)
def test_gateway_usage_errors_stop_the_run_before_any_agent_starts(
    pytester: pytest.Pytester,
    project: Path,
    upstream: FakeUpstream,
    args: list[str],
    message: str,
) -> None:
    (project / "bad.yaml").write_text('version: 1\nmodels:\n  m: {input: "cheap", output: 1.0}\n')
    result = pytester.runpytest_inprocess(
        "-p", "no:xdist", "--codegenie-bench=stub", _agent(project), *args
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert upstream.requests == []


# opens HTTPS-style tunnels through its proxy variable, as pip or npm would
TUNNELER = r"""
import os, socket, sys
from urllib.parse import urlsplit
proxy = urlsplit(os.environ["HTTPS_PROXY"])
for target in sys.argv[2:]:
    s = socket.create_connection((proxy.hostname, proxy.port), timeout=10)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    status = s.recv(4096).split(b"\r\n", 1)[0].decode()
    echoed = ""
    if " 200 " in status:
        s.sendall(b"ping\n")
        echoed = s.recv(100).decode().strip()
    print(f"{target} -> {status} {echoed}")
    s.close()
"""


@pytest.fixture
def echo_server() -> Iterator[int]:
    import socketserver
    import threading

    class Echo(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(b"echo " + self.rfile.readline())

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield int(server.server_address[1])
        server.shutdown()


def test_a_jailed_agent_reaches_only_the_allowed_hosts_through_the_gateway(
    pytester: pytest.Pytester, project: Path, upstream: FakeUpstream, echo_server: int
) -> None:
    tunneler = project / "tunneler.py"
    tunneler.write_text(TUNNELER)
    allowed = f"127.0.0.1:{echo_server}"
    result = _run(
        pytester,
        upstream,
        f"--codegenie-sut={sys.executable} {tunneler} {{workspace}} {allowed} pypi.org:443",
        "--codegenie-model-gateway=live",
        f"--codegenie-sut-egress={allowed}",
        "-k",
        "alpha",
    )
    result.assert_outcomes(failed=1)  # the tunneler answers no question
    case = newest_report(project)["cases"][0]
    assert f"{allowed} -> HTTP/1.1 200 Connection established echo ping" in case["stdout_tail"]
    assert "pypi.org:443 -> HTTP/1.1 403" in case["stdout_tail"]
    assert case["model_usage"]["egress_allowed"] == [allowed]
    assert case["model_usage"]["egress_refused"] == ["pypi.org:443"]
    assert case["sut_network"] == "none"


def test_egress_without_the_gateway_is_a_usage_error(
    pytester: pytest.Pytester, project: Path
) -> None:
    result = pytester.runpytest_inprocess(
        "-p", "no:xdist", "--codegenie-bench=stub", "--codegenie-sut-egress=pypi.org"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--codegenie-sut-egress needs --codegenie-model-gateway*"])


def test_a_deep_temporary_directory_still_gets_a_socket_the_jail_can_reach(
    pytester: pytest.Pytester,
    project: Path,
    upstream: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    import tempfile

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))  # every run directory lands here
    result = _run(
        pytester, upstream, _agent(project), "--codegenie-model-gateway=live", "-k", "alpha"
    )
    result.assert_outcomes(passed=1)
    assert newest_report(project)["cases"][0]["model_usage"]["calls"] == 1
    assert not list(Path("/tmp").glob("cg-gw-*")) or all(
        p.stat().st_mtime < deep.stat().st_mtime for p in Path("/tmp").glob("cg-gw-*")
    )  # the short socket directory is removed with the attempt


def test_under_a_cap_a_model_without_a_price_is_refused_not_free(
    pytester: pytest.Pytester, project: Path, upstream: FakeUpstream
) -> None:
    (project / "prices.yaml").write_text(
        "version: 1\nmodels:\n  other-model: {input: 1, output: 1}\n"
    )
    result = _run(
        pytester,
        upstream,
        _agent(project),
        "--codegenie-model-gateway=live",
        "--codegenie-max-cost-usd=10",
        "-k",
        "alpha",
    )
    result.assert_outcomes(failed=1)
    case = newest_report(project)["cases"][0]
    assert "gateway.unpriced_model" in [fm["code"] for fm in case["failure_modes"]]
    assert "HTTP 403" in case["stderr_tail"]
    assert upstream.requests == []
