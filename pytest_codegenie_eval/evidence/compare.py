"""Is agent B better than agent A? A paired comparison of two run reports.

Cases are paired by ``case_id`` (a case's attempts are averaged first, as in the report).
For the paired differences ``d = B - A`` in [-1, 1] the comparison gives:

* the gating figure, a one-sided 95% lower bound on the mean difference with a
  finite-sample guarantee, chosen by what the task class declares (never by the scores):
  for two pass/fail runs of one attempt per case, an exact bound from the discordant pairs
  (:func:`discordant_lower_bound`); otherwise the gate's betting bound applied to
  ``(d + 1) / 2`` (an affine map of [-1, 1] onto [0, 1], so its guarantee carries over),
  betting on the cases in case-id order (an order the bench fixes, not the scores);
* a labelled estimate that gates nothing: the mean difference with a two-sided 95% t
  interval (tighter, but only approximately right on small or skewed benches);
* the correlation of the paired scores and, on pass/fail, an exact McNemar test;
* with a non-inferiority margin, how many paired cases two agents that are truly equal
  would need for the bound to clear the margin 80% of the time (:func:`cases_for_margin`),
  so a failed check says whether the bench could have passed it at all.

Cases that only one run holds are listed, never silently dropped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import betaincinv
from scipy.stats import binom, binomtest
from scipy.stats import t as student_t

from pytest_codegenie_eval.errors import CodegenieEvalError
from pytest_codegenie_eval.evidence.aggregate import attempts_by_case, case_mean, case_passed
from pytest_codegenie_eval.evidence.stats import betting_lower_bound, betting_lower_bound_in_order
from pytest_codegenie_eval.models import BenchRunReport


@dataclass(frozen=True)
class CaseDelta:
    case_id: str
    a: float
    b: float
    a_passed: bool
    b_passed: bool

    @property
    def delta(self) -> float:
        return self.b - self.a

    @property
    def verdict(self) -> str:
        return "better" if self.delta > 1e-12 else "worse" if self.delta < -1e-12 else "same"


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare` found (B measured against A)."""

    task_class: str
    a_run_id: str
    b_run_id: str
    a_sut: str
    b_sut: str
    paired: tuple[CaseDelta, ...]
    only_a: tuple[str, ...]
    only_b: tuple[str, ...]
    mean_delta: float | None
    lower_bound_delta: float | None
    bound_method: str
    correlation: float | None
    discordant_b_better: int  # A failed, B passed
    discordant_a_better: int  # A passed, B failed
    mcnemar_p_two_sided: float | None
    mcnemar_p_b_better: float | None
    estimate_low: float | None = None  # two-sided 95% t interval of the mean difference
    estimate_high: float | None = None
    spread: float | None = None  # pass/fail: share of discordant cases; graded: sd of d

    def non_inferior(self, margin: float) -> bool:
        """B is no worse than A by more than ``margin``: the bound on B - A exceeds it."""
        return self.lower_bound_delta is not None and self.lower_bound_delta > -margin

    def counts(self) -> dict[str, int]:
        out = {"better": 0, "worse": 0, "same": 0}
        for d in self.paired:
            out[d.verdict] += 1
        return out

    def as_json(self) -> dict[str, object]:
        return {
            "task_class": self.task_class,
            "a": {"run_id": self.a_run_id, "sut": self.a_sut},
            "b": {"run_id": self.b_run_id, "sut": self.b_sut},
            "paired": len(self.paired),
            "counts": self.counts(),
            "only_a": list(self.only_a),
            "only_b": list(self.only_b),
            "mean_delta": self.mean_delta,
            "lower_bound_delta_95": self.lower_bound_delta,
            "bound_method": self.bound_method,
            "estimate_t_interval_95": (
                None
                if self.estimate_low is None
                else {"low": self.estimate_low, "high": self.estimate_high, "gating": False}
            ),
            "correlation": self.correlation,
            "mcnemar": {
                "b_better": self.discordant_b_better,
                "a_better": self.discordant_a_better,
                "p_two_sided": self.mcnemar_p_two_sided,
                "p_b_better": self.mcnemar_p_b_better,
            },
            "cases": [
                {"case_id": d.case_id, "a": d.a, "b": d.b, "delta": d.delta, "verdict": d.verdict}
                for d in self.paired
            ],
        }


def _per_case(report: BenchRunReport) -> dict[str, tuple[float, bool]]:
    """case_id -> (its score, it passed), exactly as the report's aggregate counts them."""
    return {
        case_id: (case_mean(attempts), case_passed(attempts))
        for case_id, attempts in attempts_by_case(report.cases).items()
    }


CONFIDENCE = 0.95
_ALPHA_SHARE = 0.04  # of α = 0.05: the share of B's wins among discordant cases
_ALPHA_RATE = 0.005  # each side of the discordance rate (0.04 + 2 x 0.005 = α)


