"""evidence.stats: BCa lower bound vs scipy, ties, fallbacks, Welford, seeds."""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from pytest_codegenie_eval.evidence import stats
from pytest_codegenie_eval.evidence.stats import (
    TIE_RULE_HALF,
    TIE_RULE_STRICT,
    LowerBound,
    ScoreKind,
    Welford,
    bca_lower_bound,
    betting_lower_bound,
    clopper_pearson_lower_bound,
    lower_bound_95,
    seed_from_run_id,
    wilson_lower_bound,
)

Z95 = 1.6448536269514722  # Φ⁻¹(0.95)


@pytest.fixture(autouse=True)
def _warnings_are_errors() -> Iterator[None]:
    # "Never a warning storm": any RuntimeWarning or DegenerateDataWarning fails the test.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def scipy_low(x: npt.ArrayLike, seed: int, resamples: int = 1000) -> float:
    """The low end of scipy's two-sided 90% BCa interval with the same generator."""
    result = scipy_stats.bootstrap(
        (np.asarray(x, dtype=np.float64),),
        np.mean,
        method="BCa",
        confidence_level=0.90,
        n_resamples=resamples,
        random_state=np.random.Generator(np.random.PCG64(seed)),
        vectorized=True,
    )
    return float(result.confidence_interval.low)


def sample(kind: str, n: int, seed: int) -> npt.NDArray[np.float64]:
    rng = np.random.Generator(np.random.PCG64(seed))
    if kind == "uniform":
        return rng.random(n)
    if kind == "skewed":
        return rng.beta(0.3, 2.0, n)
    assert kind == "pass-fail"
    return (rng.random(n) < 0.8).astype(np.float64)


# --------------------------------------------------------------------------- scipy cross-check


@pytest.mark.parametrize(
    ("kind", "n", "data_seed", "seed"),
    [
        ("uniform", 20, 1, 7),
        ("uniform", 300, 2, 2**32 - 1),
        ("uniform", 1000, 3, 0),
        ("skewed", 40, 4, 12345),
        ("skewed", 500, 5, 99),
        ("pass-fail", 12, 6, 3),
        ("pass-fail", 60, 7, 0xDEADBEEF),
    ],
)
@pytest.mark.parametrize("batch_rows", [None, 1, 3, 64])
def test_matches_scipy_bca_low_end(
    kind: str, n: int, data_seed: int, seed: int, batch_rows: int | None
) -> None:
    # Continuous data of n >= 20 has no resample tying the observed mean (a permutation of
    # the sample has probability n!/n^n), and 0/1 sums are exact in floating point, so
    # scipy's raw float comparison and our exact one count the same resamples; the result
    # must then agree to rounding whatever the batch size (1 and 3 force many batches and
    # batches that split the stream at odd offsets).
    x = sample(kind, n, data_seed)
    assert x.min() != x.max()
    ours = bca_lower_bound(x, seed=seed, batch_rows=batch_rows)
    assert ours is not None
    assert ours.method == "bca"
    assert ours.value == pytest.approx(scipy_low(x, seed), abs=1e-12, rel=0)


def test_batch_size_does_not_change_a_single_bit() -> None:
    x = sample("skewed", 37, 11)  # odd n: batches end mid 64-bit PCG64 output
    results = {bca_lower_bound(x, seed=5, batch_rows=rows) for rows in (None, 1, 2, 7, 1000)}
    assert len(results) == 1


def test_index_stream_is_independent_of_batching() -> None:
    # The claim _resample_sums relies on: (b, n) draws concatenate to one (B, n) draw.
    n, total = 7, 100
    whole = np.random.Generator(np.random.PCG64(42)).integers(0, n, size=(total, n))
    for rows in (1, 3, 13):
        rng = np.random.Generator(np.random.PCG64(42))
        parts = [rng.integers(0, n, size=(min(rows, total - k), n)) for k in range(0, total, rows)]
        np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_acceleration_matches_the_jackknife_as_scipy_computes_it() -> None:
    # Brute-force O(n²) jackknife with scipy's sign convention U = (n-1)(θ_dot - θ_(i)).
    x = sample("skewed", 50, 21)
    n = x.size
    leave_one_out = np.array([np.delete(x, i).mean() for i in range(n)])
    u = (n - 1) * (leave_one_out.mean() - leave_one_out)
    expected = (np.sum(u**3) / n**3) / (6 * (np.sum(u**2) / n**2) ** 1.5)
    result = bca_lower_bound(x, seed=1)
    assert result is not None
    assert result.acceleration is not None
    assert expected > 0.02  # right-skewed data: positive, so a sign error would show
    assert result.acceleration == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------- ties


