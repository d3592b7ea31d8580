"""The agent under test cannot game its score: each hostile SUT below is run through the
plugin twice, with ``--codegenie-sut-sandbox=none`` (the attack must work, or the test
proves nothing) and with the bubblewrap sandbox (the attack must fail).

The project is laid out as a user's would be: the stub bench and the state directory live
inside the pytest rootdir, which is also the harness's cwd. The spy SUT
(``tests/fixtures/hostile_suts/spy.py``) discovers what it can on its own (its ancestors'
``/proc`` entries, a walk of the filesystem) and reads its targets from a plan file, never
from its command line (the sandbox binds every file a command names).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_codegenie_eval.execution.isolation.sandbox import bwrap_status
from tests.adv.procs import alive, run_measuring_rss
from tests.conftest import copy_stub, newest_report, run_stub

SPY = Path(__file__).resolve().parents[1] / "fixtures" / "hostile_suts" / "spy.py"
MODES = ["none", "bwrap"]

if not bwrap_status().usable and not os.environ.get("CI"):
    pytest.skip(f"the SUT sandbox is unavailable: {bwrap_status().reason}", allow_module_level=True)


class Project:
    """A user's project in a pytester directory: bench/stub, state dir, a secret in the
    harness's environment, and a HOME with credentials in it."""

    def __init__(self, pytester: pytest.Pytester, plan_dir: Path, secret: str) -> None:
        self.pytester = pytester
        self.root = pytester.path
        self.bench = copy_stub(self.root)
        self.state = self.root / ".codegenie" / "eval"
        self.plan_dir = plan_dir
        self.secret = secret
        self.runs = 0

    def run(
        self, attacks: list[str], mode: str, *args: str, **plan: Any
    ) -> tuple[pytest.RunResult, dict[str, dict[str, Any]]]:
        """Run the stub bench with the spy; returns the result and per case its record
        plus ``spy`` (what the spy reported)."""
        self.runs += 1
        plan_file = self.plan_dir / f"plan-{self.runs}.json"
        body = {"attacks": attacks, "secret": self.secret, "rootdir": str(self.root), **plan}
        plan_file.write_text(json.dumps(body))
        command = shlex.join([sys.executable, "-I", str(SPY)]) + f" {{workspace}} {plan_file}"
        result = run_stub(
            self.pytester,
            f"--codegenie-sut={command}",
            f"--codegenie-sut-sandbox={mode}",
            "--codegenie-no-cache",
            *args,
        )
        return result, self.cases()

    def cases(self) -> dict[str, dict[str, Any]]:
        report = newest_report(self.root)
        cases = {}
        for case in report["cases"]:
            spy_lines = [
                line for line in case["stdout_tail"].splitlines() if line.startswith('{"spy"')
            ]
            case["spy"] = json.loads(spy_lines[-1])["spy"] if spy_lines else {}
            cases[case["case_id"]] = case
        return cases


