"""How many cases are enough: the bench size at which ``lower_bound_95`` clears a tier.

For an agent that passes a share ``rate`` of cases, :func:`cases_needed` finds the
smallest number of cases n for which the gate's bound reaches ``threshold`` with at least
``power`` probability (80% by default).

* **One attempt per case (pass/fail):** exact, for the gate's bound of a pass/fail task
  class (Clopper-Pearson, no seed). A bench of n cases is decided by its number of passes
  k ~ Binomial(n, rate), and the bound rises with k. So for each n the smallest sufficient
  k is found and the power is the binomial tail P(K >= k). Power is a sawtooth in n (k
  moves in whole steps): :func:`power_curve` gives it over a range, and
  :func:`stays_above` the smallest n from which it no longer dips below the target.
* **K attempts per case:** simulated, deterministically. A case's score is the mean of K
  attempts, each passing with the case's own probability: ``rate`` for every case, or,
  with ``spread`` > 0, drawn per case from a Beta distribution of mean ``rate`` and that
  standard deviation (real cases differ in difficulty, and assuming they do not overstates
  power). 400 benches are drawn per candidate n.

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


def exact_power(n: int, rate: float, threshold: float) -> float:
    """The chance that a bench of n single-attempt pass/fail cases, each passing with
    probability ``rate``, has a bound reaching ``threshold``."""
    k = _smallest_k(n, threshold)
    return 0.0 if k is None else float(binom.sf(k - 1, n, rate))


def power_curve(rate: float, threshold: float, sizes: range) -> list[tuple[int, float]]:
    """``(n, exact_power)`` for every n in ``sizes``."""
    return [(n, exact_power(n, rate, threshold)) for n in sizes]


def stays_above(rate: float, threshold: float, power: float, start: int) -> int | None:
    """The smallest n at or above ``start`` from which the exact power no longer dips below
    ``power`` within the next ``max(50, start)`` sizes (the sawtooth's dips shrink as n
    grows); ``None`` when none is found within ``MAX_CASES``."""
    horizon = max(50, start)
    n = start
    while n + horizon <= MAX_CASES:
        dips = [m for m in range(n, n + horizon) if exact_power(m, rate, threshold) < power]
        if not dips:
            return n
        n = dips[-1] + 1
    return None


def cases_needed(
    rate: float,
    threshold: float,
    *,
    repeats: int = 1,
    power: float = 0.8,
    seed: int = 0,
    spread: float = 0.0,
) -> Plan:
    """The smallest bench (in cases) whose bound clears ``threshold`` with ``power``."""
    if not 0.0 <= rate <= 1.0 or not 0.0 <= threshold <= 1.0 or not 0.0 < power < 1.0:
        raise ValueError("need 0 <= rate <= 1, 0 <= threshold <= 1 and 0 < power < 1")
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    if spread < 0.0 or (spread > 0.0 and spread >= math.sqrt(rate * (1.0 - rate))):
        raise ValueError(
            f"the case-to-case spread must be below sqrt(rate * (1 - rate)) = "
            f"{math.sqrt(rate * (1.0 - rate)):.3f}, got {spread}"
        )
    return _cached(rate, threshold, repeats, power, seed, spread)


@functools.lru_cache(maxsize=256)
def _cached(
    rate: float, threshold: float, repeats: int, power: float, seed: int, spread: float
) -> Plan:
    if rate <= threshold or threshold >= 1.0:
        return Plan(None, 0.0, "exact" if repeats == 1 else "simulated")
    if repeats == 1:
        return _exact(rate, threshold, power)
    return _simulated(rate, threshold, repeats, power, seed, spread)


def _exact(rate: float, threshold: float, power: float) -> Plan:
    # the closed-form Clopper-Pearson scan, confirmed with the gate's own function
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


def _case_rates(rng: np.random.Generator, n: int, rate: float, spread: float) -> np.ndarray:
    """Each case's own pass probability: ``rate`` for all, or Beta with mean ``rate`` and
    standard deviation ``spread``."""
    if spread <= 0.0 or rate in (0.0, 1.0):
        return np.full(n, rate)
    strength = rate * (1.0 - rate) / spread**2 - 1.0  # a + b of the Beta
    return rng.beta(rate * strength, (1.0 - rate) * strength, size=n)


def _power(
    n: int, rate: float, threshold: float, repeats: int, seed: int, spread: float = 0.0
) -> float:
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, n, repeats])))
    hits = 0
    for i in range(_SIMULATED_BENCHES):
        means = rng.binomial(repeats, _case_rates(rng, n, rate, spread)) / repeats
        hits += lower_bound_95(means.tolist(), seed=i).value >= threshold
    return hits / _SIMULATED_BENCHES


def _simulated(
    rate: float, threshold: float, repeats: int, power: float, seed: int, spread: float
) -> Plan:
    # doubling, then bisection over n (power rises with n up to simulation noise)
    high = 4
    while _power(high, rate, threshold, repeats, seed, spread) < power:
        high *= 2
        if high > MAX_CASES:
            return Plan(None, 0.0, "simulated")
    low = high // 2
    while high - low > 1:
        middle = (low + high) // 2
        if _power(middle, rate, threshold, repeats, seed, spread) >= power:
            high = middle
        else:
            low = middle
    return Plan(high, _power(high, rate, threshold, repeats, seed, spread), "simulated")


__all__ = [
    "MAX_CASES",
    "Plan",
    "cases_needed",
    "exact_power",
    "perfect_cases_needed",
    "power_curve",
    "stays_above",
]
