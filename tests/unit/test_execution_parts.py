"""Unit tests of the execution pieces: cache, canary, cost ledger, SUT digests, processes,
rubric output validation, diffs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_codegenie_eval.execution.canary import (
    canary_for,
    leaked,
    mint,
)
from pytest_codegenie_eval.execution.diff import unified_diff
from pytest_codegenie_eval.execution.rubric_runner import rubric_env, validate_rubric_output
from pytest_codegenie_eval.execution.sut import SutConfigError, resolve_sut
from pytest_codegenie_eval.models import BenchCase, CaseResult
from pytest_codegenie_eval.process import ResourceLimits, run_process
from pytest_codegenie_eval.store.cache import CacheKeyParts, ScoreCache
from pytest_codegenie_eval.store.cost_ledger import TAG_ENV, CostLedger, tag_invocation
from pytest_codegenie_eval.taskclass.loader import load_task_class
from tests.conftest import copy_stub

CASE = BenchCase(
    case_id="c1", title="t", curation_class="held-out", cassette_canary_pin="00ff00ff00ff00ff"
)
PARTS = CacheKeyParts("a" * 64, "b" * 64, "c" * 64, "", "0.1.0", "00ff")


def test_cache_round_trip_and_key_sensitivity(tmp_path: Path) -> None:
    cache = ScoreCache(tmp_path)
    key = PARTS.key()
    assert cache.get(key) is None
    result = CaseResult(task_class="t", case_id="c1", score=0.5, breakdown={"K": 0.5})
    cache.put(key, result)
    assert cache.get(key) == result
    fields = ["case_digest", "sut_digest", "rubric_digest", "cassette_corpus_digest"]
    fields += ["harness_version", "cassette_canary_pin"]
    keys = {PARTS.key()}
    for name in fields:
        changed = CacheKeyParts(**{**PARTS.__dict__, name: "different"})
        keys.add(changed.key())
    assert len(keys) == len(fields) + 1


def test_length_prefix_keeps_field_boundaries() -> None:
    a = CacheKeyParts("ab", "c", "", "", "", "")
    b = CacheKeyParts("a", "bc", "", "", "", "")
    assert a.key() != b.key()


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b'{"version": 99}', b'{"version": 1, "key": "wrong", "result": {}}'],
)
def test_corrupt_entry_is_a_miss_with_a_warning(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    cache = ScoreCache(tmp_path)
    key = PARTS.key()
    path = cache.path_for(key)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with caplog.at_level("WARNING", logger="codegenie_eval.cache"):
        assert cache.get(key) is None
    assert any("treated as a miss" in record.getMessage() for record in caplog.records)


def test_truncated_entry_is_a_miss(tmp_path: Path) -> None:
    cache = ScoreCache(tmp_path)
    key = PARTS.key()
    cache.put(key, CaseResult(task_class="t", case_id="c1"))
    path = cache.path_for(key)
    path.write_bytes(path.read_bytes()[:-10])
    assert cache.get(key) is None


def test_gc_by_keep_set_and_age(tmp_path: Path) -> None:
    cache = ScoreCache(tmp_path)
    for name in ("a", "b", "c"):
        cache.put(name * 64, CaseResult(task_class="t", case_id=name))
    assert cache.gc(keep=["a" * 64]) == 2
    assert [p.stem for p in cache.entries()] == ["a" * 64]
    old = cache.path_for("a" * 64)
    os.utime(old, (1, 1))
    assert cache.gc(max_age_s=3600) == 1


def test_canary_is_deterministic_and_pinned() -> None:
    assert mint("00FF") == mint("00ff")
    assert canary_for(CASE) == mint("00ff00ff00ff00ff")
    assert mint("00ff") != mint("00fe")
    assert canary_for(CASE).startswith("CODEGENIE-CANARY-")
    assert leaked(canary_for(CASE), "x", f"...{canary_for(CASE)}...")
    assert not leaked(canary_for(CASE), "nothing here")


def test_ledger_records_every_invocation_across_threads(tmp_path: Path) -> None:
    ledger = CostLedger(tmp_path / "ledger.jsonl")

    def spend(i: int) -> None:
        with tag_invocation(ledger, "scope", "t", f"c{i}") as invocation:
            invocation.cost_usd = 0.25

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = ledger.entries()
    assert len(entries) == 8
    assert all(entry["bench_invocation"] is True for entry in entries)
    assert ledger.total_usd() == pytest.approx(2.0)


_SPENDER = """
import sys
from pathlib import Path
from pytest_codegenie_eval.store.cost_ledger import CostLedger, tag_invocation
ledger = CostLedger(Path(sys.argv[1]))
for i in range(25):
    with tag_invocation(ledger, "scope", "t", f"{sys.argv[2]}-{i}") as invocation:
        invocation.cost_usd = 0.01
