"""A CI matrix: `--codegenie-shard=I/N` jobs and `codegenie-eval merge` (issue 15).

The end-to-end test is the documented GitHub Actions flow with N = 3: three jobs each write
their own state directory (the artifacts), a final job merges the directory of artifacts,
verifies the chain and asks for a verdict; the merged run equals a single machine's run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import blake3
import pytest

from pytest_codegenie_eval.cli import main as cli
from pytest_codegenie_eval.evidence.shards import shard_of
from tests.conftest import REPO, copy_stub, newest_report, read_jsonl, repin, run_cli

RUN = ("run", "-p", "no:cacheprovider", "--codegenie-bench=stub")
EXTRA = 9  # cases added to the stub's three, a quarter of them answered wrongly by design


def _grow(task_class: Path) -> list[str]:
    """Add cases c00..c08 to the stub bench; the baseline fails those whose key is off."""
    template = task_class / "cases" / "alpha"
    for i in range(EXTRA):
        case_id = f"c{i:02d}"
        case = task_class / "cases" / case_id
        shutil.copytree(template, case)
        toml = (case / "case.toml").read_text()
        toml = toml.replace('"alpha"', f'"{case_id}"').replace(
            "0011223344556611", f"00112233445566{i + 30:02x}"
        )
        (case / "case.toml").write_text(toml)
        (case / "input" / "question.txt").write_text(f"What is one more than {i}\n")
        answer = i + 1 if i % 4 else i + 7  # c00, c04, c08 expect a wrong answer
        (case / "expected" / "answer.txt").write_text(f"{answer}\n")
    repin(task_class)
    return sorted(["alpha", "beta", "gamma", *(f"c{i:02d}" for i in range(EXTRA))])


def _report(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _only_report(state: Path) -> Path:
    reports = sorted((state / "runs").glob("*.json"))
    assert len(reports) == 1, reports
    return reports[0]


def _shard_job(root: Path, index: int, state: Path, *extra: str) -> Any:
    return run_cli(
        root, *RUN, f"--codegenie-shard={index}/3", f"--codegenie-state-dir={state}", *extra
    )


def _bronze_verdict(root: Path, state: Path) -> Any:
    """``promote-verdict`` for bronze on the stub's evidence in ``state``."""
    return run_cli(
        root,
        "promote-verdict",
        "--task-class=stub",
        "--tier=bronze",
        f"--state-dir={state}",
        "--tiers=tiers.yaml",
    )


