"""`codegenie-eval repair` and `verify` after a killed session (issue 13): leftovers are
repaired with nothing deleted silently, tampering is refused, and a missing state directory
or an empty chain never passes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_codegenie_eval.cli import main as cli
from pytest_codegenie_eval.errors import ChainTamperDetected
from pytest_codegenie_eval.store.audit import AUDIT_FILE, verify, write_run_record
from pytest_codegenie_eval.store.repair import repair
from pytest_codegenie_eval.store.reports import evidence as recorded_evidence
from pytest_codegenie_eval.store.reports import resolve
from pytest_codegenie_eval.store.statedir import atomic_write
from tests.conftest import run_cli as run_cli_in
from tests.unit.test_audit import make_report


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli_in(None, *args, timeout=120)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    out = tmp_path / "state"
    out.mkdir()
    for i in range(2):
        write_run_record(make_report(i), out)
    return out


def _killed_mid_append(state: Path) -> bytes:
    """What a kill between write() calls of an append leaves: half a line."""
    torn = b'{"seq":2,"prev_hash":"ab'
    with (state / AUDIT_FILE).open("ab") as fh:
        fh.write(torn)
    return torn


def _killed_after_report(state: Path) -> Path:
    """A session killed after writing its report, before appending its record."""
    report = make_report(7)
    path = state / "runs" / "20261124T220501Z-killed-vuln-remediation.json"
    path.write_text(report.model_dump_json(indent=2) + "\n")
    return path


def _killed_mid_write(state: Path) -> list[Path]:
    leftovers = [state / "runs" / ".tmp-abc123.tmp", state / ".tmp-def456.tmp"]
    for path in leftovers:
        path.write_bytes(b'{"half": ')
    return leftovers


def test_the_leftovers_are_live_they_block_every_later_run(state: Path) -> None:
    _killed_mid_append(state)
    _killed_after_report(state)
    _killed_mid_write(state)
    assert not verify(state, strict=True).ok
    with pytest.raises(ChainTamperDetected, match="torn last line"):
        write_run_record(make_report(9), state)
    verdict = run_cli("verify", "--strict", "--state-dir", str(state))
    assert verdict.returncode == cli.EXIT_CHAIN_TAMPER
    assert "codegenie-eval repair --state-dir" in verdict.stdout  # verify says what to do


def test_repair_quarantines_adopts_and_records_what_it_did(state: Path) -> None:
    torn = _killed_mid_append(state)
    orphan = _killed_after_report(state)
    leftovers = _killed_mid_write(state)
    before = recorded_evidence(state, "vuln-remediation").reports

    dry = run_cli("repair", "--dry-run", "--state-dir", str(state))
    assert dry.returncode == cli.EXIT_OK, dry.stderr
    assert "would quarantine the torn last line" in dry.stdout
    assert not verify(state, strict=True).ok  # a dry run changes nothing

    done = run_cli("repair", "--state-dir", str(state))
    assert done.returncode == cli.EXIT_OK, done.stderr
    assert verify(state, strict=True).ok, verify(state, strict=True).problems
    assert all(not p.exists() for p in leftovers)

    # the torn bytes are kept, not deleted
    (kept,) = (state / "quarantine").glob("*-audit-tail.bin")
    assert kept.read_bytes() == torn
    # the orphan report is recorded, marked as adopted, and never evidence (ADR 0023)
    after = recorded_evidence(state, "vuln-remediation").reports
    assert after == before
    records = [json.loads(line) for line in (state / AUDIT_FILE).read_text().splitlines()]
    adopted = [r for r in records if r.get("kind") == "adopted"]
    assert [r["report_path"] for r in adopted] == [f"runs/{orphan.name}"]
    # the last record is the repair's own, naming a note that lists everything
    repair_record = records[-1]
    assert repair_record["kind"] == "repair"
    note = json.loads((state / repair_record["report_path"]).read_text())
    assert note["adopted"] == [f"runs/{orphan.name}"]
    assert {q["from"] for q in note["quarantined"]} == {AUDIT_FILE}
    assert len(note["removed_temporary_files"]) == 2

    # and later runs append again
    write_run_record(make_report(9), state)
    assert verify(state, strict=True).ok
    again = run_cli("repair", "--state-dir", str(state))
    assert "nothing to repair" in again.stdout


def test_adopting_an_older_run_changes_neither_the_newest_run_nor_the_evidence(
    state: Path,
) -> None:
    # issue 25, item 2: adoption appended the killed session's older run after newer ones,
    # so it became the newest evidence (INSUFFICIENT became SUFFICIENT, latest: moved)
    newest = make_report(3, created_at="2026-11-25T09:00:00+00:00")
    write_run_record(newest, state)
    older = make_report(8, created_at="2026-11-20T09:00:00+00:00")
    (state / "runs" / "20261120T090000Z-killed-vuln-remediation.json").write_text(
        older.model_dump_json(indent=2) + "\n"
    )
    before = recorded_evidence(state, "vuln-remediation")
    assert run_cli("repair", "--state-dir", str(state)).returncode == cli.EXIT_OK
    assert recorded_evidence(state, "vuln-remediation") == before
    assert resolve("latest:vuln-remediation", state).run_id == newest.run_id
    records = [json.loads(line) for line in (state / AUDIT_FILE).read_text().splitlines()]
    assert [r["run_id"] for r in records if r.get("kind") == "adopted"] == [older.run_id]


def test_plain_verify_names_leftovers_and_what_to_run(state: Path) -> None:
    # issue 25, item 3: plain verify exited 0 without a word about them
    _killed_after_report(state)
    _killed_mid_write(state)
    plain = run_cli("verify", "--state-dir", str(state))
    assert plain.returncode == cli.EXIT_OK  # the chain itself verifies
    assert (
        "leftovers of a killed session: 2 temporary file(s), 1 file(s) in runs/ that no "
        f"record names; run `codegenie-eval repair --state-dir {state}`"
    ) in plain.stdout
    assert run_cli("repair", "--state-dir", str(state)).returncode == cli.EXIT_OK
    assert "leftovers" not in run_cli("verify", "--state-dir", str(state)).stdout


def test_the_next_run_names_leftovers_before_it_starts(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    args = ("-p", "no:cacheprovider", "--codegenie-bench=stub", "--codegenie-no-cache")
    pytester.runpytest_inprocess(*args).assert_outcomes(passed=3)
    state = pytester.path / ".codegenie" / "eval"
    (state / "runs" / ".tmp-killed.tmp").write_bytes(b'{"half": ')
    again = pytester.runpytest_inprocess(*args)
    again.assert_outcomes(passed=3)
    again.stdout.fnmatch_lines(
        ["codegenie: leftovers of a killed session in *: 1 temporary file(s); run*repair*"]
    )


def test_a_repair_killed_after_its_note_leaves_a_record_of_what_it_removed(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issue 25, item 10: the note was written last, so a repair killed while removing files
    # left no record of them
    leftovers = _killed_mid_write(state)
    real_unlink = Path.unlink

    def killed(self: Path, missing_ok: bool = False) -> None:
        if self.name.startswith(".tmp-"):
            raise KeyboardInterrupt  # the kill lands while the first file is removed
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", killed)
    with pytest.raises(KeyboardInterrupt):
        repair(state)
    monkeypatch.undo()
    (note_file,) = (state / "runs").glob("*-repair.json")
    note = json.loads(note_file.read_text())
    assert sorted(r["path"] for r in note["removed_temporary_files"]) == sorted(
        p.relative_to(state).as_posix() for p in leftovers
    )
    # the next repair keeps that note (quarantined) and lists it in its own
    done = repair(state)
    assert any(note_file.name in q for q in done.quarantined)
    assert verify(state, strict=True).ok


def test_a_repair_killed_for_real_while_removing_files_leaves_its_note(state: Path) -> None:
    # the same with a real SIGKILL: enough leftovers that removing them takes a while, and
    # the kill lands as soon as the first one is gone
    many = [state / f".tmp-{i:05d}.tmp" for i in range(20000)]
    for path in many:
        path.write_bytes(b"x")
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest_codegenie_eval.cli.main",
            "repair",
            "--state-dir",
            str(state),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while many[0].exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.0005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    left = sum(1 for path in many if path.exists())
    if left == 0:
        pytest.skip("the repair finished before the kill landed (machine too fast)")
    (note_file,) = (state / "runs").glob("*-repair.json")
    note = json.loads(note_file.read_text())
    assert len(note["removed_temporary_files"]) == len(many)  # every file, removed or not
    done = repair(state)
    assert any(note_file.name in q for q in done.quarantined)
    assert verify(state, strict=True).ok


def test_a_stray_file_in_runs_is_quarantined_not_deleted(state: Path) -> None:
    stray = state / "runs" / "notes.txt"
    stray.write_text("my notes\n")
    assert run_cli("repair", "--state-dir", str(state)).returncode == cli.EXIT_OK
    assert not stray.exists()
    (kept,) = (state / "quarantine").glob("*-notes.txt")
    assert kept.read_text() == "my notes\n"
    assert verify(state, strict=True).ok


def test_a_young_temporary_file_of_the_cache_is_left_alone(state: Path) -> None:
    cache = state / "cache" / "ab"
    cache.mkdir(parents=True)
    young = cache / ".tmp-live.tmp"
    young.write_bytes(b"in flight")
    old = cache / ".tmp-dead.tmp"
    old.write_bytes(b"dead")
    os.utime(old, (1, 1))
    run_cli("repair", "--state-dir", str(state))
    assert young.exists()
    assert not old.exists()


def test_repair_refuses_tampering_and_changes_nothing(state: Path) -> None:
    lines = (state / AUDIT_FILE).read_bytes().splitlines(keepends=True)
    edited = lines[0].replace(b'"complete":true', b'"complete":false')
    assert edited != lines[0]
    atomic_write(state / AUDIT_FILE, edited + lines[1])
    _killed_mid_write(state)
    before = sorted(p.name for p in state.rglob("*"))
    result = run_cli("repair", "--state-dir", str(state))
    assert result.returncode == cli.EXIT_CHAIN_TAMPER
    assert "refused, nothing changed" in result.stdout
    assert sorted(p.name for p in state.rglob("*")) == before
    verdict = run_cli("verify", "--state-dir", str(state))
    assert verdict.returncode == cli.EXIT_CHAIN_TAMPER
    assert "does not rewrite history" in verdict.stdout


def test_verify_refuses_a_missing_state_directory(tmp_path: Path) -> None:
    missing = tmp_path / "typo"
    for command in ("verify", "repair"):
        result = run_cli(command, "--state-dir", str(missing))
        assert result.returncode == cli.EXIT_GENERIC, result
        assert "does not exist" in result.stderr


def test_an_empty_chain_fails_unless_allowed(tmp_path: Path) -> None:
    empty = tmp_path / "state"
    empty.mkdir()
    result = run_cli("verify", "--state-dir", str(empty))
    assert result.returncode == cli.EXIT_GENERIC
    assert "empty chain" in result.stderr
    allowed = run_cli("verify", "--allow-empty", "--state-dir", str(empty))
    assert allowed.returncode == cli.EXIT_OK
