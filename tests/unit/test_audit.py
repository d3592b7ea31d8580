"""The audit chain: record shape, tamper detection, torn tails, filters and concurrent appends."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import blake3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_codegenie_eval.errors import ChainTamperDetected
from pytest_codegenie_eval.models import BenchRunReport
from pytest_codegenie_eval.store.audit import (
    AUDIT_FILE,
    GENESIS_PREV_HASH,
    RECORD_FIELDS,
    canonical_json,
    chain_head,
    format_verify_summary,
    record_hash,
    verify,
    verify_or_raise,
    write_run_record,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_report(
    index: int,
    *,
    created_at: str = "2026-11-24T22:05:01.123456+00:00",
    complete: bool = True,
    task_class: str = "vuln-remediation",
    run_id: str | None = None,
) -> BenchRunReport:
    rid = run_id if run_id is not None else blake3.blake3(f"run-{index}".encode()).hexdigest()
    return BenchRunReport(
        run_id=rid if complete or run_id is not None else f"partial:{rid}",
        task_class=task_class,
        created_at=created_at,
        harness_version="0.1.0",
        complete=complete,
    )


def chain_lines(out_dir: Path) -> list[bytes]:
    return (out_dir / AUDIT_FILE).read_bytes().splitlines(keepends=True)


def write_lines(out_dir: Path, lines: list[bytes]) -> None:
    (out_dir / AUDIT_FILE).write_bytes(b"".join(lines))


def chain_records(out_dir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in chain_lines(out_dir)]


def forge(out_dir: Path, records: list[dict[str, object]]) -> None:
    """Rewrite the chain as a forger would: re-link and re-hash every record from genesis."""
    prev = GENESIS_PREV_HASH
    lines = []
    for record in records:
        body = {key: value for key, value in record.items() if key != "hash"}
        body["prev_hash"] = prev
        body["hash"] = prev = record_hash(body)
        lines.append(canonical_json(body) + b"\n")
    write_lines(out_dir, lines)


def problem_text(out_dir: Path, **kwargs: object) -> str:
    result = verify(out_dir, **kwargs)  # type: ignore[arg-type]
    assert not result.ok
    assert result.problems
    return "\n".join(result.problems)


@pytest.fixture
def chain3(tmp_path: Path) -> tuple[Path, list[Path], list[str]]:
    """A state directory with three recorded runs (the second one incomplete)."""
    out_dir = tmp_path / "eval"
    paths, heads = [], []
    for index in range(3):
        path, head = write_run_record(
            make_report(
                index,
                created_at=f"2026-11-{20 + index}T10:00:00+00:00",
                complete=index != 1,
            ),
            out_dir,
        )
        paths.append(path)
        heads.append(head)
    return out_dir, paths, heads


# --------------------------------------------------------------------------- writing


def test_genesis_record_has_the_contract_shape(tmp_path: Path) -> None:
    report = make_report(0)
    path, head = write_run_record(report, tmp_path)

    (line,) = chain_lines(tmp_path)
    record = json.loads(line)
    assert tuple(sorted(record)) == tuple(sorted(RECORD_FIELDS))
    assert record["seq"] == 0
    assert record["prev_hash"] == GENESIS_PREV_HASH == "0" * 64
    assert record["created_at"] == report.created_at
    assert record["run_id"] == report.run_id
    assert record["task_class"] == "vuln-remediation"
    assert record["complete"] is True
    assert record["report_path"] == path.relative_to(tmp_path).as_posix()
    assert record["report_digest"] == blake3.blake3(path.read_bytes()).hexdigest()
    assert record["hash"] == head == record_hash(record)
    # the line is exactly the canonical encoding, newline-terminated
    assert line == canonical_json(record) + b"\n"


def test_report_file_name_and_bytes(tmp_path: Path) -> None:
    report = make_report(
        0, created_at="2026-11-24T22:05:01.123456+00:00", complete=False, run_id=None
    )
    assert report.run_id.startswith("partial:")
    path, _ = write_run_record(report, tmp_path)

    short = report.run_id.removeprefix("partial:")[:8]
    assert path == tmp_path / "runs" / f"20261124T220501Z-{short}-vuln-remediation.json"
    assert path.read_bytes() == (report.model_dump_json(indent=2) + "\n").encode()
    assert BenchRunReport.model_validate_json(path.read_bytes()) == report
    # no temporary file is left behind
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [path.name]


def test_report_name_is_rendered_in_utc(tmp_path: Path) -> None:
    path, _ = write_run_record(make_report(0, created_at="2026-11-25T01:05:01+03:00"), tmp_path)
    assert path.name.startswith("20261124T220501Z-")


def test_existing_report_file_is_never_overwritten(tmp_path: Path) -> None:
    report = make_report(0)
    first, _ = write_run_record(report, tmp_path)
    second, _ = write_run_record(report, tmp_path)
    third, _ = write_run_record(report, tmp_path)

    assert len({first, second, third}) == 3
    assert second.name == first.name.removesuffix(".json") + "-2.json"
    assert third.name == first.name.removesuffix(".json") + "-3.json"
    result = verify(tmp_path, strict=True)
    assert result.ok, result.problems
    assert result.records == 3


def test_unparsable_created_at_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="created_at 'yesterday'"):
        write_run_record(make_report(0, created_at="yesterday"), tmp_path)
    assert not (tmp_path / AUDIT_FILE).exists()


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": "é", "c": [True, None]}) == (
        '{"a":"é","b":1,"c":[true,null]}'.encode()
    )
    with pytest.raises(ValueError, match="JSON compliant"):
        canonical_json({"x": float("nan")})


def test_record_hash_ignores_the_hash_field() -> None:
    body: dict[str, object] = {"seq": 0, "prev_hash": GENESIS_PREV_HASH}
    digest = record_hash(body)
    assert digest == blake3.blake3(canonical_json(body)).hexdigest()
    assert record_hash({**body, "hash": "whatever"}) == digest


# --------------------------------------------------------------------------- verifying


def test_chain_of_three_verifies_and_head_is_last_hash(
    chain3: tuple[Path, list[Path], list[str]],
) -> None:
    out_dir, _, heads = chain3
    records = chain_records(out_dir)

    result = verify(out_dir, strict=True)

    assert result.ok, result.problems
    assert result.records == 3
    assert (result.verified_complete, result.verified_incomplete) == (2, 1)
    assert result.head == heads[-1] == records[-1]["hash"] == chain_head(out_dir)
    assert [r["seq"] for r in records] == [0, 1, 2]
    assert [r["prev_hash"] for r in records] == [GENESIS_PREV_HASH, heads[0], heads[1]]
    assert format_verify_summary(result) == "verified-complete 2 / verified-incomplete 1"
    assert verify_or_raise(out_dir) == result


def test_missing_chain_is_an_empty_valid_chain(tmp_path: Path) -> None:
    result = verify(tmp_path / "never-created")
    assert result.ok
    assert (result.records, result.head, result.problems) == (0, None, ())
    assert chain_head(tmp_path / "never-created") is None
    assert format_verify_summary(result) == "verified-complete 0 / verified-incomplete 0"


def _change_record_byte(out_dir: Path, paths: list[Path]) -> None:
    lines = chain_lines(out_dir)
    lines[1] = lines[1].replace(
        b'"task_class":"vuln-remediation"', b'"task_class":"vuln-remediatioN"'
    )
    write_lines(out_dir, lines)


def _change_report_byte(out_dir: Path, paths: list[Path]) -> None:
    data = bytearray(paths[1].read_bytes())
    data[10] ^= 0x01
    paths[1].write_bytes(bytes(data))


def _delete_report(out_dir: Path, paths: list[Path]) -> None:
    paths[2].unlink()


def _remove_middle_record(out_dir: Path, paths: list[Path]) -> None:
    lines = chain_lines(out_dir)
    del lines[1]
    write_lines(out_dir, lines)


def _reorder_records(out_dir: Path, paths: list[Path]) -> None:
    lines = chain_lines(out_dir)
    lines[1], lines[2] = lines[2], lines[1]
    write_lines(out_dir, lines)


def _tear_last_line(out_dir: Path, paths: list[Path]) -> None:
    chain = out_dir / AUDIT_FILE
    chain.write_bytes(chain.read_bytes()[:-40])


def _duplicate_record(out_dir: Path, paths: list[Path]) -> None:
    lines = chain_lines(out_dir)
    lines.insert(2, lines[1])
    write_lines(out_dir, lines)


def _seq_gap_rehashed(out_dir: Path, paths: list[Path]) -> None:
    records = chain_records(out_dir)
    records[2]["seq"] = 3
    forge(out_dir, records)


def _duplicate_rehashed(out_dir: Path, paths: list[Path]) -> None:
    # a forger re-links a copy of record 1 as seq 2: links and hashes are fine, the
    # repeated report is not
    records = chain_records(out_dir)
    records[2] = {**records[1], "seq": 2}
    forge(out_dir, records)


def _report_path_escapes(out_dir: Path, paths: list[Path]) -> None:
    records = chain_records(out_dir)
    records[1]["report_path"] = "../outside.json"
    forge(out_dir, records)


@pytest.mark.parametrize(
    ("tamper", "expected_seq", "fragments"),
    [
        pytest.param(_change_record_byte, 1, ["(seq 1)", "record hash mismatch"], id="record-byte"),
        pytest.param(_change_report_byte, 1, ["(seq 1)", "digest mismatch"], id="report-byte"),
        pytest.param(_delete_report, 2, ["(seq 2)", "missing"], id="report-deleted"),
        pytest.param(
            _remove_middle_record,
            2,
            ["(seq 2)", "has seq 2, expected 1", "prev_hash does not match"],
            id="middle-removed",
        ),
        pytest.param(
            _reorder_records,
            2,
            ["has seq 2, expected 1", "has seq 1, expected 3", "prev_hash does not match"],
            id="reordered",
        ),
        pytest.param(_tear_last_line, 2, ["(seq 2)", "torn last line"], id="torn-tail"),
        pytest.param(
            _duplicate_record,
            1,
            ["has seq 1, expected 2", "already named by the record with seq 1"],
            id="duplicated",
        ),
        pytest.param(_seq_gap_rehashed, 3, ["(seq 3)", "has seq 3, expected 2"], id="seq-gap"),
        pytest.param(
            _duplicate_rehashed, 2, ["already named by the record with seq 1"], id="dup-rehashed"
        ),
        pytest.param(_report_path_escapes, 1, ["(seq 1)", "'../outside.json'"], id="path-escapes"),
    ],
)
def test_tamper_is_detected_and_named(
    chain3: tuple[Path, list[Path], list[str]],
    tamper: Callable[[Path, list[Path]], None],
    expected_seq: int,
    fragments: list[str],
) -> None:
    out_dir, paths, _ = chain3
    assert verify(out_dir).ok

    tamper(out_dir, paths)

    text = problem_text(out_dir)
    for fragment in fragments:
        assert fragment in text, text
    with pytest.raises(ChainTamperDetected) as excinfo:
        verify_or_raise(out_dir)
    assert excinfo.value.seq == expected_seq
    assert "audit chain tampered" in str(excinfo.value)


def test_report_problem_names_the_report_path(
    chain3: tuple[Path, list[Path], list[str]],
) -> None:
    out_dir, paths, _ = chain3
    _change_report_byte(out_dir, paths)
    with pytest.raises(ChainTamperDetected) as excinfo:
        verify_or_raise(out_dir)
    assert excinfo.value.path == paths[1]
    assert excinfo.value.seq == 1
    assert str(paths[1]) in verify(out_dir).problems[0]


def test_records_removed_at_the_end_need_the_anchored_head(
    chain3: tuple[Path, list[Path], list[str]],
) -> None:
    out_dir, paths, heads = chain3
    write_lines(out_dir, chain_lines(out_dir)[:-1])
    paths[2].unlink()

    # a chain cut at the end is a valid shorter chain: this is why the head must be anchored
    assert verify(out_dir).ok
    text = problem_text(out_dir, expected_head=heads[2])
    assert f"expected head {heads[2]} is not in the chain" in text


def test_expected_head_present_and_absent(chain3: tuple[Path, list[Path], list[str]]) -> None:
    out_dir, _, heads = chain3
    for head in heads:
        assert verify(out_dir, expected_head=head).ok
        assert verify(out_dir, expected_head=head.upper()).ok
    assert not verify(out_dir, expected_head="f" * 64).ok


def test_rehashed_history_is_exposed_by_the_anchored_head(
    chain3: tuple[Path, list[Path], list[str]],
) -> None:
    out_dir, _, heads = chain3
    records = chain_records(out_dir)
    records[1]["complete"] = True  # pass an incomplete run off as complete
    forge(out_dir, records)

    # without an anchor a consistent forgery from genesis cannot be told apart...
    assert verify(out_dir).verified_incomplete == 0
    # ...with the head recorded earlier it can
    assert not verify(out_dir, expected_head=heads[2]).ok
    assert not verify(out_dir, expected_head=heads[1]).ok
    assert verify(out_dir, expected_head=heads[0]).ok


# --------------------------------------------------------------------------- torn tail


@pytest.mark.parametrize(
    "fragment",
    [b'{"seq":3,"prev_ha', b"", b"\n"],
    ids=["partial-json", "complete-json-no-newline", "blank-line"],
)
def test_torn_tail_is_reported_and_append_refused(
    chain3: tuple[Path, list[Path], list[str]], fragment: bytes
) -> None:
    out_dir, _, _ = chain3
    chain = out_dir / AUDIT_FILE
    if fragment == b"":
        # a whole, valid-looking record whose newline never made it to disk
        fragment = chain_lines(out_dir)[-1].rstrip(b"\n").replace(b'"seq":2', b'"seq":3')
    chain.write_bytes(chain.read_bytes() + fragment)
    before = chain.read_bytes()
    runs_before = set((out_dir / "runs").iterdir())

    assert not verify(out_dir).ok
    with pytest.raises(ChainTamperDetected) as excinfo:
        chain_head(out_dir)
    assert excinfo.value.path == chain
    with pytest.raises(ChainTamperDetected, match="refusing to append") as excinfo:
        write_run_record(make_report(99), out_dir)

    # nothing was appended, never silently repaired; the report is kept and named
    assert chain.read_bytes() == before
    (new_report,) = set((out_dir / "runs").iterdir()) - runs_before
    assert str(new_report) in str(excinfo.value)
    assert "NOT recorded" in str(excinfo.value)


def test_torn_tail_problem_text(chain3: tuple[Path, list[Path], list[str]]) -> None:
    out_dir, paths, _ = chain3
    _tear_last_line(out_dir, paths)
    text = problem_text(out_dir)
    assert re.search(r"audit\.jsonl \(seq 2\): torn last line \(\d+ bytes", text), text


def test_append_checks_the_tail_only(chain3: tuple[Path, list[Path], list[str]]) -> None:
    out_dir, _, _ = chain3
    _change_record_byte(out_dir, [])

    # the damage to seq 1 is not the appender's to judge (that would make appends O(n))...
    _, head = write_run_record(make_report(3), out_dir)
    assert chain_head(out_dir) == head
    # ...but verify still finds it
    assert "(seq 1)" in problem_text(out_dir)


def test_append_refused_when_last_record_was_altered(
    chain3: tuple[Path, list[Path], list[str]],
) -> None:
    out_dir, _, _ = chain3
    lines = chain_lines(out_dir)
    lines[-1] = lines[-1].replace(b'"complete":true', b'"complete":false')
    write_lines(out_dir, lines)
    with pytest.raises(ChainTamperDetected, match="record hash mismatch") as excinfo:
        write_run_record(make_report(3), out_dir)
    assert excinfo.value.seq == 2


# --------------------------------------------------------------------------- filters


def test_since_restricts_reports_not_links(chain3: tuple[Path, list[Path], list[str]]) -> None:
    out_dir, paths, _ = chain3  # created 2026-11-20, -21 (incomplete), -22

    everything = verify(out_dir)
    assert (everything.verified_complete, everything.verified_incomplete) == (2, 1)
    for since in (
        "2026-11-21T00:00:00+00:00",
        "2026-11-21",  # naive means UTC
        datetime(2026, 11, 21, tzinfo=UTC),
    ):
        result = verify(out_dir, since)
        assert result.ok
        assert result.records == 3
        assert (result.verified_complete, result.verified_incomplete) == (1, 1)
    assert verify(out_dir, "2026-11-21T10:00:00+00:00").verified_incomplete == 1  # inclusive
    assert verify(out_dir, "2027-01-01").verified_complete == 0

    # a report before `since` is not checked...
    paths[0].unlink()
    assert verify(out_dir, "2026-11-21").ok
    assert not verify(out_dir).ok
    # ...but the links of the whole chain always are
    _change_record_byte(out_dir, paths)  # seq 1 is inside the window
    lines = chain_lines(out_dir)
    lines[0] = lines[0].replace(b'"complete":true', b'"complete":false')
    write_lines(out_dir, lines)
    assert "(seq 0)" in problem_text(out_dir, since="2026-11-22")


def test_strict_flags_unrecorded_files_and_unknown_fields(
    chain3: tuple[Path, list[Path], list[str]],
) -> None:
    out_dir, _, _ = chain3
    stray = out_dir / "runs" / "20261124T000000Z-deadbeef-stray.json"
    stray.write_text("{}\n")
    assert verify(out_dir).ok
    assert f"{stray}: not named by any audit record" in problem_text(out_dir, strict=True)
    stray.unlink()

    records = chain_records(out_dir)
    records[1]["note"] = "added later"
    forge(out_dir, records)
    assert verify(out_dir).ok
    assert "(seq 1): unknown field(s): note" in problem_text(out_dir, strict=True)


# --------------------------------------------------------------------------- concurrency

_APPENDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from pytest_codegenie_eval.store.audit import write_run_record
    from pytest_codegenie_eval.models import BenchRunReport

    out_dir, worker = Path(sys.argv[1]), int(sys.argv[2])
    print("ready", flush=True)
    sys.stdin.readline()  # start together: the parent releases every worker at once
    for index in range(5):
        report = BenchRunReport(
            # same first 8 characters, task class and second for everyone: all workers
            # fight over one file name, which the lock and the counter suffix must settle
            run_id=f"cafebabe-{worker}-{index}",
            task_class="concurrency",
            created_at="2026-11-24T22:05:01+00:00",
            harness_version="0.1.0",
        )
        write_run_record(report, out_dir)
    """
)


