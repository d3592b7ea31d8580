"""Coverage, mean bound, monotonicity and seed stability of ``lower_bound_95``, before and
after ADR 0022. Prints, asserts nothing.

Two panels of cells (a distribution of case scores and a bench size n): the coverage panel
(10 distributions x ``--n``) and the audit panel (8 distributions x n = 5, 10, 15, 20, 30,
50). Per cell it prints the coverage (the share of benches whose bound lies at or below the
true mean; nominal 95%) of ``bca`` (the bootstrap bound, a diagnostic since ADR 0020), of the
gate (``lower_bound_95``: Clopper-Pearson for the pass/fail cells, as for a task class
declaring ``scores="pass_fail"``; the monotone mixture betting bound of ADR 0022 for the
graded ones) and of the gate before ADR 0020 (``before``: Clopper-Pearson when every score is
0 or 1, else the smaller of the plug-in betting bound and BCa, seeded from the results); then
the gate's mean bound, the mean bound before, ``after - before``, and the gate's mean bound
minus that of the gate ADR 0022 replaced (ADR 0020: Clopper-Pearson for pass/fail cells, the
plug-in betting bound alone for graded ones). Pass/fail cells (``*``) are exact: a 0/1 bench
is decided by its number of passes, so they are summed over the binomial. The graded cells
are simulated with ``--draws`` benches each, using the gate's own functions. Summaries: the
lowest gate coverage at n >= 5 and at n >= 10 (goal >= 0.95), the most negative
``after - before`` (goal >= -0.005) and the most negative difference from ADR 0020.

Then three reports on random graded benches (each score drawn from a random mixture of the
panels' graded distributions):

* monotonicity: ``--raises`` single-score raises (n from 2 to 100; one score below 1 raised
  to a uniform value between it and 1; the seed fixed per pair): how often the gate's bound
  went down, and the plug-in betting bound's for contrast. Also every flip of one 0 to 1 on
  pass/fail benches of n = 1 to 100: Clopper-Pearson never going down.
* seed stability: 1000 benches (n 10 to 50), one score raised: the share where the gate went
  down with the seed from the bench (fixed), and where the gate before ADR 0020 went down
  with its seed redrawn from the results (and with it held fixed, to separate the causes).
* fishing: 200 benches (n 10 to 50), each tried under 20 harmless edits (20 seeds) keeping
  the best bound: the mean gain before (seed from the results) and now (seed from the bench,
  which a harmless edit does not change).

Cells and reports run on ``--jobs`` processes; every bench draws from its own seeded stream,
so the output does not depend on the number of processes. ``--quick`` is ``--draws 300
--raises 1000``. The default run takes a few minutes on 2 cores.

    .venv/bin/python benchmarks/bench_coverage.py [--quick] [--draws 2000] [--n 3,10,25,100]
                                                  [--raises 4000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import scipy.stats

from pytest_codegenie_eval.evidence.stats import (
    LowerBound,
    bca_lower_bound,
    betting_lower_bound,
    clopper_pearson_lower_bound,
    largest_refuted_mean,
    lower_bound_95,
)

Scores = npt.NDArray[np.float64]
Draw = Callable[[np.random.Generator, int], Scores]

LEVELS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
AUDIT_SIZES = (5, 10, 15, 20, 30, 50)
STABILITY_BENCHES = 1000
FISHING_BENCHES = 200
FISHING_EDITS = 20
CHUNK = 50  # random benches per task handed to a worker process
# each report draws its benches from its own stream, one child stream per bench
RAISES_STREAM, STABILITY_STREAM, FISHING_STREAM = 0x7261, 0x7374, 0x6669


@dataclass(frozen=True)
class Distribution:
    """Case scores to draw; ``pass_rate`` is set for pass/fail cells (computed exactly)."""

    draw: Draw
    mean: float
    pass_rate: float | None = None


def _binary(p: float) -> Distribution:
    return Distribution(lambda rng, n: (rng.random(n) < p).astype(float), p, pass_rate=p)


def _levels(weights: list[float], levels: Scores = LEVELS) -> Distribution:
    w = np.array(weights) / sum(weights)
    return Distribution(lambda rng, n: rng.choice(levels, n, p=w), float(levels @ w))


def _beta(a: float, b: float) -> Distribution:
    return Distribution(lambda rng, n: rng.beta(a, b, n), a / (a + b))


def _spike(share: float) -> Distribution:
    # a share of perfect cases, the rest Beta(2, 2): the usual shape of a good agent
    def draw(rng: np.random.Generator, n: int) -> Scores:
        return np.where(rng.random(n) < share, 1.0, rng.beta(2.0, 2.0, n))

    return Distribution(draw, share + (1 - share) * 0.5)


def _perfect_or_uniform(share: float) -> Distribution:
    def draw(rng: np.random.Generator, n: int) -> Scores:
        return np.where(rng.random(n) < share, 1.0, rng.random(n))

    return Distribution(draw, share + (1 - share) * 0.5)


def _clipped_normal(mu: float, sigma: float) -> Distribution:
    # clip(X, 0, 1) = X+ - (X - 1)+, and E[(X - c)+] = (mu - c) Φ(d) + σ φ(d), d = (mu - c) / σ
    def excess(c: float) -> float:
        d = (mu - c) / sigma
        return float((mu - c) * scipy.stats.norm.cdf(d) + sigma * scipy.stats.norm.pdf(d))

    draw: Draw = lambda rng, n: np.clip(rng.normal(mu, sigma, n), 0.0, 1.0)  # noqa: E731
    return Distribution(draw, excess(0.0) - excess(1.0))


PANEL: dict[str, Distribution] = {
    "pass/fail p=0.5": _binary(0.5),
    "pass/fail p=0.7": _binary(0.7),
    "pass/fail p=0.9": _binary(0.9),
    "pass/fail p=0.97": _binary(0.97),
    "5 rubric levels, uniform": _levels([1, 1, 1, 1, 1]),
    "5 rubric levels, skewed high": _levels([1, 1, 2, 3, 3]),
    "continuous Beta(8,2)": _beta(8.0, 2.0),
    "continuous Beta(2,5)": _beta(2.0, 5.0),
    "spike at 1.0 (70%) + Beta(2,2)": _spike(0.7),
    "spike at 1.0 (90%) + Beta(2,2)": _spike(0.9),
}

AUDIT: dict[str, Distribution] = {
    "pass/fail p=0.8": _binary(0.8),
    "pass/fail p=0.95": _binary(0.95),
    "pass/fail p=0.99": _binary(0.99),
    "continuous Beta(9,1)": _beta(9.0, 1.0),
    "continuous Beta(0.5,0.5)": _beta(0.5, 0.5),
    "3 levels 0/0.5/1 at 10/20/70%": _levels([0.1, 0.2, 0.7], np.array([0.0, 0.5, 1.0])),
    "perfect (70%) + Uniform(0,1)": _perfect_or_uniform(0.7),
    "Normal(0.9,0.02) clipped": _clipped_normal(0.9, 0.02),
}

PANELS = {"coverage": PANEL, "audit": AUDIT}
GRADED = [d for panel in PANELS.values() for d in panel.values() if d.pass_rate is None]


def _plugin_betting(x: Scores, seed: int) -> float:
    """The construction the gate used before ADR 0022, kept here only for the before/after
    column: the betting bound with predictable plug-in bets (from the running variance of the
    earlier scores), which is not monotone in the scores."""
    n = int(x.size)
    if n == 0:
        return 0.0
    stream = np.random.SeedSequence([seed, 0x62657474])
    xs = x[np.random.Generator(np.random.PCG64(stream)).permutation(n)]
    index = np.arange(1, n + 1, dtype=np.float64)
    running_mean = (0.5 + np.cumsum(xs)) / (index + 1.0)
    squares = (xs - running_mean) ** 2
    previous = np.concatenate(([0.0], np.cumsum(squares)[:-1]))
    variance = (0.25 + previous) / index
    threshold = math.log(1.0 / (1.0 - 0.95))  # as the gate wrote it, for the same bits
    plug_in = np.sqrt(2.0 * threshold / (n * variance))

    def refuted(m: float) -> bool:
        bets = np.minimum(plug_in, 0.75 / m) if m > 0.0 else plug_in
        log_capital = np.cumsum(np.log1p(bets * (xs - m)))
        return bool(log_capital.max() >= threshold)

    return largest_refuted_mean(refuted)


def _before(x: Scores, plugin: float, bca: float | None) -> float:
    """The gate before ADR 0020 from its parts: Clopper-Pearson when every score is 0 or 1,
    else the smaller of the plug-in betting bound and BCa (the betting bound where BCa is
    undefined)."""
    ones = x == 1.0
    if bool(np.all(ones | (x == 0.0))):
        return clopper_pearson_lower_bound(int(ones.sum()), int(x.size))
    return plugin if bca is None else min(plugin, bca)


def _old_gate(x: Scores, seed: int) -> float:
    """The gate before ADR 0020, with ``seed`` standing for the seed drawn from the results."""
    bca = bca_lower_bound(x, seed=seed)
    return _before(x, _plugin_betting(x, seed), None if bca is None else bca.value)


def _gate(x: Scores, seed: int) -> float:
    """The gate's bound of a graded task class (``lower_bound_95(...).value``, without the
    BCa diagnostic it computes beside it)."""
    return betting_lower_bound(x, seed=seed)


class Cell(NamedTuple):
    """A cell's coverages and mean bounds (``adr0020`` is the gate ADR 0022 replaced)."""

    bca_coverage: float
    gate_coverage: float
    before_coverage: float
    gate_mean: float
    before_mean: float
    adr0020_mean: float
    bca_mean: float