def _cp_low(k: npt.ArrayLike, n: npt.ArrayLike, a: float) -> npt.NDArray[np.float64]:
    k_, n_ = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = betaincinv(k_, n_ - k_ + 1.0, a)
    return np.where(k_ <= 0, 0.0, out).astype(np.float64)


def _cp_high(k: npt.ArrayLike, n: npt.ArrayLike, a: float) -> npt.NDArray[np.float64]:
    k_, n_ = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = betaincinv(k_ + 1.0, n_ - k_, 1.0 - a)
    return np.where(k_ >= n_, 1.0, out).astype(np.float64)


def _discordant_bounds(
    b_better: npt.ArrayLike, discordant: npt.ArrayLike, n: int
) -> npt.NDArray[np.float64]:
    b_ = np.asarray(b_better, dtype=np.float64)
    d_ = np.asarray(discordant, dtype=np.float64)
    share = 2.0 * _cp_low(b_, np.maximum(d_, 1.0), _ALPHA_SHARE) - 1.0
    share = np.where(d_ > 0, share, -1.0)
    rate = np.where(share >= 0, _cp_low(d_, n, _ALPHA_RATE), _cp_high(d_, n, _ALPHA_RATE))
    return np.maximum(-1.0, rate * share)


def _monotone_table(n: int, b_max: int, c_max: int) -> npt.NDArray[np.float64]:
    """The raw bound for every ``b`` in ``b_max..n`` and ``c`` in ``0..c_max`` (rows by ``b``,
    columns by ``c``; impossible pairs ``b + c > n`` hold +inf), then its lowest value over
    every outcome at least as good for B (more of B's wins, fewer of A's)."""
    wins = np.arange(b_max, n + 1, dtype=np.float64)[:, None]
    losses = np.arange(0, c_max + 1, dtype=np.float64)[None, :]
    possible = wins + losses <= n
    raw = np.where(possible, _discordant_bounds(wins, np.minimum(wins + losses, n), n), np.inf)
    # lowest over b' >= b (suffix minimum down the rows), then over c' <= c (prefix minimum)
    suffix = np.minimum.accumulate(raw[::-1], axis=0)[::-1]
    table: npt.NDArray[np.float64] = np.minimum.accumulate(suffix, axis=1)
    return table


def discordant_lower_bound(b_better: int, a_better: int, n: int) -> float:
    """Exact one-sided 95% lower bound on ``P(B passes) - P(A passes)`` from ``n`` paired
    pass/fail cases, ``b_better`` of which only B passed and ``a_better`` only A.

    The difference is ``ψ (2π - 1)``: ``ψ`` the chance a case is discordant, ``π`` the
    chance a discordant case is one B won. Given the discordant count, B's wins are
    binomial in ``π``, so a Clopper-Pearson bound on ``π`` at 0.04 holds whatever the count;
    Clopper-Pearson bounds on ``ψ`` at 0.005 each side cover it; the union bound gives 95%
    for the product, which is increasing in ``π`` and bounded on the side that matters by
    the bound on ``ψ``. Valid for every n and every joint distribution of the two runs.

    That product can fall when B wins one more case (the bound on ``ψ`` grows with the
    discordant count), so the bound returned is its lowest value over every outcome at least
    as good for B: never higher than the product, so still valid, and never lower for an
    outcome better for B.
    """
    if n <= 0 or b_better < 0 or a_better < 0 or b_better + a_better > n:
        raise ValueError(f"need 0 <= b_better + a_better <= n, got {b_better}, {a_better}, {n}")
    return float(_monotone_table(n, b_better, a_better)[0, a_better])


def _paired_pass_fail(a: BenchRunReport, b: BenchRunReport) -> bool:
    return a.scores == b.scores == "pass_fail" and a.repeats == b.repeats == 1


MAX_PLANNED_CASES = 5000
MAX_PLANNED_PASS_FAIL = 1000  # the exact pass/fail power sums a table of n² / 2 outcomes