@pytest.fixture
def project(
    pytester: pytest.Pytester,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Project:
    secret = f"sandbox-sentinel-{secrets.token_hex(16)}"
    home = tmp_path_factory.mktemp("harness-home")
    (home / ".aws").mkdir()
    (home / ".aws" / "credentials").write_text(f"aws_secret_access_key = {secret}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CODEGENIE_TEST_SECRET", secret)
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    return Project(pytester, tmp_path_factory.mktemp("plans"), secret)


def _codes(case: dict[str, Any]) -> list[str]:
    return [fm["code"] for fm in case["failure_modes"]]


# -- the answer key ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_sut_cannot_find_and_copy_the_answer_key(project: Project, mode: str) -> None:
    result, cases = project.run(["steal-answer"], mode)
    stolen = [case["spy"]["steal-answer"]["ok"] for case in cases.values()]
    if mode == "none":
        # live: the do-nothing agent passes every case with the answer key
        assert stolen == [True, True, True]
        result.assert_outcomes(passed=3)
        assert {case["sut_isolation"] for case in cases.values()} == {"env-only"}
    else:
        assert stolen == [False, False, False]
        result.assert_outcomes(failed=3)
        assert {case["sut_isolation"] for case in cases.values()} == {"bwrap"}
        result.stdout.fnmatch_lines(["*sut isolation: bwrap (network none*"])


@pytest.mark.parametrize("mode", MODES)
def test_walking_the_filesystem_finds_no_case(project: Project, mode: str) -> None:
    _result, cases = project.run(["walk-root"], mode, "-k", "alpha")
    assert cases["alpha"]["spy"]["walk-root"]["ok"] is (mode == "none")


@pytest.mark.parametrize("mode", MODES)
def test_baseline_sut_never_sees_the_cases_beside_it(project: Project, mode: str) -> None:
    # a "baseline" that reads the answer from the cases/ folder next to its own script
    (project.bench / "baseline_sut.py").write_text(
        "import os, shutil, sys\n"
        "from pathlib import Path\n"
        "case = os.environ['CODEGENIE_CASE_ID']\n"
        "key = Path(__file__).parent / 'cases' / case / 'expected' / 'answer.txt'\n"
        "shutil.copy(key, Path(sys.argv[1]) / 'answer.txt')\n"
    )
    result = run_stub(project.pytester, f"--codegenie-sut-sandbox={mode}")
    if mode == "none":
        result.assert_outcomes(passed=3)
    else:
        result.assert_outcomes(failed=3)
        result.stdout.fnmatch_lines(["*No such file or directory*cases*"])


# -- the harness's process, environment and files ------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_sut_cannot_read_its_ancestors_or_the_harness_environment(
    project: Project, mode: str
) -> None:
    _result, cases = project.run(["proc-ancestors", "env-secret"], mode, "-k", "alpha")
    spy = cases["alpha"]["spy"]
    # the environment allowlist holds in both modes; /proc only falls to the sandbox
    assert spy["env-secret"]["ok"] is False, spy["env-secret"]
    if mode == "none":
        assert spy["proc-ancestors"]["ok"] is True
        assert "environ" in spy["proc-ancestors"]["detail"]
    else:
        assert spy["proc-ancestors"] == {"ok": False, "detail": ""}


def test_env_allowlist_attack_is_live_through_the_hook(project: Project) -> None:
    # an in-process agent shares the harness's environment: what the allowlist prevents
    project.pytester.makeconftest(
        "import json, os\n"
        "def pytest_codegenie_eval_run_sut(case, workspace, task_class, env):\n"
        "    found = 'CODEGENIE_TEST_SECRET' in os.environ\n"
        "    return {'stdout': json.dumps({'spy': {'env-secret': {'ok': found}}})}\n"
    )
    run_stub(project.pytester, "-k", "alpha")
    case = project.cases()["alpha"]
    assert case["spy"]["env-secret"]["ok"] is True
    assert case["sut_isolation"] == "in-process"