def test_concurrent_appending_processes_lose_nothing(tmp_path: Path) -> None:
    out_dir = tmp_path / "eval"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _APPENDER, str(out_dir), str(worker)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO_ROOT,
        )
        for worker in range(8)
    ]
    try:
        for proc in workers:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"ready\n"
        for proc in workers:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        for proc in workers:
            _, stderr = proc.communicate(timeout=120)
            assert proc.returncode == 0, stderr.decode()
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()

    result = verify(out_dir, strict=True)
    assert result.ok, result.problems
    assert result.records == result.verified_complete == 40
    records = chain_records(out_dir)
    assert [r["seq"] for r in records] == list(range(40))
    assert sorted(str(r["run_id"]) for r in records) == sorted(
        f"cafebabe-{w}-{i}" for w in range(8) for i in range(5)
    )
    assert len(list((out_dir / "runs").iterdir())) == 40


# --------------------------------------------------------------------------- properties


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out_dir = tmp_path_factory.mktemp("pristine") / "eval"
    paths = [
        write_run_record(
            make_report(i, complete=i != 1, task_class="naïve-ünïcode" if i == 2 else "t"),
            out_dir,
        )[0]
        for i in range(3)
    ]
    return out_dir, paths


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_single_byte_change_of_the_chain_fails_verify(
    pristine: tuple[Path, list[Path]], data: st.DataObject
) -> None:
    out_dir, _ = pristine
    chain = out_dir / AUDIT_FILE
    original = chain.read_bytes()
    position = data.draw(st.integers(0, len(original) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="xor mask")
    mutated = bytearray(original)
    mutated[position] ^= mask
    chain.write_bytes(bytes(mutated))
    try:
        # every line must be the canonical encoding of what it parses to, so even a change
        # that parses to equal JSON (an escape, a space) is caught, not only value changes
        assert not verify(out_dir).ok
    finally:
        chain.write_bytes(original)
    assert verify(out_dir).ok


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_single_byte_change_of_a_report_fails_verify(
    pristine: tuple[Path, list[Path]], data: st.DataObject
) -> None:
    out_dir, paths = pristine
    path = data.draw(st.sampled_from(paths), label="report")
    original = path.read_bytes()
    position = data.draw(st.integers(0, len(original) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="xor mask")
    mutated = bytearray(original)
    mutated[position] ^= mask
    path.write_bytes(bytes(mutated))
    try:
        result = verify(out_dir)
        assert not result.ok
        assert any(str(path) in problem for problem in result.problems)
    finally:
        path.write_bytes(original)


# --------------------------------------------------------------------------- shard kinds


def test_shard_and_merged_reports_are_recorded_with_their_kind(tmp_path: Path) -> None:
    from pytest_codegenie_eval.models import MergedShard, ShardInfo

    out_dir = tmp_path / "eval"
    shard = make_report(0, complete=False).model_copy(
        update={"shard": ShardInfo(index=1, count=2, cases=()), "incomplete_reason": "shard"}
    )
    sources = ["a" * 64, "b" * 64]
    merged = make_report(1).model_copy(
        update={
            "merged_from": tuple(
                MergedShard(index=i + 1, count=2, run_id="r", report_digest=d, source="s")
                for i, d in enumerate(sources)
            )
        }
    )
    write_run_record(shard, out_dir)
    write_run_record(merged, out_dir)
    first, second = chain_records(out_dir)
    assert first["kind"] == "shard"
    assert "sources" not in first
    assert (second["kind"], second["sources"]) == ("merged", sources)
    assert verify(out_dir, strict=True).ok

    # a forger who re-hashes a record cannot slip a malformed source list past verify
    for bad in (["not-hex"], "a" * 64, [1]):
        forge(out_dir, [first, {**second, "sources": bad}])
        assert "field(s) of the wrong type: sources" in problem_text(out_dir)
