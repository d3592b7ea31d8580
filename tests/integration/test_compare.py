"""`codegenie-eval compare A B` and --codegenie-compare-to: a paired comparison (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy.stats import binomtest

from pytest_codegenie_eval.cli import main as cli
from pytest_codegenie_eval.evidence.compare import compare
from pytest_codegenie_eval.models import BenchRunReport, CaseResult
from tests.conftest import newest_report, run_cli

BASE = ("-p", "no:cacheprovider", "--codegenie-bench=stub")


@pytest.fixture
def two_runs(pytester: pytest.Pytester, stub_bench: Path) -> tuple[str, str]:
    """A: the no-op SUT (fails everything). B: the baseline (passes everything)."""
    pytester.runpytest_inprocess(*BASE, "--codegenie-sut=noop").assert_outcomes(failed=3)
    a = newest_report(pytester.path)["run_id"]
    pytester.runpytest_inprocess(*BASE).assert_outcomes(passed=3)
    b = newest_report(pytester.path)["run_id"]
    return a, b


def test_compare_pairs_cases_and_bounds_the_difference(
    pytester: pytest.Pytester, two_runs: tuple[str, str]
) -> None:
    a, b = two_runs
    state = str(pytester.path / ".codegenie" / "eval")
    out = run_cli(pytester.path, "compare", a[:12], b, "--state-dir", state, "--json")
    assert out.returncode == cli.EXIT_OK, out.stderr
    result = json.loads(out.stdout)
    assert result["paired"] == 3
    assert result["counts"] == {"better": 3, "worse": 0, "same": 0}
    assert result["mean_delta"] == 1.0
    # the stub declares pass/fail scores: the exact bound from the discordant pairs. Three
    # cases cannot show B is better: B won 3 of 3 discordant pairs, whose share is bounded by
    # 0.04 ** (1 / 3) = 0.342, and every case may be discordant, so the bound is 2 * 0.342 - 1
    assert result["lower_bound_delta_95"] == pytest.approx(2 * 0.04 ** (1 / 3) - 1)
    assert result["bound_method"] == "exact-discordant"
    estimate = result["estimate_t_interval_95"]
    assert estimate == {"low": 1.0, "high": 1.0, "gating": False}  # no spread at all
    assert result["mcnemar"]["b_better"] == 3
    assert result["mcnemar"]["p_two_sided"] == pytest.approx(binomtest(3, 3, 0.5).pvalue)
    text = run_cli(pytester.path, "compare", a, b, "--state-dir", state, "--margin", "0.35")
    assert text.returncode == cli.EXIT_OK
    assert "non-inferiority at margin 0.35: PASS" in text.stdout
    assert "estimate, not gating: mean delta +1.000 with 95% t interval" in text.stdout
    # what the bench could detect: two equal agents that disagree on every case
    assert "two equal agents with 100% of cases discordant" in text.stdout
    tight = run_cli(pytester.path, "compare", a, b, "--state-dir", state, "--margin", "0.05")
    assert tight.returncode == cli.EXIT_GENERIC  # -0.316 is not above -0.05
    assert "do not clear margin 0.05 even with 1000 paired cases" in tight.stdout
    assert "better alpha: 0.000 -> 1.000 (+1.000)" in text.stdout
    # the other way round B is much worse: not non-inferior, exit 1
    back = run_cli(pytester.path, "compare", b, a, "--state-dir", state, "--margin", "0.35")
    assert back.returncode == cli.EXIT_GENERIC
    assert "FAIL" in back.stdout


def test_latest_references_and_unpaired_cases_are_named(
    pytester: pytest.Pytester, two_runs: tuple[str, str]
) -> None:
    pytester.runpytest_inprocess(*BASE, "-k", "alpha or beta").assert_outcomes(passed=2)
    subset = newest_report(pytester.path)["run_id"]
    state = str(pytester.path / ".codegenie" / "eval")
    # latest: is the newest complete run, never the -k run made after it
    whole = run_cli(
        pytester.path, "compare", "latest:stub:noop", "latest:stub", "--state-dir", state
    )
    assert whole.returncode == cli.EXIT_OK, whole.stderr
    assert "paired 3 cases" in whole.stdout
    # the -k run by its run id: the case it did not run is named, not dropped
    out = run_cli(pytester.path, "compare", "latest:stub:noop", subset, "--state-dir", state)
    assert out.returncode == cli.EXIT_OK, out.stderr
    assert "paired 2 cases" in out.stdout
    assert "only in A (not paired): gamma" in out.stdout
    missing = run_cli(pytester.path, "compare", "latest:nope", "latest:stub", "--state-dir", state)
    assert missing.returncode == cli.EXIT_GENERIC
    assert "no run of task class 'nope'" in missing.stderr


def test_the_session_compares_with_a_reference_resolved_before_it_runs(
    pytester: pytest.Pytester, two_runs: tuple[str, str]
) -> None:
    # latest:stub is the baseline run made above, not the run this session makes
    result = pytester.runpytest_inprocess(
        *BASE, "--codegenie-sut=noop", "--codegenie-compare-to=latest:stub"
    )
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        ["*compare stub: B * (noop) against A * (baseline:baseline_sut.py)*", "*3 worse*"]
    )
    bad = pytester.runpytest_inprocess(*BASE, "--codegenie-compare-to=deadbeefdead")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--codegenie-compare-to:*not a report file*"])


def _report(task_class: str, scores: dict[str, list[float]], run: str) -> BenchRunReport:
    cases = tuple(
        CaseResult(task_class=task_class, case_id=cid, score=s, passed=s == 1.0, repeat=i + 1)
        for cid, values in scores.items()
        for i, s in enumerate(values)
    )
    return BenchRunReport(
        run_id=run * 64,
        task_class=task_class,
        created_at="2026-12-02T00:00:00+00:00",
        harness_version="0",
        cases=cases,
        repeats=max(len(v) for v in scores.values()),
    )


def test_repeats_are_averaged_per_case_before_pairing() -> None:
    a = _report("t", {"x": [1.0, 0.0], "y": [0.0, 0.0]}, "a")
    b = _report("t", {"x": [1.0, 1.0], "y": [0.0, 1.0]}, "b")
    result = compare(a, b)
    assert [(d.case_id, d.a, d.b) for d in result.paired] == [("x", 0.5, 1.0), ("y", 0.0, 0.5)]
    assert result.mean_delta == 0.5
    # a case passes only when all its attempts do: x is the one discordant pair
    assert (result.discordant_b_better, result.discordant_a_better) == (1, 0)
    with pytest.raises(Exception, match="different task classes"):
        compare(a, _report("u", {"x": [1.0]}, "c"))