def test_tie_rule_on_four_passes_and_one_failure() -> None:
    # The rules disagree badly on 0/1 data: 40% of resamples tie the observed mean 0.8.
    x = [1.0, 1.0, 1.0, 1.0, 0.0]
    half = bca_lower_bound(x, seed=12345)
    strict = bca_lower_bound(x, seed=12345, tie_rule=TIE_RULE_STRICT)
    assert half is not None
    assert strict is not None
    assert half.method == "bca"
    assert half.tie_rule == TIE_RULE_HALF == "ties-half"
    assert strict.tie_rule == "strict-less"
    assert half.value == pytest.approx(0.40, abs=1e-12)
    assert strict.value == pytest.approx(0.0141, abs=1e-4)
    # The chosen rule is scipy's, so the cross-check holds even with massive ties.
    assert half.value == pytest.approx(scipy_low(x, 12345), abs=1e-12)


def test_half_rule_reflects_under_score_inversion() -> None:
    # With ties counted one half, z0 flips sign under x -> 1 - x (the strict rule breaks this).
    x = [1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    flipped = [1.0 - v for v in x]
    for seed in (1, 2, 3):
        a = lower_bound_95(x, seed=seed)
        b = lower_bound_95(flipped, seed=seed)
        assert a.z0 is not None
        assert b.z0 is not None
        assert a.z0 == pytest.approx(-b.z0, abs=1e-12)
        s = bca_lower_bound(x, seed=seed, tie_rule=TIE_RULE_STRICT)
        t = bca_lower_bound(flipped, seed=seed, tie_rule=TIE_RULE_STRICT)
        assert s is not None
        assert t is not None
        assert s.z0 is not None
        assert t.z0 is not None
        assert abs(s.z0 + t.z0) > 0.5


def row_sums(x: list[float], rows: list[list[int]]) -> npt.NDArray[np.float64]:
    """Resample sums computed the way the module computes them (np.sum along rows)."""
    sums: npt.NDArray[np.float64] = np.sum(np.asarray(x)[np.asarray(rows)], axis=1)
    return sums


def test_decimal_scores_tie_exactly_where_float_equality_fails() -> None:
    x = [0.1, 0.2, 0.3]
    rows = [[0, 1, 2], [2, 1, 0], [1, 1, 1], [0, 0, 0], [2, 2, 2]]
    sums = row_sums(x, rows)
    # Precondition: the three resamples summing to exactly 0.6 have different float sums,
    # so raw float equality (what scipy does) would split them between "<", "==" and ">".
    assert len({float(s) for s in sums[:3]}) == 2
    below, ties, basis = stats._count_below_and_ties(sums, np.asarray(x))
    assert (below, ties) == (1, 3)
    assert "1e-1 grid" in basis


def test_non_decimal_scores_tie_within_rounding_tolerance() -> None:
    x = [1 / 3, 1 / 7, 2**-0.5, math.pi / 4, math.e / 3]
    perms = [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3], [1, 3, 0, 4, 2]]
    sums = row_sums(x, perms)
    assert len({float(s) for s in sums}) > 1  # precondition: summation order shows
    below, ties, basis = stats._count_below_and_ties(sums, np.asarray(x))
    assert (below, ties) == (0, 4)
    assert basis.startswith("within")
    # A genuinely different resample, even one that differs by the smallest gap in the data,
    # is not swallowed by the tolerance.
    near = row_sums(x, [[0, 1, 2, 3, 3], [0, 1, 2, 4, 4]])
    assert stats._count_below_and_ties(near, np.asarray(x))[:2] == (1, 0)


# --------------------------------------------------------------------------- degenerate inputs


def test_no_scores() -> None:
    result = lower_bound_95([], seed=3)
    assert result == LowerBound(0.0, "none", 0, 3, None, None, TIE_RULE_HALF, "no scores")


@pytest.mark.parametrize(
    ("scores", "expected", "method"),
    [
        ([1.0], 0.05, "clopper-pearson"),
        ([0.0] * 7, 0.0, "clopper-pearson"),
        ([1.0] * 10, 0.05**0.1, "clopper-pearson"),
        ([0.4], None, "betting"),
        ([0.5] * 8, None, "betting"),
    ],
)
def test_degenerate_inputs_use_the_finite_sample_bound(
    scores: list[float], expected: float | None, method: str
) -> None:
    kind: ScoreKind = "pass_fail" if method == "clopper-pearson" else "graded"
    result = lower_bound_95(scores, seed=1, kind=kind)
    assert result.method == method
    if expected is not None:
        assert result.value == pytest.approx(expected, abs=1e-12)
    else:
        assert result.value == betting_lower_bound(scores, seed=1)
        assert 0.0 <= result.value < scores[0]
    assert result.resamples == 0
    assert result.z0 is None
    assert result.acceleration is None
    assert "BCa undefined" in result.note
    assert result.bca is None
    assert bca_lower_bound(scores, seed=1) is None


