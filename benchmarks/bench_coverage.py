"""Coverage of ``lower_bound_95`` over a panel of score distributions. Prints, asserts nothing.

For each cell (a distribution of case scores and a bench size n) the panel prints, per
method, the coverage (the share of benches whose bound lies at or below the true mean;
nominal 95%) and the mean width (the mean distance from the true mean down to the bound).
Pass/fail cells are exact: a 0/1 bench is decided by its number of passes, so coverage is
summed over the binomial. The other cells are simulated with ``--draws`` benches each,
using the gate's own functions. Methods: ``bca`` (the bootstrap bound alone, ADR 0002; a
diagnostic now), ``valid`` and ``gate`` (the one bound the gate reads, ADR 0020: Clopper-
Pearson for the pass/fail cells, as for a task class declaring ``scores="pass_fail"``, the
betting bound for the graded ones).

    .venv/bin/python benchmarks/bench_coverage.py [--draws 2000] [--n 3,10,25,100]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import scipy.stats

from pytest_codegenie_eval.evidence.stats import LowerBound, lower_bound_95

Draw = Callable[[np.random.Generator, int], np.ndarray]

LEVELS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])


def _binary(p: float) -> tuple[Draw, float]:
    draw: Draw = lambda rng, n: (rng.random(n) < p).astype(float)  # noqa: E731
    BINARY[id(draw)] = p
    return draw, p


# pass/fail cells are computed exactly, not simulated: a 0/1 bench of n cases is decided by
# its number of passes k, so coverage is the sum of Binomial(n, p) probabilities of the k
# whose bound lies at or below p (each k with its own fixed seed, as a run has its own)
BINARY: dict[int, float] = {}


def _exact(n: int, p: float) -> dict[str, tuple[float, float]]:
    pmf = scipy.stats.binom.pmf(np.arange(n + 1), n, p)
    out = {}
    bounds = [
        lower_bound_95([1.0] * k + [0.0] * (n - k), seed=1000 + k, kind="pass_fail")
        for k in range(n + 1)
    ]
    for method in ("bca", "valid", "gate"):
        values = np.array([_pick(b, method) for b in bounds])
        out[method] = (float(pmf @ (values <= p)), float(pmf @ (p - values)))
    return out


def _pick(bound: LowerBound, method: str) -> float:
    if method == "gate":
        return bound.value
    chosen = bound.bca if method == "bca" else bound.valid
    return chosen if chosen is not None else bound.value


def _levels(weights: list[float]) -> tuple[Draw, float]:
    w = np.array(weights) / sum(weights)
    return (lambda rng, n: rng.choice(LEVELS, n, p=w)), float(LEVELS @ w)


def _spike(share: float) -> tuple[Draw, float]:
    # a share of perfect cases, the rest Beta(2, 2): the usual shape of a good agent
    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        return np.where(rng.random(n) < share, 1.0, rng.beta(2.0, 2.0, n))

    return draw, share + (1 - share) * 0.5


PANEL: dict[str, tuple[Draw, float]] = {
    "pass/fail p=0.5": _binary(0.5),
    "pass/fail p=0.7": _binary(0.7),
    "pass/fail p=0.9": _binary(0.9),
    "pass/fail p=0.97": _binary(0.97),
    "5 rubric levels, uniform": _levels([1, 1, 1, 1, 1]),
    "5 rubric levels, skewed high": _levels([1, 1, 2, 3, 3]),
    "continuous Beta(8,2)": ((lambda rng, n: rng.beta(8.0, 2.0, n)), 0.8),
    "continuous Beta(2,5)": ((lambda rng, n: rng.beta(2.0, 5.0, n)), 2 / 7),
    "spike at 1.0 (70%) + Beta(2,2)": _spike(0.7),
    "spike at 1.0 (90%) + Beta(2,2)": _spike(0.9),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--n", default="3,10,25,100")
    args = parser.parse_args()
    sizes = [int(v) for v in args.n.split(",")]
    print(
        f"coverage (nominal 0.95) / mean width, per method; {args.draws} draws per cell, "
        "* = pass/fail cells computed exactly over the binomial"
    )
    print(f"{'distribution':34} {'n':>4}   {'bca':>13}   {'valid':>13}   {'gate':>13}")
    worst_gate = 1.0
    widest_gap = 0.0
    started = time.perf_counter()
    for name, (draw, mean) in PANEL.items():
        for n in sizes:
            if id(draw) in BINARY:
                exact = _exact(n, mean)
                cells = [f"{exact[m][0]:.3f} / {exact[m][1]:.3f}" for m in ("bca", "valid", "gate")]
                if n >= 10:
                    worst_gate = min(worst_gate, exact["gate"][0])
                if n == 100:
                    widest_gap = max(widest_gap, exact["gate"][1] - exact["bca"][1])
                print(f"{name:34} {n:>4} * " + "   ".join(f"{c:>13}" for c in cells), flush=True)
                continue
            rng = np.random.default_rng(20261202 + n)
            got: dict[str, list[float]] = {"bca": [], "valid": [], "gate": []}
            for i in range(args.draws):
                bound = lower_bound_95(draw(rng, n).tolist(), seed=i)
                for method in ("bca", "valid", "gate"):
                    got[method].append(_pick(bound, method))
            cells = []
            for method in ("bca", "valid", "gate"):
                values = np.array(got[method])
                coverage = float(np.mean(values <= mean))
                width = float(np.mean(mean - values))
                cells.append(f"{coverage:.3f} / {width:.3f}")
                if method == "gate" and n >= 10:
                    worst_gate = min(worst_gate, coverage)
            if n == 100:
                gap = float(np.mean(got["bca"]) - np.mean(got["gate"]))
                widest_gap = max(widest_gap, gap)
            print(f"{name:34} {n:>4}   " + "   ".join(f"{c:>13}" for c in cells), flush=True)
    print(f"lowest gate coverage at n >= 10: {worst_gate:.3f} (goal >= 0.95)")
    print(f"largest mean(bca) - mean(gate) at n = 100: {widest_gap:.3f} (goal <= 0.02)")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