@pytest.fixture(scope="module")
def matrix_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Three shard jobs' state directories under artifacts/ (shard 2 with xdist), made once
    for the module: the jobs cost seconds each, and every test gets its own copy."""
    root = tmp_path_factory.mktemp("matrix")
    ids = _grow(copy_stub(root))
    art = root / "artifacts"
    for index in (1, 2, 3):
        extra = ("-n", "2") if index == 2 else ()
        job = _shard_job(root, index, art / f"shard-{index}" / "state", *extra)
        assert job.returncode in (cli.EXIT_OK, cli.EXIT_GENERIC), job.stdout + job.stderr
        assert f"SHARD {index}/3 of stub" in job.stdout
    return root, ids


@pytest.fixture
def matrix(
    pytester: pytest.Pytester, matrix_template: tuple[Path, list[str]]
) -> tuple[Path, list[str]]:
    """This test's copy of the three shard jobs' artifacts, and the grown stub bench."""
    root, ids = matrix_template
    shutil.copytree(root, pytester.path, dirs_exist_ok=True, symlinks=True)
    return pytester.path / "artifacts", ids


def test_three_shard_jobs_merge_into_the_single_machine_run(
    pytester: pytest.Pytester, matrix: tuple[Path, list[str]]
) -> None:
    art, ids = matrix
    shard_reports = [_only_report(art / f"shard-{i}" / "state") for i in (1, 2, 3)]
    seen: list[str] = []
    for index, path in enumerate(shard_reports, start=1):
        report = _report(path)
        assert (report["shard"]["index"], report["shard"]["count"]) == (index, 3)
        assert [c["case_id"] for c in report["shard"]["cases"]] == ids  # the full list
        assert (report["incomplete_reason"], report["complete"]) == ("shard", False)
        mine = [c["case_id"] for c in report["cases"]]
        assert all(shard_of(case_id, 3) == index for case_id in mine)
        seen += mine
    assert sorted(seen) == ids  # disjoint and complete

    final = pytester.path / "final"
    summary = pytester.path / "step-summary.md"
    step = {"GITHUB_STEP_SUMMARY": str(summary)}
    merged = run_cli(pytester.path, "merge", str(art), "--state-dir", str(final), env=step)
    assert merged.returncode == cli.EXIT_OK, merged.stderr
    # under GitHub Actions, the merged run goes into the step summary (issue 26)
    assert "### codegenie eval: stub" in summary.read_text()
    assert "| 12 | 9 |" in summary.read_text()
    assert "stub: merged shards 1/3, 2/3, 3/3: 12 cases, 9 passed" in merged.stdout

    single = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--codegenie-bench=stub")
    single.assert_outcomes(passed=9, failed=3)
    one = newest_report(pytester.path)
    whole = _report(_only_report(final))
    for name in ("run_id", "n", "passed_count", "mean", "stddev", "lower_bound_95", "bound"):
        assert whole[name] == one[name], name
    assert whole["complete"]
    assert whole["shard"] is None
    assert [c["case_id"] for c in whole["cases"]] == [c["case_id"] for c in one["cases"]]

    # the merged record names the exact bytes of the shard reports it was built from
    record = json.loads((final / "audit.jsonl").read_text().splitlines()[-1])
    assert record["kind"] == "merged"
    assert record["sources"] == [blake3.blake3(p.read_bytes()).hexdigest() for p in shard_reports]
    assert [m["report_digest"] for m in whole["merged_from"]] == record["sources"]
    assert all(m["chain_head"] for m in whole["merged_from"])

    verified = run_cli(pytester.path, "verify", "--state-dir", str(final))
    assert verified.returncode == cli.EXIT_OK, verified.stdout
    shutil.copy(REPO / "docs" / "trust-tiers.yaml", pytester.path / "tiers.yaml")
    verdicts = []
    for state in (final, pytester.path / ".codegenie" / "eval"):
        out = _bronze_verdict(pytester.path, state)
        assert "no run reports" not in out.stdout, out.stdout
        verdicts.append(out.stdout.replace(str(state), "STATE").splitlines()[:-1])
    assert verdicts[0] == verdicts[1]  # the same evidence: the same verdict, word for word
    judged = run_cli(
        pytester.path,
        "promote-verdict",
        "--task-class=stub",
        "--tier=bronze",
        f"--state-dir={final}",
        "--tiers=tiers.yaml",
        env=step,
    )
    assert judged.returncode in (cli.EXIT_OK, cli.EXIT_GENERIC)
    assert "### codegenie verdict: stub → bronze" in summary.read_text()


def test_missing_duplicated_and_foreign_shards_are_named(
    pytester: pytest.Pytester, matrix: tuple[Path, list[str]]
) -> None:
    art, _ = matrix
    final = str(pytester.path / "final")

    missing = run_cli(
        pytester.path, "merge", str(art / "shard-1"), str(art / "shard-3"), "--state-dir", final
    )
    assert missing.returncode == cli.EXIT_GENERIC
    assert "stub: shard(s) 2/3 missing" in missing.stderr

    # the same artifact twice (issue 26): said so, recorded once
    shutil.copytree(art / "shard-2", pytester.path / "again")
    once = str(pytester.path / "once")
    twice = run_cli(pytester.path, "merge", str(art), "again", "--state-dir", once)
    assert twice.returncode == cli.EXIT_OK, twice.stderr
    assert "the same bytes as" in twice.stdout
    assert "(shard 2/3 of stub); merged once" in twice.stdout
    assert len((Path(once) / "audit.jsonl").read_text().splitlines()) == 1
    # a second, different report of one shard is a conflict, not a copy
    rerun = pytester.path / "rerun"
    _shard_job(pytester.path, 2, rerun / "shard-2" / "state", "--codegenie-no-cache")
    clash = run_cli(pytester.path, "merge", str(art), str(rerun), "--state-dir", final)
    assert clash.returncode == cli.EXIT_GENERIC
    assert "duplicates shard 2/3 of stub" in clash.stderr

    # shard 3 re-run with another SUT: the other shards measured a different agent
    other = pytester.path / "other"
    shutil.copytree(art, other)
    shutil.rmtree(other / "shard-3")
    _shard_job(pytester.path, 3, other / "shard-3" / "state", "--codegenie-sut=noop")
    foreign = run_cli(pytester.path, "merge", str(other), "--state-dir", final)
    assert foreign.returncode == cli.EXIT_GENERIC
    assert "shard 3/3 of stub ran a different SUT" in foreign.stderr
    assert "shard-3" in foreign.stderr

    # a shard whose job selected a subset (-k) is partial
    part = pytester.path / "part"
    shutil.copytree(art, part)
    shutil.rmtree(part / "shard-1")
    _shard_job(pytester.path, 1, part / "shard-1" / "state", "-k", "c03")
    partial = run_cli(pytester.path, "merge", str(part), "--state-dir", final)
    assert partial.returncode == cli.EXIT_GENERIC
    assert "shard 1/3 of stub is partial" in partial.stderr
    assert not Path(final).exists()  # nothing was recorded by a refused merge


def test_a_forged_shard_artifact_is_refused(
    pytester: pytest.Pytester, matrix: tuple[Path, list[str]]
) -> None:
    """Whoever can write an artifact could flip a failed case to passed; the shard's own
    chain (its record binds the report's bytes) exposes it."""
    art, _ = matrix
    victim = next(
        path
        for path in (_only_report(art / f"shard-{i}" / "state") for i in (1, 2, 3))
        if any(not c["passed"] for c in _report(path)["cases"])
    )
    report = _report(victim)
    flipped = sum(1 for case in report["cases"] if not case["passed"])
    for case in report["cases"]:
        case.update(score=1.0, passed=True, failure_modes=[])
    victim.write_text(json.dumps(report, indent=2) + "\n")

    refused = run_cli(pytester.path, "merge", str(art), "--state-dir", "final")
    assert refused.returncode == cli.EXIT_GENERIC
    assert f"{victim.parent.parent}: its audit chain" in refused.stderr
    assert "report digest mismatch" in refused.stderr

    # the attack is live without the chain check: the forged bytes merge and score higher
    for i in (1, 2, 3):
        shutil.copy(_only_report(art / f"shard-{i}" / "state"), pytester.path / f"bare-{i}.json")
    files = [f"bare-{i}.json" for i in (1, 2, 3)]
    unchecked = run_cli(
        pytester.path, "merge", *files, "--allow-unrecorded", "--state-dir", "forged"
    )
    assert unchecked.returncode == cli.EXIT_OK, unchecked.stderr
    assert f"12 cases, {9 + flipped} passed" in unchecked.stdout  # 9 in the honest run
    # and a bare file is refused unless its missing chain is accepted explicitly
    plain = run_cli(pytester.path, "merge", *files, "--state-dir", "forged2")
    assert plain.returncode == cli.EXIT_GENERIC
    assert "bare-1.json: has no audit chain beside it" in plain.stderr


def test_a_report_not_recorded_in_its_chain_is_refused(
    pytester: pytest.Pytester, matrix: tuple[Path, list[str]]
) -> None:
    art, _ = matrix
    report = _only_report(art / "shard-1" / "state")
    stray = art / "shard-2" / "state" / "runs" / report.name
    shutil.copy(report, stray)
    out = run_cli(pytester.path, "merge", str(stray), "--state-dir", "final")
    assert out.returncode == cli.EXIT_GENERIC
    assert f"{stray}: is not recorded in" in out.stderr


def test_a_state_dir_of_shards_is_no_evidence_until_merged(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    """Shards run into one state directory (one machine, or a shared volume): the shard
    records are not evidence; the merge in the same directory is, and a whole shard is no
    partial run for --codegenie-fail-on-partial."""
    shutil.copy(REPO / "docs" / "trust-tiers.yaml", pytester.path / "tiers.yaml")
    for index in (1, 2, 3):
        result = pytester.runpytest_inprocess(
            "-p",
            "no:cacheprovider",
            "--codegenie-bench=stub",
            f"--codegenie-shard={index}/3",
            "--codegenie-fail-on-partial",
            "--codegenie-verdict=bronze",
            "--codegenie-tiers=tiers.yaml",
            "--codegenie-jsonl=out.jsonl",
        )
        assert result.ret == 0
        assert "no run reports in evidence window" in result.stdout.str()
        aggregate = read_jsonl(pytester.path / "out.jsonl")[-1]
        assert aggregate["shard"] == f"{index}/3"
    state = pytester.path / ".codegenie" / "eval"
    kinds = [
        json.loads(line).get("kind") for line in (state / "audit.jsonl").read_text().splitlines()
    ]
    assert kinds == ["shard", "shard", "shard"]
    out = run_cli(pytester.path, "merge", str(state), "--state-dir", str(state))
    assert out.returncode == cli.EXIT_OK, out.stderr
    verdict = _bronze_verdict(pytester.path, state)
    # the merged run is judged on its bound alone (three cases are too few for bronze),
    # not refused as missing or partial evidence
    reasons = [line for line in verdict.stdout.splitlines() if line.startswith("  - ")]
    assert reasons == ["  - lower_bound_95 0.37 < bronze threshold 0.70"], verdict.stdout


def test_an_empty_shard_still_reports_and_bad_shard_values_are_usage_errors(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    # the stub's three cases fall in shards 1, 3 and 2 of 3; of 7 shards some are empty
    empty = next(
        i for i in range(1, 8) if i not in {shard_of(c, 7) for c in ("alpha", "beta", "gamma")}
    )
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--codegenie-bench=stub", f"--codegenie-shard={empty}/7"
    )
    # a matrix job that got no case succeeds and says so (it exited 5 before, issue 26)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([f"SHARD {empty}/7 of stub (an empty shard: no case falls in it)*"])
    report = newest_report(pytester.path)
    assert report["shard"]["index"] == empty
    assert report["cases"] == []
    assert report["incomplete_reason"] == "shard"
    bad = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--codegenie-bench=stub", "--codegenie-shard=4/3"
    )
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "--codegenie-shard must be I/N" in bad.stderr.str()
