"""Statistics behind ``lower_bound_95``: a deterministic lower bound on the mean score.

The gate reads one one-sided 95% lower confidence bound of the mean case score, with a
finite-sample guarantee for scores in [0, 1] (``docs/adr/0020-one-bound-chosen-by-the-bench.md``,
amending ADRs 0002 and 0015). Which bound is chosen by what the task class declares its scores
to be, never by the scores a run produced:

* pass/fail task classes (``register_task_class(..., scores="pass_fail")``): the exact
  Clopper-Pearson bound on the share of passes;
* graded task classes (the default): a betting bound after Waudby-Smith and Ramdas (a
  fixed mixture of bets on a capital process, rejected by Ville's inequality) whose bets do
  not depend on the scores, so raising any score never lowers it
  (``docs/adr/0022-a-monotone-betting-bound.md``), betting in an order drawn from a seed that
  comes from the bench (:func:`seed_from_bench`).

The bias-corrected and accelerated (BCa) bootstrap bound (ADR 0002) is computed beside it
as a diagnostic: it is tight but under-covers at small n, and the gate never reads it.

Why not simply call :func:`scipy.stats.bootstrap`? Its BCa acceleration comes from a
jackknife that materialises ``n x (n - 1)`` leave-one-out samples, which is O(n²) in time and
memory (about 80 GB of indices at n = 100,000), and it draws all resamples at once. For the
mean the jackknife has a closed form, so this module computes the acceleration in O(n) and
draws the resamples in batches of about 2**16 values, which keeps memory near 1 MiB. It
draws the *same* random stream as scipy and reproduces scipy's arithmetic step by step, so
for data without near-ties the bound agrees with scipy's to rounding (the unit tests pin it
to 1e-12 or better).

Two places deliberately differ from naive floating point:

* **Ties.** ``z0`` counts bootstrap means below the observed mean, with ties counting one
  half (the rule scipy uses; Efron-Tibshirani and R's ``boot`` count only strictly smaller
  means, which is badly biased for pass/fail scores). Whether a bootstrap mean *ties* is
  decided on exact sums: on an exact decimal grid when the scores are short decimals (0/1,
  halves, rubric points) and within a rigorous rounding-error tolerance otherwise, never by
  raw float equality of two differently rounded means.
* **Degenerate inputs** (n < 2, all scores equal, or any case where BCa is undefined, such as
  an infinite ``z0``) leave the diagnostic undefined; the gate's bound is never NaN and no
  warnings are emitted.

Everything is deterministic: the generators are ``numpy.random.Generator(PCG64(seed))``, and
identical inputs give identical float bits on the same platform and library versions.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from pytest_codegenie_eval.models import PARTIAL_PREFIX

__all__ = [
    "DEFAULT_RESAMPLES",
    "TIE_RULE_HALF",
    "TIE_RULE_STRICT",
    "LowerBound",
    "ScoreKind",
    "TieRule",
    "Welford",
    "bca_lower_bound",
    "betting_lower_bound",
    "betting_lower_bound_in_order",
    "clopper_pearson_lower_bound",
    "largest_refuted_mean",
    "lower_bound_95",
    "seed_from_bench",
    "seed_from_run_id",
    "wilson_lower_bound",
]

DEFAULT_RESAMPLES: Final = 1000
"""Bootstrap resamples drawn per bound unless the caller asks otherwise."""

TIE_RULE_HALF: Final = "ties-half"
"""Bootstrap means equal to the observed mean count one half toward ``z0`` (scipy's rule)."""

TIE_RULE_STRICT: Final = "strict-less"
"""Only strictly smaller bootstrap means count toward ``z0`` (Efron-Tibshirani, R ``boot``)."""

TieRule = Literal["ties-half", "strict-less"]

ScoreKind = Literal["graded", "pass_fail"]
"""What a task class declares its rubric's scores to be (``register_task_class(scores=)``)."""
"""The names a :class:`LowerBound` may carry in ``tie_rule``."""

BATCH_VALUES: Final = 2**16
"""Resampled values per batch: 2**16 float64 values plus their int64 indices is 1 MiB."""

BETTING_CAP: Final = 0.75
"""Largest bet as a share of the capital at risk (λ·m ≤ 0.75), as in Waudby-Smith & Ramdas."""

BETTING_SCALES: Final = tuple(round(1.2**k, 4) for k in range(21))
"""The mixture's gamblers bet ``s`` times the plug-in bet at the largest variance a mean
allows, for ``s`` from 1 (scores as spread as they can be) to about 38 (a spread near 0.01)."""

BETTING_WEIGHTS: Final = tuple(
    0.8 ** max(0, k - 2) / sum(0.8 ** max(0, j - 2) for j in range(21)) for k in range(21)
)
"""Each gambler's share of the starting capital: most, and equal, on the three most spread-out
scales, where a mismatched bet costs the most width, then geometrically less (0.8 a step)
toward tightly clustered scores, where the bound is narrow anyway."""

_SCALES: Final = np.array(BETTING_SCALES)
_LOG_WEIGHTS: Final = np.log(np.array(BETTING_WEIGHTS))
_VARIANCE_FLOOR: Final = 1e-6  # m (1 - m) near m = 0 or 1, where the cap or this floor binds

_BETTING_STREAM: Final = 0x6265_7474  # "bett": the betting order's own random stream
_BISECTIONS: Final = 60

_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_UNIT_ROUNDOFF: Final = 2.0**-53
_MAX_DECIMALS: Final = 6


@dataclass(frozen=True, slots=True)
class LowerBound:
    """A one-sided lower confidence bound on the mean score and how it was obtained.

    ``method`` names the bound ``value`` came from: ``"clopper-pearson"`` or ``"betting"``
    (the gate's, from :func:`lower_bound_95`), ``"bca"`` (from :func:`bca_lower_bound`
    alone), ``"wilson"`` (reports written before the gate read one bound), and ``"none"``
    when there were no scores at all (``value`` is then 0.0). ``bca`` holds the BCa
    diagnostic and ``valid`` the finite-sample bound. ``resamples`` is the number of
    bootstrap resamples behind the BCa figure; ``z0`` and ``acceleration`` are its bias
    correction and acceleration when they were computed and finite, else ``None``. ``note``
    says in words which method was used and why.
    """

    value: float
    method: Literal["bca", "wilson", "clopper-pearson", "betting", "none"]
    resamples: int
    seed: int
    z0: float | None
    acceleration: float | None
    tie_rule: str
    note: str
    bca: float | None = None  # the BCa bound itself, whether or not it was the smaller
    valid: float | None = None  # the finite-sample bound, whether or not it was the smaller
    valid_method: str = ""  # "clopper-pearson" or "betting"


def seed_from_run_id(run_id: str) -> int:
    """Derive the bootstrap seed from a content-derived run id.

    The seed is the first eight hex digits of the run id read as an integer (0 to 2**32 - 1),
    after stripping an optional ``partial:`` prefix (which marks a partial run and is not part
    of the hex id). Raises :class:`ValueError` when those eight characters are not
    hex digits, because ``int(..., 16)`` alone would also accept ``0x``, signs, ``_`` and
    whitespace and so map different ids to one seed.
    """
    hex_part = run_id.removeprefix(PARTIAL_PREFIX)
    head = hex_part[:8]
    if _HEX8.fullmatch(head) is None:
        raise ValueError(f"run id {run_id!r} does not start with eight hex digits")
    return int(head, 16)


def wilson_lower_bound(successes: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Wilson score lower bound on a binomial proportion.

    Uses ``z = Φ⁻¹(confidence)`` (1.6449 at 95%), so ten successes out of ten give about
    0.787, not 1.0. Returns 0.0 for ``n == 0`` and for zero successes.
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    _check_confidence(confidence)
    if n == 0 or successes == 0:
        # The formula gives 0 here too, up to a rounding residue that could be -1e-17.
        return 0.0
    z = _ndtri(confidence)
    p_hat = successes / n
    z2 = z * z
    center = p_hat + z2 / (2 * n)
    margin = z * math.sqrt(p_hat * (1.0 - p_hat) / n + z2 / (4 * n * n))
    return min(1.0, max(0.0, (center - margin) / (1.0 + z2 / n)))


def clopper_pearson_lower_bound(successes: int, n: int, confidence: float = 0.95) -> float:
    """One-sided exact (Clopper-Pearson) lower bound on a binomial proportion.

    The ``1 - confidence`` quantile of Beta(successes, n - successes + 1): it covers the true
    proportion with probability at least ``confidence`` for every n and p. Ten successes out
    of ten give 0.05**(1/10) = 0.741. Returns 0.0 for ``n == 0`` and for zero successes.
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    _check_confidence(confidence)
    if n == 0 or successes == 0:
        return 0.0
    # scipy is imported here, when a pass/fail bound is asked for: a run of a graded task
    # class never pays for importing it
    from scipy.special import betaincinv

    return float(betaincinv(successes, n - successes + 1, 1.0 - confidence))


def betting_lower_bound(
    scores: Sequence[float] | npt.ArrayLike, *, seed: int, confidence: float = 0.95
) -> float:
    """One-sided lower confidence bound on the mean of scores in [0, 1] by betting, which
    never goes down when any score goes up.

    After Waudby-Smith & Ramdas, "Estimating means of bounded random variables by betting"
    (JRSS-B 2024). For a candidate mean ``m``, a gambler starting with capital 1 bets
    ``λ (x_i - m)`` on each score in turn. If the mean were ``m`` or less the capital would be
    a nonnegative supermartingale, so by Ville's inequality it ever reaches ``1/α`` with
    probability at most ``α``; the bound is the largest ``m`` the capital refutes. Valid for
    every distribution on [0, 1] and every n.

    The bets do not depend on the scores, which is what makes the bound monotone: every
    factor ``1 + λ (x_i - m)`` grows with ``x_i``, so raising a score raises the capital at
    every candidate mean and every time, and the bound cannot fall
    (``docs/adr/0022-a-monotone-betting-bound.md``). Instead of estimating the variance from
    earlier scores (the plug-in bet, which is not monotone), the capital is a fixed mixture
    of gamblers: gambler ``k`` bets ``λ_k(m) = s_k sqrt(2 log(1/α) / (n m (1 - m)))`` (the
    plug-in bet at the largest variance a mean of ``m`` allows, scaled by ``s_k``), at most
    ``BETTING_CAP / m``, and holds a share ``w_k`` of the capital (``BETTING_SCALES``,
    ``BETTING_WEIGHTS``). A mixture of nonnegative supermartingales is one, so Ville's
    inequality applies to the mixture. Each ``λ_k(m) (x - m)`` is nonincreasing in ``m`` for
    every ``x`` in [0, 1], so the refuted candidates form an interval and bisection finds its
    end in ``O(60 k n)`` time.

    The scores are bet on in an order drawn from ``seed`` (a stream of its own, so this does
    not share draws with the bootstrap): the same inputs give the same bits.
    """
    x = _as_scores(scores)
    _check_confidence(confidence)
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise ValueError("the betting bound needs scores in [0, 1]")
    if x.size == 0:
        return 0.0
    stream = np.random.SeedSequence([seed, _BETTING_STREAM])
    return betting_lower_bound_in_order(
        x[np.random.Generator(np.random.PCG64(stream)).permutation(x.size)],
        confidence=confidence,
    )


def betting_lower_bound_in_order(
    scores: Sequence[float] | npt.ArrayLike, *, confidence: float = 0.95
) -> float:
    """:func:`betting_lower_bound` betting on the scores in the order given, which must not
    depend on the scores (``compare`` bets on the paired cases in case-id order, so the
    results page can recompute the same figure for any two runs). Every step is plain
    IEEE arithmetic and ``log1p``/``exp``, in a fixed order: the same inputs give the same
    bits, and a port that does the same operations gives the same figure."""
    xs = _as_scores(scores)
    _check_confidence(confidence)
    if xs.size and (xs.min() < 0.0 or xs.max() > 1.0):
        raise ValueError("the betting bound needs scores in [0, 1]")
    n = int(xs.size)
    if n == 0:
        return 0.0
    target = 1.0 / (1.0 - confidence)
    threshold = math.log(target)
    unit_bets = _SCALES[:, None] * math.sqrt(2.0 * threshold / n)

    def refuted(m: float) -> bool:
        bets = unit_bets / math.sqrt(max(m * (1.0 - m), _VARIANCE_FLOOR))
        if m > 0.0:
            bets = np.minimum(bets, BETTING_CAP / m)
        # log of each gambler's share of the capital after each score
        log_capital = np.cumsum(np.log1p(bets * (xs - m)), axis=1) + _LOG_WEIGHTS[:, None]
        if log_capital.max() >= threshold:
            return True
        # every share is below 1/α here, so exp cannot overflow; each step is monotone in
        # every score, so the float result is too
        return bool(np.exp(log_capital).sum(axis=0).max() >= target)

    return largest_refuted_mean(refuted)


def largest_refuted_mean(refuted: Callable[[float], bool]) -> float:
    """The end of the candidate means a betting test refutes, by bisection on [0, 1]: 0.0
    when it refutes none. ``refuted`` must hold on an interval starting at 0 (true up to
    some point, false after); ``refuted(1.0)`` is always false, since every bet on a score
    of at most 1 loses against a mean of 1."""
    if not refuted(0.0):
        return 0.0
    low, high = 0.0, 1.0
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2.0
        if refuted(middle):
            low = middle
        else:
            high = middle
    return low


def bca_lower_bound(
    scores: Sequence[float] | npt.ArrayLike,
    *,
    seed: int,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    tie_rule: TieRule = TIE_RULE_HALF,
    batch_rows: int | None = None,
) -> LowerBound | None:
    """The raw one-sided BCa lower bound of the mean, or ``None`` where BCa is undefined.

    BCa is undefined for fewer than two scores, for scores that are all equal, and whenever
    ``z0`` or the acceleration is not finite (every bootstrap mean on one side of the
    observed mean) or the BCa level adjustment breaks down. ``batch_rows`` overrides the
    number of resamples drawn per batch (default ``max(1, 2**16 // n)``); it changes memory
    use only, never the result, because each row is an independent draw of ``n`` indices from
    one continuous stream. Raises :class:`ValueError` on non-finite scores or bad parameters.
    """
    x = _as_scores(scores)
    outcome = _bca(
        x,
        seed=seed,
        resamples=resamples,
        confidence=confidence,
        tie_rule=tie_rule,
        batch_rows=batch_rows,
    )
    return outcome if isinstance(outcome, LowerBound) else None


def lower_bound_95(
    scores: Sequence[float],
    *,
    seed: int,
    kind: ScoreKind = "graded",
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
) -> LowerBound:
    """The gate's one-sided lower confidence bound on the mean score: one finite-sample
    bound, chosen by what the task class declares its scores to be, never by the scores a
    run happened to produce.

    ``kind="pass_fail"``: the exact Clopper-Pearson bound on the share of 1s (every score
    must be 0 or 1). ``kind="graded"``: the betting bound (:func:`betting_lower_bound`),
    valid for any distribution on [0, 1]. The BCa bootstrap bound is computed beside it as a
    diagnostic (``bca``); the gate never reads it. No scores give 0.0 with method
    ``"none"``. Raises :class:`ValueError` for a score outside [0, 1], or not 0 or 1 under
    ``pass_fail``.
    """
    x = _as_scores(scores)
    n = int(x.size)
    _check_parameters(seed, resamples, confidence)
    if kind not in ("graded", "pass_fail"):
        raise ValueError(f"kind must be 'graded' or 'pass_fail', got {kind!r}")
    if n == 0:
        return LowerBound(0.0, "none", 0, seed, None, None, TIE_RULE_HALF, "no scores")
    if x.min() < 0.0 or x.max() > 1.0:
        raise ValueError("the gate's bound needs scores in [0, 1]")
    ones = x == 1.0
    if kind == "pass_fail":
        if not bool(np.all(ones | (x == 0.0))):
            raise ValueError("pass/fail scores must each be 0 or 1")
        value = clopper_pearson_lower_bound(int(ones.sum()), n, confidence)
        method: Literal["clopper-pearson", "betting"] = "clopper-pearson"
    else:
        value = betting_lower_bound(x, seed=seed, confidence=confidence)
        method = "betting"
    outcome = _bca(x, seed=seed, resamples=resamples, confidence=confidence)
    if isinstance(outcome, LowerBound):
        bca: float | None = outcome.value
        diagnostic = f"BCa {outcome.value:.4f} beside it, a diagnostic the gate does not read"
        z0, acceleration, tie_rule = outcome.z0, outcome.acceleration, outcome.tie_rule
    else:
        bca = None
        diagnostic = f"BCa undefined ({outcome.reason})"
        z0, acceleration, tie_rule = outcome.z0, outcome.acceleration, TIE_RULE_HALF
    note = f"{method} bound of a {kind.replace('_', '/')} task class (finite-sample); {diagnostic}"
    return LowerBound(
        value,
        method,
        resamples if bca is not None else 0,
        seed,
        z0,
        acceleration,
        tie_rule,
        note,
        bca=bca,
        valid=value,
        valid_method=method,
    )


def seed_from_bench(task_class: str, case_ids: Iterable[str], repeats: int) -> int:
    """The betting order's seed: from the bench (the task class, its cases, the repeat
    count), never from the results, so the same bench always bets in the same order and a
    changed score or a harmless edit of the agent cannot redraw it."""
    from pytest_codegenie_eval.hashing import blake3_hex

    material = json.dumps(
        {"task_class": task_class, "cases": sorted(set(case_ids)), "repeats": repeats},
        sort_keys=True,
    )
    return int(blake3_hex(material.encode("utf-8"))[:8], 16)


class Welford:
    """Streaming mean and sample standard deviation (Welford's algorithm).

    Numerically stable in one pass, unlike ``sum(x²) - n·mean²``. ``stddev`` uses ``ddof=1``
    and is 0.0 for fewer than two values; ``mean`` is 0.0 when empty, so report fields are
    never NaN.
    """

    __slots__ = ("_m2", "_mean", "_n")

    def __init__(self) -> None:
        self._n = 0
        self._mean = 0.0
        self._m2 = 0.0

    def add(self, x: float) -> None:
        """Add one value; raises :class:`ValueError` for NaN or infinity."""
        value = float(x)
        if not math.isfinite(value):
            raise ValueError(f"cannot aggregate non-finite value {x!r}")
        self._n += 1
        delta = value - self._mean
        self._mean += delta / self._n
        # Using the updated mean in the second factor is what makes the update stable.
        self._m2 += delta * (value - self._mean)

    def merge(self, other: Welford) -> None:
        """Fold *other*'s values into this accumulator (Chan et al.'s parallel update)."""
        if other._n == 0:
            return
        if self._n == 0:
            self._n, self._mean, self._m2 = other._n, other._mean, other._m2
            return
        n = self._n + other._n
        delta = other._mean - self._mean
        self._mean += delta * other._n / n
        self._m2 += other._m2 + delta * delta * self._n * other._n / n
        self._n = n

    @property
    def n(self) -> int:
        """Number of values added."""
        return self._n

    @property
    def mean(self) -> float:
        """Arithmetic mean, 0.0 when empty."""
        return self._mean

    @property
    def variance(self) -> float:
        """Sample variance (``ddof=1``), 0.0 for fewer than two values."""
        if self._n < 2:
            return 0.0
        # Rounding can leave a tiny negative M2 for (nearly) constant data.
        return max(0.0, self._m2) / (self._n - 1)

    @property
    def stddev(self) -> float:
        """Sample standard deviation (``ddof=1``), 0.0 for fewer than two values."""
        return math.sqrt(self.variance)


# --------------------------------------------------------------------------- internals


@dataclass(frozen=True, slots=True)
class _Undefined:
    """Why BCa could not produce a bound, with whatever was computed before it gave up."""

    reason: str
    z0: float | None = None
    acceleration: float | None = None


def _as_scores(scores: Sequence[float] | npt.ArrayLike) -> npt.NDArray[np.float64]:
    x = np.array(scores, dtype=np.float64)  # a copy: callers may mutate their list later
    if x.ndim != 1:
        raise ValueError(f"scores must be one-dimensional, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("scores must be finite")
    return x


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _check_parameters(seed: int, resamples: int, confidence: float) -> None:
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    _check_confidence(confidence)


def _bca(
    x: npt.NDArray[np.float64],
    *,
    seed: int,
    resamples: int,
    confidence: float,
    tie_rule: TieRule = TIE_RULE_HALF,
    batch_rows: int | None = None,
) -> LowerBound | _Undefined:
    """BCa lower bound following scipy's ``_bca_interval`` step by step, with O(n) memory."""
    _check_parameters(seed, resamples, confidence)
    if tie_rule not in (TIE_RULE_HALF, TIE_RULE_STRICT):
        raise ValueError(f"unknown tie rule {tie_rule!r}")
    if batch_rows is not None and batch_rows < 1:
        raise ValueError(f"batch_rows must be positive, got {batch_rows}")
    n = int(x.size)
    if n < 2:
        return _Undefined(f"{n} score{'s' if n != 1 else ''}, need at least 2")
    if x.min() == x.max():
        # Every resample mean equals the observed mean: z0 and the acceleration are 0/0.
        return _Undefined("all scores equal")

    acceleration = _acceleration(x)
    if acceleration is None:
        return _Undefined("acceleration not finite")

    rng = np.random.Generator(np.random.PCG64(seed))
    sums = _resample_sums(x, rng, resamples, batch_rows or max(1, BATCH_VALUES // n))

    below, ties, tie_basis = _count_below_and_ties(sums, x)
    if tie_rule == TIE_RULE_HALF:
        # scipy: (count(θ* < θ̂) + count(θ* <= θ̂)) / (2B), written the same way for equal bits.
        percentile = float(2 * below + ties) / (2 * resamples)
    else:
        percentile = float(below) / resamples
    z0 = _ndtri(percentile)
    if not math.isfinite(z0):
        side = "above" if percentile == 0.0 else "below"
        return _Undefined(
            f"z0 infinite: every bootstrap mean {side} the observed mean", None, acceleration
        )

    # Efron & Tibshirani (1993) eq. 14.10, as in scipy; alpha is the one-sided tail.
    z_alpha = _ndtri(1.0 - confidence)
    num = z0 + z_alpha
    denominator = 1.0 - acceleration * num
    if not denominator > 0.0:
        # The adjusted level would jump to the wrong tail; the BCa correction has broken down.
        return _Undefined(
            "BCa level adjustment undefined (1 - a·(z0 + z_alpha) <= 0)", z0, acceleration
        )
    level = _STANDARD_NORMAL.cdf(z0 + num / denominator)

    # Bootstrap means exactly as np.mean computes them: pairwise sum, then divide by n.
    theta = np.sort(sums / n)
    value = _quantile_linear(theta, level)
    if x.min() >= 0.0 and x.max() <= 1.0:
        value = min(1.0, max(0.0, value))
    note = (
        f"BCa, {resamples} resamples of PCG64({seed}); ties {tie_basis}, counted by "
        f"{tie_rule}; level {level!r}"
    )
    return LowerBound(value, "bca", resamples, seed, z0, acceleration, tie_rule, note)


def _acceleration(x: npt.NDArray[np.float64]) -> float | None:
    """Jackknife acceleration of the mean in closed form: Σd³ / (6 (Σd²)^1.5), d = x - mean.

    scipy computes ``U_i = (n - 1)(θ_dot - θ_(i))`` from the leave-one-out means
    ``θ_(i) = (S - x_i)/(n - 1)``; their average ``θ_dot`` is the mean, so ``U_i = x_i - mean``
    and ``a = (ΣU³/n³) / (6 (ΣU²/n²)^1.5)``: the same value and sign, in O(n) not O(n²).
    """
    # math.fsum iterates the array directly: exact rounding without an n-element list.
    d = x - math.fsum(x) / x.size
    largest = max(float(d.max()), -float(d.min()))
    if largest == 0.0:
        return None
    # a is scale-free; rescaling by a power of two is exact and keeps d², d³ from underflowing
    # when scores differ only in their last bits.
    np.ldexp(d, -math.frexp(largest)[1], out=d)
    power = d * d
    sum2 = math.fsum(power)
    power *= d
    sum3 = math.fsum(power)
    acceleration = sum3 / (6.0 * sum2**1.5)
    return acceleration if math.isfinite(acceleration) else None


def _resample_sums(
    x: npt.NDArray[np.float64], rng: np.random.Generator, resamples: int, batch_rows: int
) -> npt.NDArray[np.float64]:
    """Row sums of ``resamples`` bootstrap resamples, drawn ``batch_rows`` rows at a time.

    scipy draws ``rng.integers(0, n, size=(B, n))`` in one call. For int64 output with
    ``n <= 2**32`` numpy fills the array in C order from one 32-bit draw per value and keeps
    the spare half of each 64-bit PCG64 output in the generator state, so consecutive
    ``(batch, n)`` draws concatenate to exactly the same indices (checked by the tests).
    """
    n = int(x.size)
    sums = np.empty(resamples, dtype=np.float64)
    rows = min(batch_rows, resamples)
    buffer = np.empty((rows, n), dtype=np.float64)
    done = 0
    while done < resamples:
        rows = min(batch_rows, resamples - done)
        index = rng.integers(0, n, size=(rows, n))
        gathered = buffer[:rows]
        # mode='clip' lets take write straight into out; 'raise' would buffer a copy.
        np.take(x, index, out=gathered, mode="clip")
        # Summing along the contiguous last axis is the same pairwise reduction np.mean uses.
        np.sum(gathered, axis=1, out=sums[done : done + rows])
        # Free the indices now, or the next draw allocates while this batch's are still alive.
        del index
        done += rows
    return sums


def _count_below_and_ties(
    sums: npt.NDArray[np.float64], x: npt.NDArray[np.float64]
) -> tuple[int, int, str]:
    """Count resample sums below and equal to the observed sum, judged on exact sums.

    Two resamples with the same multiset of scores can have float sums that differ in the
    last bits (summation order), so raw ``==`` on means would split true ties at random.
    When every score is a decimal with at most six places (0/1, halves, rubric points) and the
    rounding error bound is below a quarter grid step, each float sum is rounded back to its
    exact integer number of grid steps and compared exactly. Otherwise the observed sum is
    taken exactly rounded (``math.fsum``) and a resample ties when it lies within the
    worst-case rounding error of any summation order, ``(n + 2)·n·max|x|·2u``.
    """
    n = int(x.size)
    grid = _decimal_grid(x)
    if grid is not None:
        decimals, target, largest_steps = grid
        # |float sum · scale - exact steps| <= (n + 2)·Σ|steps|·u; keep it under a quarter step
        # so rounding recovers the exact step count (this also keeps every sum below 2**53).
        if (n + 2) * n * largest_steps * _UNIT_ROUNDOFF < 0.25:
            resample_steps = np.rint(sums * 10.0**decimals) if decimals else sums
            below = int(np.count_nonzero(resample_steps < target))
            ties = int(np.count_nonzero(resample_steps == target))
            name = f"1e-{decimals} grid" if decimals else "integer grid"
            return below, ties, f"compared exactly on the {name}"
    largest = max(float(x.max()), -float(x.min()))
    observed = math.fsum(x)
    tolerance = (n + 2) * n * largest * 2.0 * _UNIT_ROUNDOFF
    below = int(np.count_nonzero(sums < observed - tolerance))
    ties = int(np.count_nonzero(np.abs(sums - observed) <= tolerance))
    return below, ties, f"within {tolerance:.3g} of the exact sum"


def _decimal_grid(x: npt.NDArray[np.float64]) -> tuple[int, float, float] | None:
    """The fewest decimals (at most six) that write every score exactly, or ``None``.

    Returns ``(decimals, Σ steps, max |steps|)`` where ``steps = x · 10**decimals`` are the
    integers the scores stand for. A score "is" the decimal ``q / 10**k`` when it is the
    double nearest to it, i.e. when ``rint(x · 10**k) / 10**k`` gives ``x`` back. Works in
    chunks of :data:`BATCH_VALUES` so the check costs no more memory than a resample batch.
    """
    for decimals in range(_MAX_DECIMALS + 1):
        scale = 10.0**decimals
        total = 0.0
        largest = 0.0
        for start in range(0, x.size, BATCH_VALUES):
            chunk = x[start : start + BATCH_VALUES]
            with np.errstate(over="ignore"):  # huge scores overflow to inf and fail the check
                steps = np.rint(chunk * scale)
            if not np.array_equal(steps / scale, chunk):
                break
            # Integer partial sums are exact while below 2**53, which the caller's bound checks.
            total += math.fsum(steps)
            largest = max(largest, float(steps.max()), -float(steps.min()))
        else:
            return decimals, total, largest
    return None


_STANDARD_NORMAL: Final = NormalDist()


def _ndtri(p: float) -> float:
    """Φ⁻¹(p), -inf at 0 and +inf at 1 (as scipy's ndtri): the standard library's
    ``NormalDist`` (Wichura's AS241, to double precision), so a bound needs no scipy."""
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return _STANDARD_NORMAL.inv_cdf(p)


def _quantile_linear(sorted_values: npt.NDArray[np.float64], p: float) -> float:
    """Hyndman-Fan type 7 quantile, written as scipy.stats.quantile evaluates it.

    numpy's ``quantile`` interpolates with a different (equally valid) formula; using scipy's
    keeps the cross-check at the last bits rather than at 1e-16 relative.
    """
    count = int(sorted_values.size)
    jg = p * count + (1.0 - p)
    jp1 = jg // 1.0
    g = jg % 1.0
    j = min(max(jp1 - 1.0, 0.0), count - 1.0)
    jp1 = min(max(jp1, 0.0), count - 1.0)
    low = float(sorted_values[int(j)])
    high = float(sorted_values[int(jp1)])
    return (1.0 - g) * low + g * high