def test_ten_perfect_cases_give_about_074_not_1() -> None:
    result = lower_bound_95([1.0] * 10, seed=0, kind="pass_fail")
    assert result.value == pytest.approx(0.741, abs=5e-4)
    assert result.value == clopper_pearson_lower_bound(10, 10)
    assert wilson_lower_bound(10, 10) > result.value  # Wilson is not a finite-sample bound


def test_the_method_follows_the_declared_kind_never_the_scores() -> None:
    """R1 of issue 24: 22 perfect cases and one 0.00 gave 0.810 (Clopper-Pearson), the same
    with that case at 0.01 gave 0.775 (betting): raising a score lowered the bound across a
    tier. Now a pass/fail task class always gets Clopper-Pearson, a graded one always the
    betting bound, and within each, raising that one score cannot lower the bound."""
    zero = [1.0] * 22 + [0.0]
    one_hundredth = [1.0] * 22 + [0.01]
    assert lower_bound_95(zero, seed=5, kind="pass_fail").method == "clopper-pearson"
    graded_zero = lower_bound_95(zero, seed=5, kind="graded")
    graded_up = lower_bound_95(one_hundredth, seed=5, kind="graded")
    assert graded_zero.method == graded_up.method == "betting"
    assert graded_up.value >= graded_zero.value
    with pytest.raises(ValueError, match="pass/fail scores must each be 0 or 1"):
        lower_bound_95(one_hundredth, seed=5, kind="pass_fail")
    with pytest.raises(ValueError, match="scores in \\[0, 1\\]"):
        lower_bound_95([2.0] * 8, seed=1)


def test_bca_is_a_diagnostic_the_gate_never_reads() -> None:
    x = sample("skewed", 30, 3).tolist()
    result = lower_bound_95(x, seed=3)
    assert result.bca is not None
    assert result.value == result.valid == betting_lower_bound(x, seed=3)
    assert "diagnostic" in result.note


def test_infinite_z0_falls_back_to_the_betting_bound() -> None:
    # One resample of continuous data lies strictly above or below the mean: z0 = ±inf.
    x = sample("uniform", 20, 8).tolist()
    result = lower_bound_95(x, seed=4, resamples=1)
    assert result.method == "betting"
    assert "z0 infinite" in result.note
    assert result.z0 is None
    assert result.value == betting_lower_bound(x, seed=4)
    assert bca_lower_bound(x, seed=4, resamples=1) is None


def test_broken_level_adjustment_falls_back_to_the_betting_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 1 - a(z0 + z_alpha) <= 0 cannot arise for the mean at 1000 resamples (|a| <= 1/6), so
    # force it to check the guard rather than let the adjusted level flip to the upper tail.
    monkeypatch.setattr(stats, "_acceleration", lambda x: -10.0)
    x = [1.0, 0.0, 1.0, 1.0, 0.5, 1.0]
    result = lower_bound_95(x, seed=2)
    assert result.method == "betting"
    assert "level adjustment" in result.note
    assert result.acceleration == -10.0
    assert result.value == betting_lower_bound(x, seed=2)


def test_invalid_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="finite"):
        lower_bound_95([0.5, float("nan"), 1.0], seed=1)
    with pytest.raises(ValueError, match="resamples"):
        lower_bound_95([0.5, 1.0], seed=1, resamples=0)
    with pytest.raises(ValueError, match="seed"):
        lower_bound_95([0.5, 1.0], seed=-1)
    with pytest.raises(ValueError, match="confidence"):
        lower_bound_95([0.5, 1.0], seed=1, confidence=1.0)
    with pytest.raises(ValueError, match="successes"):
        wilson_lower_bound(3, 2)


def test_wilson_known_values() -> None:
    assert wilson_lower_bound(0, 0) == 0.0
    assert wilson_lower_bound(0, 10) == 0.0
    # 4/5 at one-sided 95%: (p + z²/2n - z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n).
    p, n = 0.8, 5
    expected = (p + Z95**2 / (2 * n) - Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n))) / (
        1 + Z95**2 / n
    )
    assert wilson_lower_bound(4, 5) == pytest.approx(expected, rel=1e-14)
    assert wilson_lower_bound(4, 5) == pytest.approx(0.4353, abs=1e-4)
    assert wilson_lower_bound(4, 5, confidence=0.975) < wilson_lower_bound(4, 5)


