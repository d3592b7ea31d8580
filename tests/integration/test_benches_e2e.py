"""The shipped benches end to end with their baseline and no-op SUTs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pytest_codegenie_eval.audit import verify
from tests.conftest import REPO, read_jsonl

VULN = "vuln-remediation"
DISTROLESS = "migration-chainguard-distroless"


def copy_bench(dest_root: Path, name: str) -> Path:
    dest = dest_root / "bench" / name
    shutil.copytree(REPO / "bench" / name, dest, ignore=shutil.ignore_patterns("__pycache__"))
    docs = dest_root / "docs"
    docs.mkdir(exist_ok=True)
    shutil.copy(REPO / "docs" / "trust-tiers.yaml", docs / "trust-tiers.yaml")
    return dest


@pytest.mark.parametrize("mode", [[], ["-n", "2"]], ids=["no-xdist", "n2"])
def test_vuln_remediation_baseline_end_to_end(pytester: pytest.Pytester, mode: list[str]) -> None:
    copy_bench(pytester.path, VULN)
    result = pytester.runpytest_subprocess(
        *mode, f"--codegenie-bench={VULN}", "--codegenie-jsonl=out.jsonl"
    )
    assert result.ret == 0
    result.assert_outcomes(passed=10)
    result.stdout.fnmatch_lines([f"{VULN}: 10 cases, 10 passed, *lower_bound_95 0.787 (wilson)*"])
    check = verify(pytester.path / ".codegenie" / "eval")
    assert check.ok
    assert check.records == 1
    agg = next(
        line for line in read_jsonl(pytester.path / "out.jsonl") if line["type"] == "aggregate"
    )
    assert agg["chain_head"] == check.head


def test_vuln_remediation_noop_scores_zero_with_vuln_still_present(
    pytester: pytest.Pytester,
) -> None:
    copy_bench(pytester.path, VULN)
    result = pytester.runpytest_subprocess(
        f"--codegenie-bench={VULN}", "--codegenie-sut=noop", "--codegenie-jsonl=out.jsonl"
    )
    result.assert_outcomes(failed=10)
    cases = [c for c in read_jsonl(pytester.path / "out.jsonl") if c["type"] == "case"]
    assert len(cases) == 10
    for case in cases:
        assert case["score"] == 0.0
        codes = {fm["code"] for fm in case["failure_modes"]}
        assert "vuln.still_present" in codes, case["case_id"]


def test_distroless_three_cases_and_an_honest_verdict(pytester: pytest.Pytester) -> None:
    copy_bench(pytester.path, DISTROLESS)
    result = pytester.runpytest_subprocess(
        f"--codegenie-bench={DISTROLESS}", "--codegenie-verdict=bronze"
    )
    assert result.ret == 0
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            f"*codegenie verdict {DISTROLESS} → bronze: evidence INSUFFICIENT*",
            "*case count below floor (3 < 10)*",
        ]
    )


def _count_spawns(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    from pytest_codegenie_eval import execution, process, sut

    spawned: list[list[str]] = []
    real = process.run_process

    def counting(argv: list[str], **kwargs: object) -> process.ProcessResult:
        spawned.append(list(argv))
        return real(argv, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(execution, "run_process", counting)
    monkeypatch.setattr(sut, "run_process", counting)
    return spawned


def test_warm_rerun_hits_the_cache_for_every_case(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy_bench(pytester.path, VULN)
    spawned = _count_spawns(monkeypatch)
    pytester.runpytest_inprocess(f"--codegenie-bench={VULN}").assert_outcomes(passed=10)
    assert len(spawned) == 20  # ten SUTs and ten rubrics
    spawned.clear()
    warm = pytester.runpytest_inprocess(f"--codegenie-bench={VULN}", "--codegenie-jsonl=warm.jsonl")
    warm.assert_outcomes(passed=10)
    assert spawned == []
    lines = read_jsonl(pytester.path / "warm.jsonl")
    cases = [c for c in lines if c["type"] == "case"]
    assert all(c["cached"] is True for c in cases)
    assert sum(float(c["cost_usd"]) for c in cases) == 0.0
    assert lines[-1]["total_cost_usd"] == 0.0
    warm.stdout.fnmatch_lines(["*cache hits 10/10*"])
    bypass = pytester.runpytest_inprocess(f"--codegenie-bench={VULN}", "--codegenie-no-cache")
    bypass.stdout.fnmatch_lines(["*cache hits 0/10*"])


def test_cache_invalidation(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = copy_bench(pytester.path, VULN)
    spawned = _count_spawns(monkeypatch)
    pytester.runpytest_inprocess(f"--codegenie-bench={VULN}").assert_outcomes(passed=10)

    def rerun() -> pytest.RunResult:
        spawned.clear()
        return pytester.runpytest_inprocess(f"--codegenie-bench={VULN}")

    # a whitespace edit of rubric.py invalidates every entry of the task class
    rubric = bench / "rubric.py"
    rubric.write_text(rubric.read_text() + "\n")
    rerun().stdout.fnmatch_lines(["*cache hits 0/10*"])
    assert rerun().stdout.str().count("cache hits 10/10") == 1

    # a whitespace edit of one case.toml: refused until re-pinned, then exactly one miss
    case_dir = sorted(p for p in (bench / "cases").iterdir() if p.is_dir())[0]
    toml = case_dir / "case.toml"
    toml.write_text(toml.read_text() + "\n")
    refused = rerun()
    refused.assert_outcomes(passed=9, failed=1)
    refused.stdout.fnmatch_lines(["*harness.digest_mismatch*"])
    from pytest_codegenie_eval.digests import write_digests

    write_digests(bench / "cases")
    repinned = rerun()
    repinned.assert_outcomes(passed=10)
    repinned.stdout.fnmatch_lines(["*cache hits 9/10*"])
    assert len(spawned) == 2

    # another SUT command invalidates everything
    other = rerun_with = pytester.runpytest_inprocess(
        f"--codegenie-bench={VULN}", "--codegenie-sut=noop"
    )
    other.stdout.fnmatch_lines(["*cache hits 0/10*"])
    assert rerun_with is other