def _exact(n: int, p: float) -> Cell:
    # a 0/1 bench of n cases is decided by its number of passes k, so coverage is the sum of
    # Binomial(n, p) probabilities of the k whose bound lies at or below p (each k with its own
    # fixed seed, as a run has its own); the gate before, and the one ADR 0022 replaced, are
    # Clopper-Pearson on such a bench too
    pmf = scipy.stats.binom.pmf(np.arange(n + 1), n, p)
    bounds = [
        lower_bound_95([1.0] * k + [0.0] * (n - k), seed=1000 + k, kind="pass_fail")
        for k in range(n + 1)
    ]
    gate = np.array([b.value for b in bounds])
    bca = np.array([_bca_or_gate(b) for b in bounds])
    covered = float(pmf @ (gate <= p))
    mean = float(pmf @ gate)
    return Cell(float(pmf @ (bca <= p)), covered, covered, mean, mean, mean, float(pmf @ bca))


def _bca_or_gate(bound: LowerBound) -> float:
    # where BCa is undefined (all scores equal) the diagnostic column reads the gate's bound
    return bound.bca if bound.bca is not None else bound.value


def _simulate(dist: Distribution, n: int, draws: int) -> Cell:
    rng = np.random.default_rng(20261202 + n)
    got = np.empty((4, draws))  # bca, gate, before, ADR 0020 gate
    for i in range(draws):
        x = dist.draw(rng, n)
        # each simulated bench is a bench of its own: seed i stands for its bench seed and for
        # the seed the gate before ADR 0020 drew from its results
        bound = lower_bound_95(x.tolist(), seed=i)
        plugin = _plugin_betting(x, i)
        got[:, i] = (_bca_or_gate(bound), bound.value, _before(x, plugin, bound.bca), plugin)
    covered = got <= dist.mean
    return Cell(
        float(covered[0].mean()),
        float(covered[1].mean()),
        float(covered[2].mean()),
        float(got[1].mean()),
        float(got[2].mean()),
        float(got[3].mean()),
        float(got[0].mean()),
    )