"""


def test_ledger_records_every_invocation_across_processes(tmp_path: Path) -> None:
    # what xdist workers do: separate processes appending to one ledger at once
    import subprocess

    path = tmp_path / "ledger.jsonl"
    spenders = [
        subprocess.Popen([sys.executable, "-c", _SPENDER, str(path), f"w{n}"]) for n in range(4)
    ]
    assert [p.wait(timeout=60) for p in spenders] == [0, 0, 0, 0]
    entries = CostLedger(path).entries()
    assert len(entries) == 100
    assert len({entry["tag"] for entry in entries}) == 100
    assert CostLedger(path).total_usd() == pytest.approx(1.0)


def test_a_tag_never_enters_the_harness_environment(tmp_path: Path) -> None:
    # os.environ is shared by the attempts running side by side: only a hook SUT's run
    # exposes the tag there (docs/sut-contract.md)
    with tag_invocation(None, "scope", "t", "c1") as invocation:
        assert invocation.tag == "codegenie-bench/scope/t/c1"
        assert TAG_ENV not in os.environ


def test_sut_digests_change_with_code_and_command(tmp_path: Path) -> None:
    agent = tmp_path / "agent.py"
    agent.write_text("print(1)\n")
    one = resolve_sut(f"python {agent} {{workspace}}", baseline_script=None, rootdir=tmp_path,
                      hook_identity=None)  # fmt: skip
    agent.write_text("print(2)\n")
    two = resolve_sut(f"python {agent} {{workspace}}", baseline_script=None, rootdir=tmp_path,
                      hook_identity=None)  # fmt: skip
    other = resolve_sut(f"python {agent} --fast {{workspace}}", baseline_script=None,
                        rootdir=tmp_path, hook_identity=None)  # fmt: skip
    noop = resolve_sut("noop", baseline_script=None, rootdir=tmp_path, hook_identity=None)
    hook = resolve_sut(None, baseline_script=None, rootdir=tmp_path, hook_identity="m.f\nabc")
    assert len({one.digest, two.digest, other.digest, noop.digest, hook.digest}) == 5
    assert hook.kind == "hook"
    relative = resolve_sut("python agent.py {workspace}", baseline_script=None, rootdir=tmp_path,
                           hook_identity=None)  # fmt: skip
    assert relative.argv_template == ("python", str(agent), "{workspace}")
    with pytest.raises(SutConfigError, match="no baseline SUT"):
        resolve_sut(None, baseline_script=None, rootdir=tmp_path, hook_identity=None)
    with pytest.raises(SutConfigError):
        resolve_sut("python 'unclosed", baseline_script=None, rootdir=tmp_path, hook_identity=None)


def test_rubric_env_is_an_allowlist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("HOME", "/root")
    env = rubric_env()
    assert set(env) <= {"PATH", "LANG", "LC_ALL", "TZ", "PYTHONHASHSEED"}
    assert env["TZ"] == "UTC"
    assert env["PYTHONHASHSEED"] == "0"


def test_run_process_limits_apply_to_the_child(tmp_path: Path) -> None:
    code = "import resource; print(resource.getrlimit(resource.RLIMIT_FSIZE)[0])"
    result = run_process(
        [sys.executable, "-I", "-c", code],
        cwd=tmp_path,
        env=dict(os.environ),
        timeout_s=30,
        limits=ResourceLimits(file_size_bytes=12345),
    )
    assert result.stdout.strip() == b"12345"


def test_after_calls_back_once_when_the_child_has_run_that_long(tmp_path: Path) -> None:
    calls: list[float] = []
    started = time.monotonic()
    slow = run_process(
        ["/bin/sh", "-c", "sleep 0.6"], cwd=tmp_path, env={}, timeout_s=10,
        after=(0.2, lambda: calls.append(time.monotonic() - started)),
    )  # fmt: skip
    assert slow.returncode == 0
    assert len(calls) == 1
    assert 0.2 <= calls[0] < 0.6
    # a child done sooner: never called (the caller does what it had to do itself)
    quick = run_process(
        ["/bin/true"], cwd=tmp_path, env={}, timeout_s=10, after=(5.0, lambda: calls.append(0))
    )
    assert quick.returncode == 0
    assert len(calls) == 1


def _limit_rows(table: bytes) -> dict[str, list[str]]:
    wanted = ("Max cpu time", "Max address space", "Max file size", "Max processes")
    rows = {}
    for line in table.decode().splitlines():
        for label in wanted:
            if line.startswith(label):
                rows[label] = line[len(label) :].split()[:2]
    return rows


def test_the_shells_ulimits_set_what_prlimit_sets(tmp_path: Path) -> None:
    # the cgroup wrapper's shell sets the SUT's limits itself (no prlimit started): the
    # child must get exactly the limits prlimit gives it, soft and hard
    limits = ResourceLimits(
        cpu_seconds=33, address_space_bytes=512 << 20, file_size_bytes=8 << 20, processes=777
    )
    commands = limits.shell_commands()
    prefix = limits.command_prefix()
    if commands is None or prefix is None:
        pytest.skip("this machine's /bin/sh cannot set every limit, or there is no prlimit")
    cat = ["cat", "/proc/self/limits"]
    by_shell = subprocess.run(
        ["/bin/sh", "-c", f'{commands} && exec "$@"', "sh", *cat], capture_output=True
    )
    by_prlimit = subprocess.run([*prefix, *cat], capture_output=True)
    assert by_shell.returncode == 0, by_shell.stderr
    rows = _limit_rows(by_shell.stdout)
    assert rows == _limit_rows(by_prlimit.stdout)
    assert rows == {
        "Max cpu time": ["33", "33"],
        "Max address space": [str(512 << 20)] * 2,
        "Max file size": [str(8 << 20)] * 2,
        "Max processes": ["777", "777"],
    }


def test_a_child_that_closes_its_streams_keeps_its_own_exit_code(tmp_path: Path) -> None:
    # its pipes reach EOF long before it exits: the harness used to kill it right there,
    # turning its exit into -9 (and, by the same race, sometimes a fast `true` too)
    script = "exec 1>&- 2>&-; sleep 0.3; exit 3"
    result = run_process(["/bin/sh", "-c", script], cwd=tmp_path, env={}, timeout_s=10)
    assert (result.returncode, result.timed_out) == (3, False)
    quick = [run_process(["/bin/true"], cwd=tmp_path, env={}, timeout_s=10) for _ in range(50)]
    assert {r.returncode for r in quick} == {0}
    slow = run_process(["/bin/sh", "-c", "exec 1>&- 2>&-; sleep 30"], cwd=tmp_path, env={},
                       timeout_s=0.5)  # fmt: skip
    assert (slow.returncode, slow.timed_out) == (None, True)


def test_run_process_reports_a_missing_program(tmp_path: Path) -> None:
    result = run_process(["/nonexistent/program"], cwd=tmp_path, env={}, timeout_s=5)
    assert result.spawn_error is not None
    assert result.returncode is None


@pytest.fixture(scope="module")
def stub_loaded(tmp_path_factory: pytest.TempPathFactory) -> object:
    return load_task_class(copy_stub(tmp_path_factory.mktemp("stub")))


@given(st.binary(max_size=200))
def test_validate_never_raises_on_arbitrary_bytes(stub_loaded: object, data: bytes) -> None:
    verdict = validate_rubric_output(data, case_id="alpha", task_class=stub_loaded)  # type: ignore[arg-type]
    assert 0.0 <= verdict.score <= 1.0


def test_validate_taxonomy_wins_and_unknowns_block(stub_loaded: object) -> None:
    out = {
        "score": 1.0,  # the stub declares pass/fail scores
        "breakdown": {"ANSWER_CORRECT": 0.5, "BOGUS": 1.0},
        "failure_modes": [
            {"code": "answer.extra_files", "severity": "block", "detail": "x"},
            {"code": "made.up"},
        ],
    }
    verdict = validate_rubric_output(
        json.dumps(out).encode(),
        case_id="alpha",
        task_class=stub_loaded,  # type: ignore[arg-type]
    )
    codes = {(fm.code, fm.severity) for fm in verdict.failure_modes}
    assert ("answer.extra_files", "warn") in codes  # the taxonomy says warn
    assert ("rubric.unknown_breakdown_key", "block") in codes
    assert ("rubric.unknown_failure_mode", "block") in codes
    assert verdict.breakdown == {"ANSWER_CORRECT": 0.5}
    assert verdict.score == 0.0


def test_unified_diff_ignores_codegenie_dir_and_marks_binary(tmp_path: Path) -> None:
    before, after = tmp_path / "a", tmp_path / "b"
    for root in (before, after):
        (root / ".codegenie").mkdir(parents=True)
    (before / "x.txt").write_text("one\n")
    (after / "x.txt").write_text("two\n")
    (after / "new.bin").write_bytes(b"\xff\x00")
    (after / ".codegenie" / "task.md").write_text("ignored")
    diff = unified_diff(before, after)
    assert "--- a/x.txt\n+++ b/x.txt" in diff
    assert "-one\n+two\n" in diff
    assert "Binary files a/new.bin and b/new.bin differ" in diff
    assert "task.md" not in diff
    assert unified_diff(before, before) == ""


def test_limits_never_exceed_an_inherited_hard_limit(tmp_path: Path) -> None:
    import resource

    code = (
        "import resource, subprocess, sys\n"
        "resource.setrlimit(resource.RLIMIT_CPU, (50, 50))\n"
        "from pathlib import Path\n"
        "from pytest_codegenie_eval.process import ResourceLimits, run_process\n"
        "r = run_process([sys.executable, '-I', '-c', 'import resource; "
        "print(resource.getrlimit(resource.RLIMIT_CPU))'], cwd=Path('.'), env={}, "
        "timeout_s=30, limits=ResourceLimits(cpu_seconds=61))\n"
        "print(r.returncode, r.stdout.decode().strip(), r.stderr.decode().strip())\n"
    )
    assert resource.getrlimit(resource.RLIMIT_CPU)[1] != 50  # the child lowers its own
    out = subprocess_run([sys.executable, "-c", code], tmp_path)
    assert out.strip() == "0 (50, 50)"


def test_relative_venv_interpreter_keeps_its_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real-python"
    real.write_text("")
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    os.symlink(real, tmp_path / "venv" / "bin" / "python")
    spec = resolve_sut("venv/bin/python agent {workspace}", baseline_script=None,
                       rootdir=tmp_path, hook_identity=None)  # fmt: skip
    assert spec.argv_template[0] == str(tmp_path / "venv" / "bin" / "python")


def subprocess_run(argv: list[str], cwd: Path) -> str:
    import subprocess

    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_every_executor_records_an_attempt_the_same_way(tmp_path: Path) -> None:
    from pytest_codegenie_eval.execution.attempt import Attempt, RunSettings, record_attempt
    from pytest_codegenie_eval.store.statedir import diff_digest, read_diff

    settings = RunSettings(
        cache=ScoreCache(tmp_path / "cache"),
        ledger=CostLedger(tmp_path / "ledger.jsonl"),
        run_scope="scope",
        diff_dir=tmp_path / "diffs",
    )
    diff = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"
    # a reply from a worker: its cost not yet in the ledger, its digest claiming other bytes
    reply = CaseResult(task_class="t", case_id="c1", score=1.0, cost_usd=0.25, diff_digest="0" * 64)
    recorded = record_attempt(settings, PARTS.key(), Attempt(reply, diff))
    assert recorded.diff_digest == diff_digest(diff)
    assert read_diff(tmp_path / "diffs", recorded.diff_digest) == diff
    assert settings.ledger is not None
    assert settings.ledger.total_usd() == pytest.approx(0.25)
    hit = settings.cache.get(PARTS.key()) if settings.cache is not None else None
    assert hit is not None
    assert hit.diff_digest == recorded.diff_digest
    # a local attempt put its cost in the ledger as its SUT ended: not counted twice
    record_attempt(settings, PARTS.key(), Attempt(reply, diff, cost_recorded=True))
    assert settings.ledger.total_usd() == pytest.approx(0.25)
