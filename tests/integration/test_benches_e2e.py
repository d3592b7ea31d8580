"""The shipped benches end to end with their baseline and no-op SUTs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pytest_codegenie_eval.evidence.stats import lower_bound_95, seed_from_bench
from pytest_codegenie_eval.store.audit import verify
from tests.conftest import REPO, read_jsonl

VULN = "vuln-remediation"


def _betting_bound(n: int) -> float:
    """The gate's bound of n perfect cases of the (graded) shipped bench."""
    cases = sorted(p.name for p in (REPO / "bench" / VULN / "cases").iterdir() if p.is_dir())
    seed = seed_from_bench(VULN, cases, 1)
    return lower_bound_95([1.0] * n, seed=seed).value


DISTROLESS = "migration-chainguard-distroless"


def case_count(name: str) -> int:
    """How many cases the shipped bench has: the tests hold for any number of them."""
    cases = REPO / "bench" / name / "cases"
    return sum(1 for p in cases.iterdir() if (p / "case.toml").is_file())


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
    n = case_count(VULN)
    assert result.ret == 0
    result.assert_outcomes(passed=n)
    # every case scores 1.0; the task class is graded, so the gate's bound is the betting
    # bound, seeded by the bench (below the exact 0.05 ** (1 / n) a pass/fail class gets)
    bound = f"{_betting_bound(n):.3f}"
    result.stdout.fnmatch_lines(
        [f"{VULN}: {n} cases, {n} passed, *lower_bound_95 {bound} (betting)*"]
    )
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
    n = case_count(VULN)
    result.assert_outcomes(failed=n)
    cases = [c for c in read_jsonl(pytester.path / "out.jsonl") if c["type"] == "case"]
    assert len(cases) == n
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
            "*next: 3/3 passed: 9 perfect cases would reach bronze 0.70*",
        ]
    )