def _cell(task: tuple[str, str, int, int]) -> Cell:
    panel, name, n, draws = task
    dist = PANELS[panel][name]
    if dist.pass_rate is not None:
        return _exact(n, dist.pass_rate)
    return _simulate(dist, n, draws)


def _random_bench(rng: np.random.Generator, low: int, high: int) -> Scores:
    """A graded bench of ``low`` to ``high`` cases, each drawn from a random mixture of one
    to three of the panels' graded distributions, with at least one score below 1."""
    while True:
        n = int(rng.integers(low, high + 1))
        parts = rng.choice(len(GRADED), int(rng.integers(1, 4)), replace=False)
        which = rng.choice(parts.size, n, p=rng.dirichlet(np.ones(parts.size)))
        x = np.empty(n)
        for j, part in enumerate(parts):
            x[which == j] = GRADED[int(part)].draw(rng, int(np.count_nonzero(which == j)))
        if x.min() < 1.0:
            return x


def _raise_one(rng: np.random.Generator, x: Scores) -> Scores:
    """``x`` with one score below 1 raised to a uniform value between it and 1."""
    raised = x.copy()
    i = int(rng.choice(np.flatnonzero(x < 1.0)))
    raised[i] = rng.uniform(x[i], 1.0)
    return raised


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**32))


