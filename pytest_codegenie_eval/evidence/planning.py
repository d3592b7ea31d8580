"""How many cases are enough: the bench size at which ``lower_bound_95`` clears a tier.

For an agent that passes a share ``rate`` of cases, :func:`cases_needed` finds the
smallest number of cases n for which the gate's bound reaches ``threshold`` with at least
``power`` probability (80% by default).

* **One attempt per case (pass/fail):** exact. A bench of n cases is decided by its number
  of passes k ~ Binomial(n, rate), and the bound rises with k. So for each n the smallest
  sufficient k is found (with the Clopper-Pearson bound, then checked with the gate's own
  bound, the smaller of BCa and Clopper-Pearson) and the power is the binomial tail
  P(K >= k).
* **K attempts per case:** simulated, deterministically. A case's score is the mean of K
  attempts, each passing with probability ``rate`` independently, and 400 benches are
  drawn per candidate n.

Both are stated in docs/adr/0015-a-bound-that-covers.md and in the README.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

from pytest_codegenie_eval.evidence.stats import clopper_pearson_lower_bound, lower_bound_95

MAX_CASES = 5000
_SIMULATED_BENCHES = 400


@dataclass(frozen=True)
class Plan:
    cases: int | None  # None: not reachable within MAX_CASES (rate at or below threshold)
    power: float  # at ``cases``
    method: str  # "exact" or "simulated"


def perfect_cases_needed(threshold: float, confidence: float = 0.95) -> int:
    """Perfect cases a bench needs before its bound reaches ``threshold``: the smallest n
    with 0.05 ** (1 / n) >= threshold (every case passing, so the bound is Clopper-Pearson)."""
    if threshold <= 0.0:
        return 1
    if threshold >= 1.0:
        raise ValueError("no finite bench reaches a bound of 1.0")
    n = max(1, math.ceil(math.log(1.0 - confidence) / math.log(threshold)))
    while clopper_pearson_lower_bound(n, n, confidence) < threshold:  # rounding guard
        n += 1
    return n


def _smallest_k(n: int, threshold: float) -> int | None:
    """The fewest passes out of n whose Clopper-Pearson bound reaches ``threshold``."""
    if clopper_pearson_lower_bound(n, n) < threshold:
        return None
    low, high = 0, n  # clopper_pearson(high) >= threshold
    while high - low > 1:
        middle = (low + high) // 2
        if clopper_pearson_lower_bound(middle, n) >= threshold:
            high = middle
        else:
            low = middle
    return high


def _gate_k(n: int, k: int, threshold: float) -> int | None:
    """``k`` moved up until the gate's own bound on a pass/fail run (Clopper-Pearson, no
    seed) agrees."""
    while k <= n:
        scores = [1.0] * k + [0.0] * (n - k)
        if lower_bound_95(scores, seed=0, kind="pass_fail").value >= threshold:
            return k
        k += 1
    return None


def cases_needed(
    rate: float, threshold: float, *, repeats: int = 1, power: float = 0.8, seed: int = 0
) -> Plan:
    """The smallest bench (in cases) whose bound clears ``threshold`` with ``power``."""
    if not 0.0 <= rate <= 1.0 or not 0.0 <= threshold <= 1.0 or not 0.0 < power < 1.0:
        raise ValueError("need 0 <= rate <= 1, 0 <= threshold <= 1 and 0 < power < 1")
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    return _cached(rate, threshold, repeats, power, seed)


@functools.lru_cache(maxsize=256)
def _cached(rate: float, threshold: float, repeats: int, power: float, seed: int) -> Plan:
    if rate <= threshold or threshold >= 1.0:
        return Plan(None, 0.0, "exact" if repeats == 1 else "simulated")
    if repeats == 1:
        return _exact(rate, threshold, power)
    return _simulated(rate, threshold, repeats, power, seed)


def _exact(rate: float, threshold: float, power: float) -> Plan:
    # scan with the closed-form Clopper-Pearson part; confirm a candidate with the gate's
    # bound (BCa can be the lower one) before answering
    for n in range(1, MAX_CASES + 1):
        k = _smallest_k(n, threshold)
        if k is None or float(binom.sf(k - 1, n, rate)) < power:
            continue
        k_gate = _gate_k(n, k, threshold)
        if k_gate is None:
            continue
        chance = float(binom.sf(k_gate - 1, n, rate))
        if chance >= power:
            return Plan(n, chance, "exact")
    return Plan(None, 0.0, "exact")


def _power(n: int, rate: float, threshold: float, repeats: int, seed: int) -> float:
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, n, repeats])))
    hits = 0
    for i in range(_SIMULATED_BENCHES):
        means = rng.binomial(repeats, rate, size=n) / repeats
        hits += lower_bound_95(means.tolist(), seed=i).value >= threshold
    return hits / _SIMULATED_BENCHES


def _simulated(rate: float, threshold: float, repeats: int, power: float, seed: int) -> Plan:
    # doubling, then bisection over n (power rises with n up to simulation noise)
    high = 4
    while _power(high, rate, threshold, repeats, seed) < power:
        high *= 2
        if high > MAX_CASES:
            return Plan(None, 0.0, "simulated")
    low = high // 2
    while high - low > 1:
        middle = (low + high) // 2
        if _power(middle, rate, threshold, repeats, seed) >= power:
            high = middle
        else:
            low = middle
    return Plan(high, _power(high, rate, threshold, repeats, seed), "simulated")


__all__ = ["MAX_CASES", "Plan", "cases_needed", "perfect_cases_needed"]
