"""How many cases are enough (issue 14, part 4): the plan agrees with brute force."""

from __future__ import annotations

from pathlib import Path

import pytest
from scipy.stats import binom

from pytest_codegenie_eval.evidence.planning import cases_needed, perfect_cases_needed
from pytest_codegenie_eval.evidence.promotion import PromotionGate, format_verdict
from pytest_codegenie_eval.evidence.stats import clopper_pearson_lower_bound, lower_bound_95
from pytest_codegenie_eval.evidence.tiers import TierConfig
from pytest_codegenie_eval.models import BenchRunReport
from pytest_codegenie_eval.registry import TaskClass


@pytest.mark.parametrize(("threshold", "n"), [(0.7, 9), (0.8, 14), (0.9, 29)])
def test_perfect_cases_needed(threshold: float, n: int) -> None:
    assert perfect_cases_needed(threshold) == n
    assert (
        clopper_pearson_lower_bound(n, n) >= threshold > clopper_pearson_lower_bound(n - 1, n - 1)
    )


def _power(n: int, rate: float, threshold: float) -> float:
    """Brute force: the gate's own bound for every possible number of passes."""
    return sum(
        float(binom.pmf(k, n, rate))
        for k in range(n + 1)
        if lower_bound_95([1.0] * k + [0.0] * (n - k), seed=0, kind="pass_fail").value >= threshold
    )


@pytest.mark.parametrize(("rate", "threshold"), [(0.9, 0.7), (0.97, 0.8), (0.8, 0.5)])
def test_the_exact_plan_is_the_smallest_bench_with_the_power(rate: float, threshold: float) -> None:
    plan = cases_needed(rate, threshold)
    assert plan.method == "exact"
    assert plan.cases is not None
    assert _power(plan.cases, rate, threshold) == pytest.approx(plan.power, abs=1e-9)
    assert plan.power >= 0.8
    assert all(_power(n, rate, threshold) < 0.8 for n in range(1, plan.cases))


def test_an_unreachable_threshold_has_no_plan() -> None:
    assert cases_needed(0.7, 0.7).cases is None
    assert cases_needed(0.5, 0.7, repeats=3).cases is None


def test_the_simulated_plan_is_deterministic_and_has_the_power() -> None:
    first = cases_needed(0.9, 0.7, repeats=3)
    assert first == cases_needed(0.9, 0.7, repeats=3)
    assert first.method == "simulated"
    assert first.cases is not None
    assert first.power >= 0.8


def test_the_verdict_says_how_many_cases_would_clear_the_bound() -> None:
    gate = PromotionGate(TierConfig(schema_version=1, thresholds={"bronze": 0.7}))
    task = TaskClass(name="t", qualname="t.T", min_cases_for_promotion={"bronze": 3})

    def verdict_for(n: int, passed: int) -> str:
        report = BenchRunReport(
            run_id="ab" * 32,
            task_class="t",
            created_at="2026-12-02T00:00:00+00:00",
            harness_version="0",
            n=n,
            passed_count=passed,
            mean=passed / n,
            lower_bound_95=lower_bound_95(
                [1.0] * passed + [0.0] * (n - passed), seed=1, kind="pass_fail"
            ).value,
            sut_isolation="bwrap",
        )
        verdict = gate.evaluate(
            task_class=task, tier="bronze", reports=[report], chain_verified=True
        )
        return format_verdict(verdict)

    assert "next: 3/3 passed: 9 perfect cases would reach bronze 0.70" in verdict_for(3, 3)
    plan = cases_needed(0.9, 0.7)
    assert f"about {plan.cases} cases would reach bronze 0.70" in verdict_for(10, 9)
    assert "no bench size reaches bronze 0.70" in verdict_for(10, 6)


def test_advice_under_repeats_uses_the_per_attempt_pass_rate() -> None:
    """R3 of issue 24: a K = 3 agent whose attempts pass 83% of the time was told that no
    bench size reaches bronze 0.70, because the advice took the all-attempts-passed share
    (0.58) for the per-attempt rate; about 39 cases would."""
    gate = PromotionGate(TierConfig(schema_version=1, thresholds={"bronze": 0.7}))
    task = TaskClass(name="t", qualname="t.T", min_cases_for_promotion={"bronze": 3})
    report = BenchRunReport(
        run_id="ab" * 32,
        task_class="t",
        created_at="2026-12-02T00:00:00+00:00",
        harness_version="0",
        n=12,
        passed_count=7,  # cases whose three attempts all passed
        mean=0.833,
        repeats=3,
        pass_at_1=0.833,
        lower_bound_95=0.55,
        sut_isolation="bwrap",
    )
    verdict = format_verdict(
        gate.evaluate(task_class=task, tier="bronze", reports=[report], chain_verified=True)
    )
    plan = cases_needed(0.833, 0.7, repeats=3)
    assert plan.cases is not None
    assert 30 <= plan.cases <= 50
    expected = f"per-attempt pass rate 0.83, about {plan.cases} cases would reach bronze 0.70"
    assert expected in verdict
    assert "no bench size" not in verdict


def test_power_is_a_sawtooth_and_plan_says_where_it_stops_dipping() -> None:
    """Issue 24, item 5: at rate 0.95 and threshold 0.80, 30 cases give 0.812 but 31 to 36
    give 0.80 down to 0.73; the first n is not the end of the story."""
    from pytest_codegenie_eval.evidence.planning import exact_power, power_curve, stays_above

    assert exact_power(30, 0.95, 0.8) == pytest.approx(0.812, abs=5e-4)
    curve = dict(power_curve(0.95, 0.8, range(31, 37)))
    assert all(p < 0.8 for p in curve.values())
    assert curve[36] == pytest.approx(0.732, abs=5e-4)
    assert cases_needed(0.95, 0.8).cases == 30
    assert stays_above(0.95, 0.8, 0.8, 30) == 37
    assert all(exact_power(n, 0.95, 0.8) >= 0.8 for n in range(37, 120))


def test_a_case_to_case_spread_costs_power_under_repeats() -> None:
    """Assuming every case has the same pass rate overstates power with K > 1."""
    alike = cases_needed(0.833, 0.7, repeats=3)
    spread = cases_needed(0.833, 0.7, repeats=3, spread=0.15)
    assert alike.cases is not None
    assert spread.cases is not None
    assert spread.cases > alike.cases
    with pytest.raises(ValueError, match="spread must be below"):
        cases_needed(0.9, 0.7, repeats=3, spread=0.5)


def test_plan_prints_the_power_curve(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from pytest_codegenie_eval.cli import main as cli

    tiers = tmp_path / "tiers.yaml"
    tiers.write_text("schema_version: 1\nthresholds:\n  bronze: 0.7\n  silver: 0.8\n")
    code = cli.main(["plan", "--tier", "silver", "--rate", "0.95", "--tiers", str(tiers)])
    out = capsys.readouterr().out
    assert code == cli.EXIT_OK
    assert "30 cases reach silver 0.80 with 81% probability (exact)" in out
    assert "dips below 80% again between 31 and 36 cases; from 37 cases on" in out
    assert "30 81.2% · 31 79.9%" in out