@pytest.mark.parametrize("mode", MODES)
def test_sut_cannot_read_the_harness_files(
    project: Project, mode: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    host_tmp = tmp_path_factory.mktemp("host-tmp") / "note.txt"
    host_tmp.write_text("harness scratch\n")
    # a first run fills the state directory the second one tries to read
    run_stub(project.pytester)
    targets = {
        "answer key": project.bench / "cases" / "alpha" / "expected" / "answer.txt",
        "rubric": project.bench / "rubric.py",
        "rootdir": project.root,
        "state dir": project.state / "audit.jsonl",
        "harness HOME": Path(os.environ["HOME"]) / ".aws" / "credentials",
        "host /tmp": host_tmp,
    }
    _result, cases = project.run(
        ["read"], mode, "-k", "alpha", targets=[str(p) for p in targets.values()]
    )
    readable = cases["alpha"]["spy"]["read"]["detail"].split()
    if mode == "none":
        assert sorted(readable) == sorted(str(p) for p in targets.values())
    else:
        assert readable == []


@pytest.mark.parametrize("mode", MODES)
def test_a_script_at_the_rootdir_does_not_expose_the_rootdir(
    pytester: pytest.Pytester, mode: str
) -> None:
    copy_stub(pytester.path)
    pytester.makepyfile(
        sut="import os, sys\n"
        "from pathlib import Path\n"
        "here = sorted(os.listdir(Path(__file__).parent))\n"
        "print('LISTING', ' '.join(here))\n"
        "print('PYTHON', sys.executable)\n"
    )
    result = run_stub(
        pytester,
        "-k",
        "alpha",
        "--codegenie-sut=python3 sut.py {workspace}",
        f"--codegenie-sut-sandbox={mode}",
    )
    report = newest_report(pytester.path)
    (case,) = report["cases"]
    assert case["sut_exit_code"] == 0, case["stderr_tail"]
    listing = next(ln for ln in case["stdout_tail"].splitlines() if ln.startswith("LISTING"))
    if mode == "none":
        assert "bench" in listing.split()
    else:
        assert listing.split()[1:] == ["sut.py"]
    result.assert_outcomes(failed=1)  # the script writes no answer


# -- writing where the harness would trust it ----------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_sut_cannot_plant_cache_rubric_or_conftest(project: Project, mode: str) -> None:
    rubric = project.bench / "rubric.py"
    honest = rubric.read_bytes()
    planted = {
        str(project.state / "cache" / "ff" / ("f" * 64 + ".json")): "{}",
        str(rubric): "print('{\"score\": 1.0}')\n",
        str(project.root / "conftest.py"): "# planted by the SUT\n",
    }
    result, cases = project.run(["write"], mode, "-k", "alpha", writes=planted)
    wrote = cases["alpha"]["spy"]["write"]["detail"].split()
    if mode == "none":
        assert sorted(wrote) == sorted(planted)
        # the harness still sees the rubric change and refuses the case
        assert "sut.tampered_bench" in _codes(cases["alpha"])
        assert cases["alpha"]["passed"] is False
        result.assert_outcomes(failed=1)
    else:
        # the writes may "succeed" into the sandbox's private /tmp (this project lives under
        # the host's /tmp); none of them reaches the harness's files
        assert rubric.read_bytes() == honest
        assert not (project.root / "conftest.py").exists()
        assert not (project.state / "cache" / "ff").exists()
        assert "sut.tampered_bench" not in _codes(cases["alpha"])


def test_tampering_found_at_session_end_blocks_the_case(pytester: pytest.Pytester) -> None:
    # the last case's SUT (unsandboxed) edits the first case's answer key, long after the
    # first case's own post-run check passed: only the session-end re-digest can see it
    bench = copy_stub(pytester.path)
    target = bench / "cases" / "alpha" / "expected" / "answer.txt"
    pytester.makepyfile(
        edit="import os, sys\n"
        "from pathlib import Path\n"
        "ws = Path(sys.argv[1])\n"
        "n = int((ws / 'question.txt').read_text().split()[-1])\n"
        "(ws / 'answer.txt').write_text(f'{n + 1}\\n')  # the honest answer\n"
        "if os.environ['CODEGENIE_CASE_ID'] == 'gamma':\n"
        f"    Path({str(target)!r}).write_text('9\\n')\n"
    )
    result = run_stub(
        pytester,
        f"--codegenie-sut={sys.executable} edit.py {{workspace}}",
        "--codegenie-sut-sandbox=none",
    )
    assert target.read_text() == "9\n"  # the attack was live
    report = newest_report(pytester.path)
    modes = {c["case_id"]: c["failure_modes"] for c in report["cases"]}
    (tamper,) = [fm for fm in modes["alpha"] if fm["code"] == "sut.tampered_bench"]
    assert tamper["detail"].startswith("changed during the session: the case directory")
    assert not [fm for fm in modes["gamma"] if fm["code"] == "sut.tampered_bench"]
    # alpha was reported passed before the change: the session fails and says why
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["TAMPERED: stub/alpha passed, but the bench files*"])


