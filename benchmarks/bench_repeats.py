"""The aggregate and its bound under repeats: n cases x K attempts. Prints, asserts nothing.

Builds ``n * K`` case results (scores 0/1, each attempt passing with probability 0.8) and
times :func:`build_report`, which averages each case's attempts and bounds the n per-case
means (BCa and the betting bound). Memory is the peak traced by ``tracemalloc`` during the
aggregation, the results themselves excluded. For comparison, the bound alone at
n = 100,000 takes about 0.4 s (``benchmarks/bench_bca.py``).

    .venv/bin/python benchmarks/bench_repeats.py [--cases 10000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from pytest_codegenie_eval.evidence.aggregate import build_report
from pytest_codegenie_eval.models import CaseResult


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(5)
    for repeats in sorted({1, args.repeats}):
        passed = rng.random((args.cases, repeats)) < 0.8
        results = [
            CaseResult(
                task_class="t",
                case_id=f"case-{i:06d}",
                score=float(passed[i, r]),
                passed=bool(passed[i, r]),
                repeat=r + 1,
            )
            for i in range(args.cases)
            for r in range(repeats)
        ]
        tracemalloc.start()
        started = time.perf_counter()
        report = build_report("t", results, harness_version="bench", repeats=repeats)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(
            f"n = {args.cases:,} cases x K = {repeats}: {elapsed:.2f} s, peak "
            f"{peak / 2**20:.1f} MiB; lower_bound_95 {report.lower_bound_95:.4f} "
            f"({report.bound.method}), pass^{repeats} {report.pass_hat_k}"
        )


if __name__ == "__main__":
    main()