def cases_for_margin(
    margin: float,
    *,
    pass_fail: bool,
    spread: float,
    deltas: tuple[float, ...] = (),
    power: float = 0.8,
    seed: int = 0,
) -> int | None:
    """The smallest number of paired cases from which two agents with no true difference
    clear non-inferiority at ``margin`` (the bound above ``-margin``) with probability at
    least ``power``, or ``None`` when even ``MAX_PLANNED_PASS_FAIL`` (pass/fail) or
    ``MAX_PLANNED_CASES`` (graded) do not.

    Pass/fail (``spread`` is the share of discordant cases): exact, summing the binomial
    law of the discordant count and of B's wins among them. Graded: simulated with 100
    benches a size, each difference drawn from ``deltas`` with a random sign (the spread
    this comparison saw, centred on no difference). Power is not monotone in n for
    discrete scores; the answer is the smallest n at which it first reaches ``power`` on a
    doubling-then-bisecting search to within 5%, so read it as "about".
    """
    if not 0.0 < margin <= 1.0:
        raise ValueError(f"margin must be in (0, 1], got {margin}")

    def reaches(n: int) -> bool:
        if pass_fail:
            return _pass_fail_power(n, max(spread, 0.0), margin) >= power
        return _graded_power(n, deltas, margin, seed) >= power

    if not pass_fail and not any(deltas):
        return 1  # no difference at all: every bound is at the mean, 0 > -margin
    ceiling = MAX_PLANNED_PASS_FAIL if pass_fail else MAX_PLANNED_CASES
    low, high = 0, 2
    while not reaches(high):
        low = high
        high *= 2
        if high > ceiling:
            if reaches(ceiling):
                high = ceiling
                break
            return None
    while high - low > max(1, low // 20):  # to within 5%: the answer is "about" anyway
        middle = (low + high) // 2
        if reaches(middle):
            high = middle
        else:
            low = middle
    return high


def _pass_fail_power(n: int, rate: float, margin: float) -> float:
    discordant_pmf = binom.pmf(np.arange(n + 1), n, rate)
    likely = np.nonzero(discordant_pmf > 1e-12)[0]
    table = _monotone_table(n, 0, int(likely.max()))  # table[b, c] for every c that matters
    total = 0.0
    for discordant in likely:
        wins = np.arange(discordant + 1)
        clears = table[wins, discordant - wins] > -margin
        total += float(discordant_pmf[discordant] * binom.pmf(wins, discordant, 0.5) @ clears)
    return total


def _graded_power(n: int, deltas: tuple[float, ...], margin: float, seed: int) -> float:
    sizes = np.abs(np.asarray(deltas, dtype=np.float64))
    rng = np.random.default_rng(seed)
    draws = 100
    clears = 0
    for index in range(draws):
        d = rng.choice(sizes, n) * rng.choice((-1.0, 1.0), n)
        shifted = np.clip((d + 1.0) / 2.0, 0.0, 1.0)
        clears += 2.0 * betting_lower_bound(shifted, seed=index) - 1.0 > -margin
    return clears / draws


def compare(a: BenchRunReport, b: BenchRunReport) -> Comparison:
    """Pair the cases of two reports of one task class and compare them (B against A)."""
    if a.task_class != b.task_class:
        raise CodegenieEvalError(
            f"the reports are of different task classes ({a.task_class!r} and "
            f"{b.task_class!r}); only runs of one task class can be paired"
        )
    left, right = _per_case(a), _per_case(b)
    common = sorted(set(left) & set(right))
    paired = tuple(
        CaseDelta(cid, left[cid][0], right[cid][0], left[cid][1], right[cid][1]) for cid in common
    )
    deltas = [d.delta for d in paired]
    b_better = sum(1 for d in paired if d.b_passed and not d.a_passed)
    a_better = sum(1 for d in paired if d.a_passed and not d.b_passed)
    mean = sum(deltas) / len(deltas) if deltas else None
    lower: float | None = None
    method = "none"
    spread: float | None = None
    if deltas and _paired_pass_fail(a, b):
        lower = discordant_lower_bound(b_better, a_better, len(paired))
        method = "exact-discordant"
        spread = (b_better + a_better) / len(paired)
    elif deltas:
        shifted = [min(1.0, max(0.0, (d + 1.0) / 2.0)) for d in deltas]
        # in case-id order: fixed by the bench, never by the scores, and what the
        # results page's any-pair comparison recomputes
        lower = max(-1.0, 2.0 * betting_lower_bound_in_order(shifted) - 1.0)
        method = "betting"
        spread = float(np.std(deltas, ddof=1)) if len(deltas) >= 2 else 0.0
    low = high = None
    if mean is not None and len(deltas) >= 2:
        sd = float(np.std(deltas, ddof=1))
        half = float(student_t.ppf(0.975, len(deltas) - 1)) * sd / math.sqrt(len(deltas))
        low, high = max(-1.0, mean - half), min(1.0, mean + half)
    correlation: float | None = None
    if len(paired) >= 2:
        xs = np.array([d.a for d in paired])
        ys = np.array([d.b for d in paired])
        if xs.std() > 0 and ys.std() > 0:
            correlation = float(np.corrcoef(xs, ys)[0, 1])
    p_two = p_b = None
    if b_better + a_better:
        p_two = float(binomtest(b_better, b_better + a_better, 0.5).pvalue)
        p_b = float(binomtest(b_better, b_better + a_better, 0.5, alternative="greater").pvalue)
    return Comparison(
        task_class=a.task_class,
        a_run_id=a.run_id,
        b_run_id=b.run_id,
        a_sut=a.sut,
        b_sut=b.sut,
        paired=paired,
        only_a=tuple(sorted(set(left) - set(right))),
        only_b=tuple(sorted(set(right) - set(left))),
        mean_delta=mean,
        lower_bound_delta=lower,
        bound_method=method,
        correlation=correlation,
        discordant_b_better=b_better,
        discordant_a_better=a_better,
        mcnemar_p_two_sided=p_two,
        mcnemar_p_b_better=p_b,
        estimate_low=low,
        estimate_high=high,
        spread=spread,
    )


def _num(value: float | None, spec: str = "+.3f") -> str:
    return "n/a" if value is None or math.isnan(value) else format(value, spec)


def format_comparison(c: Comparison, *, margin: float | None = None) -> list[str]:
    """The comparison as terminal lines (what ``codegenie-eval compare`` prints)."""
    counts = c.counts()
    lines = [
        f"compare {c.task_class}: B {c.b_run_id[:16]} ({c.b_sut or '?'}) against "
        f"A {c.a_run_id[:16]} ({c.a_sut or '?'})",
        f"  paired {len(c.paired)} cases: {counts['better']} better, {counts['worse']} worse, "
        f"{counts['same']} same",
    ]
    if c.only_a:
        lines.append(f"  only in A (not paired): {', '.join(c.only_a)}")
    if c.only_b:
        lines.append(f"  only in B (not paired): {', '.join(c.only_b)}")
    lines.append(
        f"  mean delta (B - A) {_num(c.mean_delta)}, one-sided 95% lower bound "
        f"{_num(c.lower_bound_delta)} ({c.bound_method}), correlation "
        f"{_num(c.correlation, '.3f')}"
    )
    if c.estimate_low is not None:
        lines.append(
            f"  estimate, not gating: mean delta {_num(c.mean_delta)} with 95% t interval "
            f"[{_num(c.estimate_low)}, {_num(c.estimate_high)}] (approximate on small or "
            "skewed benches)"
        )
    if c.discordant_a_better + c.discordant_b_better:
        lines.append(
            f"  McNemar (exact) on pass/fail: B passed where A failed {c.discordant_b_better}, "
            f"A passed where B failed {c.discordant_a_better}; p = "
            f"{_num(c.mcnemar_p_two_sided, '.4f')} two-sided, "
            f"{_num(c.mcnemar_p_b_better, '.4f')} for B better"
        )
    else:
        lines.append("  McNemar: no discordant cases (both runs pass and fail the same cases)")
    for d in c.paired:
        if d.verdict != "same":
            lines.append(f"    {d.verdict:6} {d.case_id}: {d.a:.3f} -> {d.b:.3f} ({d.delta:+.3f})")
    if margin is not None:
        ok = c.non_inferior(margin)
        lines.append(
            f"  non-inferiority at margin {margin:g}: "
            + (
                f"PASS (lower bound {_num(c.lower_bound_delta)} > {-margin:+g})"
                if ok
                else f"FAIL (lower bound {_num(c.lower_bound_delta)} <= {-margin:+g})"
            )
        )
        if margin > 0 and c.spread is not None and c.paired:
            lines.append("  " + _margin_advice(c, margin))
    return lines


def _margin_advice(c: Comparison, margin: float) -> str:
    pass_fail = c.bound_method == "exact-discordant"
    assert c.spread is not None
    needed = cases_for_margin(
        margin,
        pass_fail=pass_fail,
        spread=c.spread,
        deltas=tuple(d.delta for d in c.paired),
    )
    what = (
        f"{c.spread:.0%} of cases discordant"
        if pass_fail
        else f"differences spread like these (sd {c.spread:.3f})"
    )
    if needed is None:
        ceiling = MAX_PLANNED_PASS_FAIL if pass_fail else MAX_PLANNED_CASES
        return (
            f"two equal agents with {what} do not clear margin {margin:g} even with "
            f"{ceiling} paired cases (80% power)"
        )
    enough = "this bench has enough" if len(c.paired) >= needed else "this bench has too few"
    return (
        f"two equal agents with {what} clear margin {margin:g} 80% of the time from about "
        f"{needed} paired cases; {enough} ({len(c.paired)})"
    )


def comparison_json(c: Comparison) -> str:
    return json.dumps(c.as_json(), sort_keys=True)


__all__ = [
    "MAX_PLANNED_CASES",
    "MAX_PLANNED_PASS_FAIL",
    "CaseDelta",
    "Comparison",
    "cases_for_margin",
    "compare",
    "comparison_json",
    "discordant_lower_bound",
    "format_comparison",
]
