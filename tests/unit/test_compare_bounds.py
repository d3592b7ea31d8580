"""The paired bounds of ``codegenie-eval compare`` (issue 24, item 7): exact for pass/fail,
with what the bench can detect printed beside it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import multinomial

from pytest_codegenie_eval.evidence.compare import (
    cases_for_margin,
    compare,
    discordant_lower_bound,
    format_comparison,
)
from pytest_codegenie_eval.models import BenchRunReport, CaseResult


@pytest.mark.parametrize("n", [4, 9, 16])
def test_the_discordant_bound_covers_exactly(n: int) -> None:
    # every outcome of n paired pass/fail cases, weighted by its trinomial probability
    outcomes = [(b, c) for b in range(n + 1) for c in range(n + 1 - b)]
    bounds = {(b, c): discordant_lower_bound(b, c, n) for b, c in outcomes}
    worst = 1.0
    grid = np.linspace(0.0, 1.0, 21)
    for q1, q2 in itertools.product(grid, grid):
        if q1 + q2 > 1.0 + 1e-12:
            continue
        law = multinomial(n, [q1, q2, max(0.0, 1.0 - q1 - q2)])
        covered = sum(
            float(law.pmf([b, c, n - b - c]))
            for (b, c), bound in bounds.items()
            if bound <= q1 - q2 + 1e-12
        )
        worst = min(worst, covered)
    assert worst >= 0.95


def test_the_discordant_bound_rises_with_b_s_wins_and_falls_with_a_s() -> None:
    n = 40
    for b, c in itertools.product(range(10), range(10)):
        here = discordant_lower_bound(b, c, n)
        assert discordant_lower_bound(b + 1, c, n) >= here
        assert discordant_lower_bound(b, c + 1, n) <= here
    assert discordant_lower_bound(0, n, n) == -1.0
    with pytest.raises(ValueError, match="b_better"):
        discordant_lower_bound(30, 20, n)


def test_cases_for_margin_grows_with_the_discordance_and_shrinks_with_the_margin() -> None:
    rare = cases_for_margin(0.05, pass_fail=True, spread=0.02)
    common = cases_for_margin(0.05, pass_fail=True, spread=0.1)
    wide = cases_for_margin(0.2, pass_fail=True, spread=0.1)
    assert rare is not None
    assert common is not None
    assert wide is not None
    assert rare < common
    assert wide < common
    # no discordance at all: about the n at which minus the upper bound on a rate never
    # seen, 1 - 0.005 ** (1 / n), is above -0.05 (104), a little more for monotonicity
    never = cases_for_margin(0.05, pass_fail=True, spread=0.0)
    assert never is not None
    assert 104 <= never <= 150


def test_cases_for_margin_on_graded_differences_is_seeded_and_finite() -> None:
    deltas = tuple(np.random.default_rng(1).normal(0.0, 0.1, 40).clip(-1, 1))
    first = cases_for_margin(0.05, pass_fail=False, spread=0.1, deltas=deltas)
    assert first == cases_for_margin(0.05, pass_fail=False, spread=0.1, deltas=deltas)
    assert first is not None
    assert 20 < first < 2000
    assert cases_for_margin(0.05, pass_fail=False, spread=0.0, deltas=(0.0,) * 5) == 1


def _report(run: str, scores: list[float], kind: str) -> BenchRunReport:
    return BenchRunReport(
        run_id=run * 64,
        task_class="t",
        created_at="2026-12-06T00:00:00+00:00",
        harness_version="0",
        scores=kind,  # type: ignore[arg-type]
        cases=tuple(
            CaseResult(task_class="t", case_id=f"c{i:02d}", score=s, passed=s >= 1.0)
            for i, s in enumerate(scores)
        ),
    )


def test_the_method_follows_the_task_class_never_the_scores() -> None:
    a_scores = [1.0] * 30 + [0.0] * 10
    b_scores = [1.0] * 38 + [0.0] * 2
    pass_fail = compare(_report("a", a_scores, "pass_fail"), _report("b", b_scores, "pass_fail"))
    graded = compare(_report("a", a_scores, "graded"), _report("b", b_scores, "graded"))
    assert pass_fail.bound_method == "exact-discordant"
    assert pass_fail.lower_bound_delta == discordant_lower_bound(8, 0, 40)
    assert graded.bound_method == "betting"  # the same 0/1 scores, a graded task class
    assert pass_fail.estimate_low is not None
    assert pass_fail.estimate_high is not None
    assert pass_fail.estimate_low < 0.2 < pass_fail.estimate_high
    lines = format_comparison(pass_fail, margin=0.05)
    assert any(line.startswith("  estimate, not gating: mean delta +0.200") for line in lines)
    assert any("20% of cases discordant" in line for line in lines)