# -- network -------------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server on 127.0.0.1 recording what connections send it."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                received.append(conn.recv(64))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    stop.set()
    thread.join(5)
    server.close()


@pytest.mark.parametrize(
    ("mode", "network"), [("none", "none"), ("bwrap", "none"), ("bwrap", "host")]
)
def test_network_is_off_unless_asked_for(
    project: Project, listener: tuple[int, list[bytes]], mode: str, network: str
) -> None:
    port, received = listener
    result, cases = project.run(
        ["connect-loopback", "route-outside"],
        mode,
        "-k",
        "alpha",
        f"--codegenie-sut-network={network}",
        port=port,
    )
    spy = cases["alpha"]["spy"]
    reachable = mode == "none" or network == "host"
    assert spy["connect-loopback"]["ok"] is reachable, spy
    assert spy["route-outside"]["ok"] is reachable, spy
    assert (received == [b"spy\n"]) is reachable
    # env-only cannot switch the network off, and says so
    assert cases["alpha"]["sut_network"] == ("none" if not reachable else "host")
    if not reachable:
        result.stdout.fnmatch_lines(["*sut isolation: bwrap (network none*"])


def test_a_failing_sut_with_the_network_off_gets_a_hint(pytester: pytest.Pytester) -> None:
    copy_stub(pytester.path)
    pytester.makepyfile(
        agent="import socket, sys\n"
        "try:\n    socket.getaddrinfo('model.example', 443)\n"
        "except OSError as exc:\n    sys.exit(f'getaddrinfo failed: {exc}')\n"
    )
    result = run_stub(
        pytester,
        "-k",
        "alpha",
        f"--codegenie-sut={sys.executable} agent.py {{workspace}}",
    )
    result.stdout.fnmatch_lines(
        ["hint: the SUT ran with the network off (--codegenie-sut-network=none)*gateway*"]
    )


@pytest.mark.parametrize(
    ("agent", "command", "hint"),
    [
        ("", "/nonexistent/agent {workspace}", "hint: exit 127: the SUT's program*not found*"),
        (
            "",
            "{here}/agent.txt {workspace}",
            "hint: exit 126: the SUT's program is not executable*",
        ),
        (
            "import not_installed_anywhere\n",
            "{python} agent.py {workspace}",
            "hint: a Python module was not found*--codegenie-sut-ro*",
        ),
    ],
    ids=["not-found", "not-executable", "missing-module"],
)
def test_failure_hints_point_the_right_way(
    pytester: pytest.Pytester, agent: str, command: str, hint: str
) -> None:
    # issue 26: every failing SUT was told to turn the network on
    copy_stub(pytester.path)
    pytester.makepyfile(agent=agent)
    (pytester.path / "agent.txt").write_text("not a program\n")
    sut = command.format(python=sys.executable, here=pytester.path, workspace="{workspace}")
    result = run_stub(pytester, "-k", "alpha", f"--codegenie-sut={sut}")
    result.stdout.fnmatch_lines([hint])
    assert "network off" not in result.stdout.str()


# -- processes and resources ---------------------------------------------------------------


def _sleepers(token: str) -> list[int]:
    wanted = b"sleep\0" + token.encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes() == wanted and alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("mode", MODES)
def test_a_daemon_the_sut_leaves_is_killed(
    project: Project, mode: str, recorded_pids: list[int]
) -> None:
    token = f"300.{secrets.randbelow(10**9):09d}"
    _result, cases = project.run(["daemon"], mode, "-k", "alpha", token=token)
    assert cases["alpha"]["spy"]["daemon"]["ok"] is True  # it did start
    left = _sleepers(token)
    recorded_pids += left
    # the sandbox's PID namespace, or the harness's subreaper without it, ends it
    assert left == []