# --------------------------------------------------------------------------- determinism


GOLDEN_SCORES = [0.93, 0.41, 1.0, 0.77, 0.0, 0.86, 1.0, 0.62, 0.95, 0.3, 1.0, 0.58, 0.71, 0.88]
GOLDEN_RUN_ID = "partial:3f9a0c2e5b7d41a8c6e2f0b9d8a7c6e5"


def test_golden_bound() -> None:
    # Pinned bits: any change to the stream, the arithmetic order or the tie rule shows here.
    result = bca_lower_bound(GOLDEN_SCORES, seed=seed_from_run_id(GOLDEN_RUN_ID))
    assert result is not None
    assert result.seed == 0x3F9A0C2E
    assert result.method == "bca"
    assert result.resamples == 1000
    # 0.5693725295695354, interpolated (Φ and Φ⁻¹ from the standard library's NormalDist
    # since the bound stopped importing scipy: one ulp from scipy's ndtr/ndtri)
    assert result.value.hex() == "0x1.2384cbd37be09p-1"
    assert result.z0 is not None
    assert result.z0.hex() == "-0x1.9aba9f4786911p-6"
    assert result.acceleration is not None
    assert result.acceleration.hex() == "-0x1.7ecacfb1a0252p-5"


def test_identical_inputs_give_identical_bits() -> None:
    x = sample("skewed", 200, 31).tolist()
    first = lower_bound_95(x, seed=77)
    second = lower_bound_95(list(x), seed=77)
    assert first == second
    assert first.value.hex() == second.value.hex()
    assert lower_bound_95(x, seed=78).value != first.value


# --------------------------------------------------------------------------- property


scores_strategy = st.lists(
    st.one_of(
        st.floats(min_value=0.0, max_value=1.0),
        st.sampled_from([0.0, 0.25, 0.5, 1.0]),  # rubric-like values: many exact ties
    ),
    min_size=5,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(scores=scores_strategy, seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_bound_lies_between_mean_minus_two_sd_and_mean(scores: list[float], seed: int) -> None:
    acc = Welford()
    for value in scores:
        acc.add(value)
    result = lower_bound_95(scores, seed=seed)
    tolerance = 1e-9
    assert 0.0 <= result.value <= 1.0
    assert result.value <= acc.mean + tolerance
    assert result.valid is not None
    assert result.value == result.valid  # the gate reads the finite-sample bound alone
    if min(scores) == max(scores):
        # BCa is undefined for equal scores: only the finite-sample bound applies
        assert result.bca is None
    else:
        # For non-constant n >= 5 data BCa is always defined at 1000 resamples (ties keep z0
        # finite, |a| <= 1/6 keeps the level adjustment valid), and it lies within two
        # standard deviations of the mean. The gate value may lie lower only where the
        # finite-sample bound does: no bound valid for every distribution on [0, 1] can stay
        # within 2 sd at small n (ten scores near 0.8 are also a likely draw from a mean of
        # 0.6 with a quarter of zeros: 0.75**10 = 5.6%), see docs/adr/0015.
        assert result.bca is not None
        assert acc.mean - 2 * acc.stddev - tolerance <= result.bca
        assert result.value >= min(acc.mean - 2 * acc.stddev, result.valid) - tolerance


# --------------------------------------------------------------------------- seeds


def test_seed_from_run_id() -> None:
    assert seed_from_run_id("deadbeef0123") == 0xDEADBEEF
    assert seed_from_run_id("partial:deadbeef0123") == 0xDEADBEEF
    assert seed_from_run_id("DEADBEEF") == 0xDEADBEEF
    assert seed_from_run_id("00000000ffff") == 0
    assert seed_from_run_id("ffffffffffff") == 2**32 - 1


@pytest.mark.parametrize("run_id", ["", "abc", "partial:", "0x123456789", " deadbeef", "+1234567"])
def test_seed_from_run_id_rejects_non_hex(run_id: str) -> None:
    with pytest.raises(ValueError, match="eight hex digits"):
        seed_from_run_id(run_id)


# --------------------------------------------------------------------------- Welford


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=0, max_size=60))
def test_welford_matches_numpy(values: list[float]) -> None:
    acc = Welford()
    for value in values:
        acc.add(value)
    assert acc.n == len(values)
    if not values:
        assert (acc.mean, acc.stddev) == (0.0, 0.0)
        return
    scale = max(1.0, max(abs(v) for v in values))
    assert acc.mean == pytest.approx(float(np.mean(values)), abs=1e-12 * scale)
    expected_sd = float(np.std(values, ddof=1)) if len(values) >= 2 else 0.0
    assert acc.stddev == pytest.approx(expected_sd, abs=1e-9 * scale)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=30),
    st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=30),
)
def test_welford_merge_equals_one_pass(left: list[float], right: list[float]) -> None:
    a, b, whole = Welford(), Welford(), Welford()
    for value in left:
        a.add(value)
        whole.add(value)
    for value in right:
        b.add(value)
        whole.add(value)
    a.merge(b)
    assert a.n == whole.n
    assert a.mean == pytest.approx(whole.mean, abs=1e-12)
    assert a.stddev == pytest.approx(whole.stddev, abs=1e-9)


