"""Keyed audit chains for artifacts that travel (issue 25, item 12).

A keyless BLAKE3 chain binds every report's bytes, but whoever can write a CI artifact can
flip every case to passed, re-hash the chain from its first record, and `merge`, `verify`
and `promote-verdict` accept it. With a key (BLAKE3's keyed mode, the secret in an
environment variable) the forger cannot compute a record's hash; `merge --expected-head`
also checks each shard's head against the one its job printed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_codegenie_eval.cli import main as cli
from pytest_codegenie_eval.hashing import blake3_hex, derive_key
from pytest_codegenie_eval.store.audit import (
    AUDIT_FILE,
    GENESIS_PREV_HASH,
    KEYED_FIELD,
    canonical_json,
    chain_key,
    record_hash,
    verify,
    write_run_record,
)
from tests.conftest import copy_stub, run_cli
from tests.unit.test_audit import make_report

SECRET_VAR = "CODEGENIE_TEST_CHAIN_SECRET"
KEY = derive_key(b"a CI secret the artifact's writer does not have")


def _forge(state: Path) -> None:
    """What an attacker with write access to the artifact (and no key) does: flip every
    case of every report to passed and re-hash the whole chain from genesis."""
    lines = (state / AUDIT_FILE).read_bytes().splitlines()
    prev = GENESIS_PREV_HASH
    out = []
    for line in lines:
        record = json.loads(line)
        report_path = state / record["report_path"]
        report = json.loads(report_path.read_text())
        for case in report.get("cases", []):
            case.update(score=1.0, passed=True, failure_modes=[])
        data = (json.dumps(report, indent=2) + "\n").encode()
        report_path.write_bytes(data)
        record.pop(KEYED_FIELD, None)  # the keyed hash cannot be computed without the key
        record.update(prev_hash=prev, report_digest=blake3_hex(data))
        record["hash"] = record_hash(record)
        prev = record["hash"]
        out.append(canonical_json(record))
    (state / AUDIT_FILE).write_bytes(b"".join(line + b"\n" for line in out))


def _two_runs(state: Path) -> None:
    for index in range(2):
        write_run_record(make_report(index), state)


def test_without_a_key_a_re_hashed_chain_is_accepted(tmp_path: Path) -> None:
    # live: the attack works on a keyless chain
    _two_runs(tmp_path)
    _forge(tmp_path)
    assert verify(tmp_path).ok


def test_with_a_key_a_re_hashed_chain_is_refused(tmp_path: Path) -> None:
    with chain_key(KEY):
        _two_runs(tmp_path)
        assert verify(tmp_path).ok
        records = [json.loads(x) for x in (tmp_path / AUDIT_FILE).read_text().splitlines()]
        assert all(r[KEYED_FIELD] is True for r in records)
    _forge(tmp_path)
    with chain_key(KEY):
        forged = verify(tmp_path)
    assert not forged.ok
    assert not forged.repairable
    assert "record is not keyed, but the chain is checked with a key" in forged.problems[0]


def test_a_keyed_record_with_a_plain_hash_is_refused(tmp_path: Path) -> None:
    with chain_key(KEY):
        _two_runs(tmp_path)
    lines = (tmp_path / AUDIT_FILE).read_bytes().splitlines()
    record = json.loads(lines[-1])
    body = {k: v for k, v in record.items() if k != "hash"}
    record["hash"] = blake3_hex(canonical_json(body))  # keeps "keyed": true, no key
    lines[-1] = canonical_json(record)
    (tmp_path / AUDIT_FILE).write_bytes(b"".join(line + b"\n" for line in lines))
    with chain_key(KEY):
        check = verify(tmp_path)
    assert not check.ok
    assert "record hash mismatch" in check.problems[0]


def test_a_keyed_chain_without_the_key_is_refused_saying_why(tmp_path: Path) -> None:
    with chain_key(KEY):
        _two_runs(tmp_path)
    check = verify(tmp_path)
    assert not check.ok
    assert "the record is keyed: it can only be checked with the chain key" in check.problems[0]
    with pytest.raises(Exception, match="keyed"):
        write_run_record(make_report(5), tmp_path)  # nor appended to


def test_the_cli_reads_the_key_from_the_variable_it_is_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cret"
    with chain_key(derive_key(secret.encode())):
        _two_runs(tmp_path)
    env = {SECRET_VAR: secret}
    good = run_cli(
        None, "verify", "--state-dir", str(tmp_path), "--chain-key-env", SECRET_VAR, env=env
    )
    assert good.returncode == cli.EXIT_OK, good.stdout + good.stderr
    keyless = run_cli(None, "verify", "--state-dir", str(tmp_path))
    assert keyless.returncode == cli.EXIT_CHAIN_TAMPER
    assert "only be checked with the chain key" in keyless.stdout
    unset = run_cli(None, "verify", "--state-dir", str(tmp_path), "--chain-key-env", "NOPE_UNSET")
    assert unset.returncode == cli.EXIT_GENERIC
    assert "'NOPE_UNSET' is not set" in unset.stderr


def test_shard_jobs_with_a_key_cannot_be_forged_and_heads_are_checked(
    pytester: pytest.Pytester,
) -> None:
    copy_stub(pytester.path)
    env = {SECRET_VAR: "the CI secret"}
    heads = {}
    for index in (1, 2):
        state = pytester.path / "artifacts" / f"shard-{index}" / "state"
        job = run_cli(
            pytester.path,
            "run",
            "-p",
            "no:cacheprovider",
            "--codegenie-bench=stub",
            f"--codegenie-shard={index}/2",
            f"--codegenie-state-dir={state}",
            f"--codegenie-chain-key-env={SECRET_VAR}",
            env=env,
        )
        assert job.returncode == cli.EXIT_OK, job.stdout + job.stderr
        (line,) = [x for x in job.stdout.splitlines() if x.strip().startswith("chain head:")]
        heads[f"{index}/2"] = line.split(":", 1)[1].strip()
    art = str(pytester.path / "artifacts")
    expected = [f"--expected-head={shard}={head}" for shard, head in heads.items()]
    keyed = ("--chain-key-env", SECRET_VAR)

    honest = run_cli(pytester.path, "merge", art, "--state-dir", "ok", *keyed, *expected, env=env)
    assert honest.returncode == cli.EXIT_OK, honest.stdout + honest.stderr

    wrong = [f"--expected-head=1/2={'0' * 64}", expected[1]]
    refused = run_cli(pytester.path, "merge", art, "--state-dir", "w", *keyed, *wrong, env=env)
    assert refused.returncode == cli.EXIT_CHAIN_TAMPER
    assert "shard 1/2: its audit chain's head is" in refused.stderr

    for index in (1, 2):
        _forge(pytester.path / "artifacts" / f"shard-{index}" / "state")
    # live without the key: the re-hashed artifact merges
    forged = run_cli(pytester.path, "merge", art, "--state-dir", "forged", env=env)
    assert forged.returncode == cli.EXIT_OK, forged.stdout + forged.stderr
    # with the key it is refused, and so is the head its job printed
    caught = run_cli(pytester.path, "merge", art, "--state-dir", "f2", *keyed, env=env)
    assert caught.returncode != cli.EXIT_OK
    assert "not keyed" in caught.stderr
    heads_only = run_cli(pytester.path, "merge", art, "--state-dir", "f3", *expected, env=env)
    assert heads_only.returncode == cli.EXIT_CHAIN_TAMPER