@pytest.mark.parametrize(
    ("mode", "extra", "contained"),
    [
        ("bwrap", [], True),
        ("none", [], True),
        ("bwrap", ["--codegenie-sut-max-procs=100000"], False),
    ],
)
def test_forking_thousands_of_processes_hits_the_process_limit(
    project: Project, mode: str, extra: list[str], contained: bool
) -> None:
    _result, cases = project.run(["fork"], mode, "-k", "alpha", *extra, forks=2000)
    spy = cases["alpha"]["spy"]["fork"]
    assert spy["ok"] is (not contained), spy
    if contained:
        started = int(spy["detail"].split()[0])
        assert started < 512


@pytest.mark.parametrize(
    ("attack", "limit", "plan"),
    [
        ("alloc", "--codegenie-sut-max-memory-mb=512", {"alloc_mb": 1024}),
        ("big-file", "--codegenie-sut-max-file-mb=8", {"file_mb": 32}),
    ],
)
@pytest.mark.parametrize(("mode", "limited"), [("bwrap", True), ("none", True), ("bwrap", False)])
def test_allocating_or_writing_past_a_limit_fails(
    project: Project, attack: str, limit: str, plan: dict[str, int], mode: str, limited: bool
) -> None:
    # the limits hold with or without the sandbox; lifting the limit shows the attack live
    extra = [limit] if limited else []
    _result, cases = project.run([attack], mode, "-k", "alpha", *extra, **plan)
    case = cases["alpha"]
    spy = case["spy"].get(attack)
    if not limited:
        assert spy is not None
        assert spy["ok"], spy
    elif attack == "alloc" and case["sut_memory_limit"] == "cgroup":
        # the memory cgroup's OOM killer ends the process before it can report
        assert spy is None or not spy["ok"], spy
        assert "sut.memory_exceeded" in _codes(case)
    else:
        assert spy is not None
        assert not spy["ok"], spy
        assert spy["detail"] in ("MemoryError", "[Errno 27] File too large")


@pytest.mark.parametrize("mode", MODES)
def test_many_children_cannot_share_out_the_memory_limit(project: Project, mode: str) -> None:
    # six children of 100 MiB each under a 300 MiB limit: each is under a per-process
    # limit, so only a limit on all of them together (the memory cgroup) stops them
    _result, cases = project.run(
        ["alloc-children"], mode, "-k", "alpha", "--codegenie-sut-max-memory-mb=300",
        children=6, child_mb=100,
    )  # fmt: skip
    case = cases["alpha"]
    spy = case["spy"]["alloc-children"]
    if case["sut_memory_limit"] == "per-process":
        assert os.geteuid() != 0, "a root harness can always make a memory cgroup here"
        assert spy["ok"], spy  # the attack, live: the per-process fallback cannot stop it
        return
    assert case["sut_memory_limit"] == "cgroup"
    assert not spy["ok"], spy
    assert "sut.memory_exceeded" in _codes(case)


# -- the sandbox hidden: env-only works, is recorded, and never promotes -------------------