def test_welford_small_and_constant() -> None:
    acc = Welford()
    acc.add(0.7)
    assert (acc.n, acc.mean, acc.stddev) == (1, 0.7, 0.0)
    for _ in range(99):
        acc.add(0.7)
    assert acc.stddev == 0.0
    acc.add(0.9)
    assert acc.stddev == pytest.approx(statistics.stdev([0.7] * 100 + [0.9]), rel=1e-12)
    with pytest.raises(ValueError, match="non-finite"):
        acc.add(float("inf"))


# --------------------------------------------------------------------------- finite-sample bounds


def test_clopper_pearson_known_values() -> None:
    assert clopper_pearson_lower_bound(0, 10) == 0.0
    assert clopper_pearson_lower_bound(0, 0) == 0.0
    assert clopper_pearson_lower_bound(10, 10) == pytest.approx(0.05**0.1, rel=1e-13)
    # P(X >= 4 | n=5, p=L) = 0.05 at the bound
    low = clopper_pearson_lower_bound(4, 5)
    assert float(scipy.stats.binom.sf(3, 5, low)) == pytest.approx(0.05, rel=1e-9)
    with pytest.raises(ValueError, match="successes"):
        clopper_pearson_lower_bound(3, 2)


@pytest.mark.parametrize("n", [3, 10, 25])
def test_clopper_pearson_covers_exactly_at_every_p(n: int) -> None:
    # exact coverage: sum the binomial probability of every k whose bound lies at or below p
    bounds = [clopper_pearson_lower_bound(k, n) for k in range(n + 1)]
    for p in np.linspace(0.001, 0.999, 499):
        covered = sum(float(scipy.stats.binom.pmf(k, n, p)) for k in range(n + 1) if bounds[k] <= p)
        assert covered >= 0.95 - 1e-12, (n, p, covered)
    # live: Wilson, the old fallback, does not (it is an approximation)
    wilson = [wilson_lower_bound(k, n) for k in range(n + 1)]
    worst = min(
        sum(float(scipy.stats.binom.pmf(k, n, p)) for k in range(n + 1) if wilson[k] <= p)
        for p in np.linspace(0.001, 0.999, 499)
    )
    assert worst < 0.95


def test_betting_bound_is_deterministic_below_the_mean_and_monotone() -> None:
    x = sample("skewed", 40, 5).clip(0, 1).tolist()
    first = betting_lower_bound(x, seed=9)
    assert first == betting_lower_bound(list(x), seed=9)
    assert 0.0 < first < float(np.mean(x))
    assert betting_lower_bound(x + [0.0] * 5, seed=9) < first
    assert betting_lower_bound([0.0] * 30, seed=1) == 0.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        betting_lower_bound([0.5, 1.5], seed=1)


LEVELS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
LEVEL_P = np.array([0.1, 0.1, 0.2, 0.3, 0.3])


@pytest.mark.parametrize(
    ("draw", "mean"),
    [
        (lambda rng, n: rng.beta(8, 2, n), 0.8),
        (lambda rng, n: rng.choice(LEVELS, n, p=LEVEL_P), float(LEVELS @ LEVEL_P)),
    ],
    ids=["beta-8-2", "rubric-levels"],
)
def test_the_gate_bound_covers_at_n10_where_bca_does_not(draw: Any, mean: float) -> None:
    rng = np.random.default_rng(2026)
    draws = 300
    gate = bca = 0
    for i in range(draws):
        result = lower_bound_95(draw(rng, 10).tolist(), seed=i)
        gate += result.value <= mean
        bca += result.bca is None or result.bca <= mean
    assert bca / draws < 0.95  # live: BCa alone under-covers here
    assert gate / draws >= 0.95