def _raises(indices: range) -> list[tuple[float, float]]:
    """Per pair: (gate after - before, plug-in after - before), the seed fixed per pair."""
    out = []
    for index in indices:
        rng = np.random.default_rng([RAISES_STREAM, index])
        x = _random_bench(rng, 2, 100)
        raised = _raise_one(rng, x)
        seed = _seed(rng)
        out.append(
            (
                _gate(raised, seed) - _gate(x, seed),
                _plugin_betting(raised, seed) - _plugin_betting(x, seed),
            )
        )
    return out


def _stability(indices: range) -> list[tuple[float, float, float]]:
    """Per bench, after - before one score is raised: the gate (bench seed, fixed), the gate
    before ADR 0020 with its seed redrawn, and the same with its seed held fixed."""
    out = []
    for index in indices:
        rng = np.random.default_rng([STABILITY_STREAM, index])
        x = _random_bench(rng, 10, 50)
        raised = _raise_one(rng, x)
        bench, first, second = _seed(rng), _seed(rng), _seed(rng)
        old = _old_gate(x, first)
        out.append(
            (
                _gate(raised, bench) - _gate(x, bench),
                _old_gate(raised, second) - old,
                _old_gate(raised, first) - old,
            )
        )
    return out


def _fishing(indices: range) -> list[tuple[float, float, float]]:
    """Per bench, the best bound over the bench as it is and ``FISHING_EDITS`` harmless edits,
    minus the bound as it is: before ADR 0020 (each edit redraws the seed), the gate (the
    bench seed does not change), and the gate were its seed drawn from the results."""
    out = []
    for index in indices:
        rng = np.random.default_rng([FISHING_STREAM, index])
        x = _random_bench(rng, 10, 50)
        bench = _seed(rng)
        seeds = [_seed(rng) for _ in range(FISHING_EDITS + 1)]  # seeds[0]: the bench as it is
        old = [_old_gate(x, s) for s in seeds]
        new = [_gate(x, bench) for _ in seeds]
        redrawn = [_gate(x, s) for s in seeds]
        out.append((max(old) - old[0], max(new) - new[0], max(redrawn) - redrawn[0]))
    return out


def _chunks(total: int) -> list[range]:
    return [range(start, min(start + CHUNK, total)) for start in range(0, total, CHUNK)]


def _monotone_pass_fail(largest: int = 100) -> tuple[int, int]:
    """Flips of one 0 to 1 on every pass/fail bench of n = 1 to ``largest``: (flips, drops)."""
    flips = drops = 0
    for n in range(1, largest + 1):
        bounds = [clopper_pearson_lower_bound(k, n) for k in range(n + 1)]
        flips += n
        drops += sum(1 for k in range(n) if bounds[k + 1] < bounds[k])
    return flips, drops