@pytest.fixture
def path_without_bwrap(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH holding every program of the usual directories except bwrap."""
    shadow = tmp_path_factory.mktemp("no-bwrap-bin")
    for directory in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            if name != "bwrap" and not (shadow / name).exists():
                (shadow / name).symlink_to(os.path.join(directory, name))
    return str(shadow)


def _run_for_bronze(pytester: pytest.Pytester, tiers: Path) -> pytest.RunResult:
    return run_stub(pytester, f"--codegenie-tiers={tiers}", "--codegenie-verdict=bronze")


def _write_tiers(root: Path, extra: str = "") -> Path:
    tiers = root / "tiers.yaml"
    tiers.write_text(
        "schema_version: 1\nthresholds: {bronze: 0.3}\ncurrent_tiers: {stub: none}\n" + extra
    )
    return tiers


def test_without_bwrap_the_run_is_env_only_and_the_gate_refuses_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, path_without_bwrap: str
) -> None:
    copy_stub(pytester.path)
    tiers = _write_tiers(pytester.path)
    monkeypatch.setenv("PATH", path_without_bwrap)
    result = _run_for_bronze(pytester, tiers)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*sut isolation: env-only (network host*",
            "*WARNING: the SUT ran without its sandbox*bwrap is not on PATH*",
            "*codegenie verdict stub → bronze: evidence INSUFFICIENT*",
            "*SUT isolation below bwrap required for bronze: alpha (env-only), beta (env-only), "
            "gamma (env-only)*",
        ]
    )
    # the same evidence, with a tier file that accepts env-only, is sufficient
    lenient = _write_tiers(pytester.path, "required_sut_isolation: env-only\n")
    again = _run_for_bronze(pytester, lenient)
    again.stdout.fnmatch_lines(["*codegenie verdict stub → bronze: evidence SUFFICIENT*"])


def test_require_sandbox_without_bwrap_is_a_usage_error_before_any_case(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, path_without_bwrap: str
) -> None:
    copy_stub(pytester.path)
    pytester.makepyfile(sut="open('ran', 'w').write('x')\n")
    monkeypatch.setenv("PATH", path_without_bwrap)
    result = run_stub(
        pytester,
        "--codegenie-require-sandbox",
        f"--codegenie-sut={sys.executable} {pytester.path / 'sut.py'}",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--codegenie-require-sandbox*bwrap is not on PATH*"])
    assert not (pytester.path / "ran").exists()


def test_require_sandbox_with_bwrap_runs(pytester: pytest.Pytester) -> None:
    copy_stub(pytester.path)
    result = run_stub(pytester, "--codegenie-require-sandbox")
    result.assert_outcomes(passed=3)


def test_an_in_process_hook_is_never_promotion_evidence_by_default(
    pytester: pytest.Pytester,
) -> None:
    copy_stub(pytester.path)
    tiers = _write_tiers(pytester.path)
    pytester.makeconftest(
        "def pytest_codegenie_eval_run_sut(case, workspace, task_class, env):\n"
        "    n = int((workspace / 'question.txt').read_text().split()[-1])\n"
        "    (workspace / 'answer.txt').write_text(f'{n + 1}\\n')\n"
    )
    result = _run_for_bronze(pytester, tiers)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*sut isolation: in-process (network host*",
            "*SUT isolation below bwrap required for bronze: alpha (in-process)*",
        ]
    )


# -- the workspace ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "too_large"), [([], False), (["--codegenie-sut-max-workspace-mb=64"], True)]
)
def test_a_huge_workspace_is_capped_and_never_loaded(
    pytester: pytest.Pytester, extra: list[str], too_large: bool
) -> None:
    copy_stub(pytester.path)
    # 400 MB (sparse, so the test writes nothing to disk) that the old diff read whole
    pytester.makepyfile(
        fill="import os, sys\n"
        "with open(os.path.join(sys.argv[1], 'huge.bin'), 'wb') as f:\n"
        "    f.truncate(400 * 1024 * 1024)\n"
    )
    result, peak = run_measuring_rss(
        pytester,
        "--codegenie-bench=stub",
        "-k",
        "alpha",
        "--codegenie-no-cache",
        f"--codegenie-sut={sys.executable} fill.py {{workspace}}",
        *extra,
    )
    assert peak < 250 * 1024  # the harness never held the file
    if too_large:
        result.stdout.fnmatch_lines(["*[[]block[]] sut.workspace_too_large: the workspace grew*"])
    else:
        assert "sut.workspace_too_large" not in result.stdout.str()


def test_a_link_out_of_the_workspace_is_removed_before_scoring(
    pytester: pytest.Pytester,
) -> None:
    bench = copy_stub(pytester.path)
    key = bench / "cases" / "alpha" / "expected" / "answer.txt"
    # the agent guesses where the answer key lives and links to it: the rubric, which may
    # read the case, would follow the link
    pytester.makepyfile(
        link=f"import os, sys\nos.symlink({str(key)!r}, os.path.join(sys.argv[1], 'answer.txt'))\n"
    )
    result = run_stub(
        pytester,
        "-k",
        "alpha",
        f"--codegenie-sut={sys.executable} link.py {{workspace}}",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*[[]block[]] sut.escaped_workspace: symlink(s) leading out of the workspace*answer.txt*"]
    )


def test_input_links_out_of_input_are_refused_at_load(pytester: pytest.Pytester) -> None:
    import shutil

    from tests.conftest import repin

    bench = copy_stub(pytester.path)
    case = bench / "cases" / "alpha"
    (case / "input" / "answer.txt").symlink_to("../expected/answer.txt")
    repin(bench)
    # live: a plain copy of input/ would hand the answer key to the SUT
    copied = pytester.path / "copied"
    shutil.copytree(case / "input", copied, symlinks=False)
    assert (copied / "answer.txt").read_text() == (case / "expected" / "answer.txt").read_text()
    result = run_stub(pytester, "--codegenie-sut=noop")
    result.assert_outcomes(passed=0, failed=3)
    result.stdout.fnmatch_lines(
        ["*[[]block[]] harness.case_invalid:*input/answer.txt: symlink leaves input/*"]
    )


# -- the rubric's own jail -----------------------------------------------------------------

_HOSTILE_RUBRIC = """\
import json, socket, sys
from pathlib import Path
from pytest_codegenie_eval.rubric import serve

PORT = {port}

def score(case, out):
    tried = {{}}
    try:
        with socket.create_connection(("127.0.0.1", PORT), timeout=2) as conn:
            conn.sendall(b"rubric\\n")
        tried["connect"] = True
    except OSError:
        tried["connect"] = False
    for name, target in (("case", case.case_dir / "planted.txt"),
                         ("workspace", out.workspace / "planted.txt")):
        try:
            target.write_text("x")
            tried[name] = True
        except OSError:
            tried[name] = False
    detail = json.dumps(tried, sort_keys=True)
    return {{"score": 1.0, "breakdown": {{}},
             "failure_modes": [{{"code": "answer.extra_files", "detail": detail}}]}}

if __name__ == "__main__":
    serve(score)
"""


@pytest.mark.parametrize("rubric_mode", ["namespaces", "bwrap"])
def test_the_rubric_has_no_network_and_cannot_write_the_case(
    pytester: pytest.Pytester, listener: tuple[int, list[bytes]], rubric_mode: str
) -> None:
    port, received = listener
    bench = copy_stub(pytester.path)
    (bench / "rubric.py").write_text(_HOSTILE_RUBRIC.format(port=port))
    result = run_stub(pytester, "-k", "alpha",
        f"--codegenie-rubric-sandbox={rubric_mode}",
    )  # fmt: skip
    (case,) = newest_report(pytester.path)["cases"]
    assert case["rubric_isolation"] == rubric_mode
    (reported,) = [fm for fm in case["failure_modes"] if fm["code"] == "answer.extra_files"]
    tried = json.loads(reported["detail"])
    planted = (bench / "cases" / "alpha" / "planted.txt").exists()
    if rubric_mode == "namespaces":
        # live: the host's network and filesystem; the harness still sees the case change
        # (a root harness hands the workspace to the sandbox user, whom a rubric mapped to
        # root in its own user namespace cannot override)
        workspace = os.geteuid() != 0
        assert tried == {"case": True, "connect": True, "workspace": workspace}
        assert received == [b"rubric\n"]
        assert planted
        assert "rubric.tampered_bench" in _codes(case)
        result.assert_outcomes(failed=1)
    else:
        assert tried == {"case": False, "connect": False, "workspace": False}
        assert received == []
        assert not planted
        result.assert_outcomes(passed=1)