def _went_down(changes: Iterable[float]) -> tuple[int, float]:
    """How many changes are decreases, and the largest decrease (0.0 when none)."""
    values = np.array(list(changes))
    down = values[values < 0.0]
    return int(down.size), float(-down.min()) if down.size else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="--draws 300 --raises 1000")
    parser.add_argument("--draws", type=int, help="benches per graded cell (default 2000)")
    parser.add_argument("--n", default="3,10,25,100", help="bench sizes of the coverage panel")
    parser.add_argument("--raises", type=int, help="single-score raises (default 4000)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    args = parser.parse_args()
    draws: int = args.draws or (300 if args.quick else 2000)
    raises: int = args.raises or (1000 if args.quick else 4000)
    sizes = {"coverage": [int(v) for v in args.n.split(",")], "audit": list(AUDIT_SIZES)}
    tasks = [
        (panel, name, n, draws)
        for panel, dists in PANELS.items()
        for name in dists
        for n in sizes[panel]
    ]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        _print_cells(tasks, pool.imap(_cell, tasks), draws)
        raised = [r for part in pool.map(_raises, _chunks(raises)) for r in part]
        stable = [r for part in pool.map(_stability, _chunks(STABILITY_BENCHES)) for r in part]
        fished = [r for part in pool.map(_fishing, _chunks(FISHING_BENCHES)) for r in part]
    _print_reports(raised, stable, fished)
    print(f"({time.perf_counter() - started:.0f} s on {args.jobs} processes)")


def _print_cells(tasks: list[tuple[str, str, int, int]], cells: Iterable[Cell], draws: int) -> None:
    print(
        f"coverage (nominal 0.95) and mean bound; {draws} draws per graded cell, * = pass/fail "
        "cells computed exactly over the binomial; before = the gate before ADR 0020 (CP if "
        "all scores are 0/1, else min(plug-in betting, BCa)); vs 0020 = gate - the ADR 0020 "
        "gate (CP / plug-in betting alone)"
    )
    header = ("bca cov", "gate cov", "bef. cov", "gate mean", "bef. mean", "aft-bef", "vs 0020")
    print(f"{'distribution':32} {'n':>4}   " + " ".join(f"{h:>10}" for h in header))
    worst: dict[int, tuple[float, str]] = {5: (1.0, ""), 10: (1.0, "")}
    lowest_diff = (math.inf, "")
    lowest_0020 = (math.inf, "")
    widest_gap = 0.0
    panel_now = ""
    for (panel, name, n, _), cell in zip(tasks, cells, strict=True):
        if panel != panel_now:
            print(f"-- {panel} panel")
            panel_now = panel
        exact = PANELS[panel][name].pass_rate is not None
        label = f"{name} n={n}"
        diff = cell.gate_mean - cell.before_mean
        vs_0020 = cell.gate_mean - cell.adr0020_mean
        for least, (coverage, _) in worst.items():
            if n >= least and cell.gate_coverage < coverage:
                worst[least] = (cell.gate_coverage, label)
        lowest_diff = min(lowest_diff, (diff, label))
        lowest_0020 = min(lowest_0020, (vs_0020, label))
        if panel == "coverage" and n == 100:
            widest_gap = max(widest_gap, cell.bca_mean - cell.gate_mean)
        values = (
            *(f"{v:.3f}" for v in cell[:3]),
            f"{cell.gate_mean:.4f}",
            f"{cell.before_mean:.4f}",
            f"{diff:+.4f}",
            f"{vs_0020:+.4f}",
        )
        mark = "*" if exact else " "
        print(f"{name:32} {n:>4} {mark} " + " ".join(f"{v:>10}" for v in values), flush=True)
    for least, (coverage, label) in worst.items():
        print(f"lowest gate coverage at n >= {least}: {coverage:.3f} ({label}; goal >= 0.95)")
    print(f"most negative after - before: {lowest_diff[0]:+.4f} ({lowest_diff[1]}; goal >= -0.005)")
    print(f"most negative gate - ADR 0020 gate: {lowest_0020[0]:+.4f} ({lowest_0020[1]})")
    print(f"largest mean(bca) - mean(gate) at n = 100: {widest_gap:.3f} (goal <= 0.02)")


def _print_reports(
    raised: list[tuple[float, float]],
    stable: list[tuple[float, float, float]],
    fished: list[tuple[float, float, float]],
) -> None:
    print(f"monotonicity: {len(raised)} single-score raises on graded benches (n 2..100)")
    for column, label in enumerate(("gate (ADR 0022)", "plug-in betting (ADR 0020)")):
        down, largest = _went_down(r[column] for r in raised)
        print(f"  {label}: went down {down} times, largest decrease {largest:.4f}")
    flips, drops = _monotone_pass_fail()
    print(
        f"  pass/fail, every flip of one 0 to 1 at n 1..100 ({flips}): CP went down {drops} times"
    )
    print(f"seed stability: {len(stable)} graded benches (n 10..50), one score raised")
    labels = (
        "gate, seed from the bench (fixed)",
        "before ADR 0020, seed redrawn from the results",
        "before ADR 0020, seed held fixed",
    )
    for column, label in enumerate(labels):
        down, largest = _went_down(r[column] for r in stable)
        share = down / len(stable)
        print(f"  {label}: went down in {share:.3f}, largest drop {largest:.4f}")
    print(
        f"fishing: {len(fished)} graded benches (n 10..50), best of {FISHING_EDITS} harmless "
        "edits kept"
    )
    labels = (
        "before ADR 0020 (seed from the results)",
        "gate (seed from the bench, unchanged by an edit)",
        "gate were its seed drawn from the results",
    )
    for column, label in enumerate(labels):
        gains = np.array([r[column] for r in fished])
        print(f"  {label}: mean gain {gains.mean():.4f}, largest {gains.max():.4f}")


if __name__ == "__main__":
    main()
