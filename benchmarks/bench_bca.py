"""Benchmark the batched BCa lower bound against scipy.stats.bootstrap(method="BCa").

Run with ``.venv/bin/python benchmarks/bench_bca.py``. For n = 10, 1,000 and 100,000
uniform scores it prints, side by side, the wall time (best of several runs, without
tracing) and the peak traced allocation (one run under :mod:`tracemalloc`) of
:func:`pytest_codegenie_eval.evidence.stats.lower_bound_95` and of scipy's BCa interval with the
same generator, the scipy/ours ratios and the difference between the two bounds.

scipy's BCa jackknife materialises an ``n x (n - 1)`` index array (a 9.3 GiB bool array at
n = 100,000), so scipy is skipped at 100,000 unless ``--scipy-100k`` is given; even then
its address space is capped (``--scipy-memory-gib``) so the attempt ends in a MemoryError
instead of waking the OOM killer. Nothing is asserted: this is a report.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import numpy.typing as npt
import scipy
from scipy import stats as scipy_stats

from pytest_codegenie_eval.evidence.stats import DEFAULT_RESAMPLES, lower_bound_95

SIZES = (10, 1_000, 100_000)
SEED = 0x3F9A0C2E
_GIB = 2**30


@dataclass(frozen=True)
class Measurement:
    """Best wall time in seconds, peak traced bytes and the bound, or why it failed."""

    seconds: float | None
    peak_bytes: int | None
    bound: float | None
    error: str = ""


def ours(scores: list[float]) -> float:
    """Our one-sided 95% lower bound (the low end of the two-sided 90% BCa interval)."""
    return lower_bound_95(scores, seed=SEED, resamples=DEFAULT_RESAMPLES).value


def theirs(x: npt.NDArray[np.float64]) -> float:
    """scipy's two-sided 90% BCa interval, low end, with the same PCG64 stream."""
    result = scipy_stats.bootstrap(
        (x,),
        np.mean,
        method="BCa",
        confidence_level=0.90,
        n_resamples=DEFAULT_RESAMPLES,
        random_state=np.random.Generator(np.random.PCG64(SEED)),
        vectorized=True,
    )
    return float(result.confidence_interval.low)


def measure(fn: Callable[[], float], repeats: int) -> Measurement:
    """Time *fn* untraced (tracemalloc slows allocation-heavy code), then trace one run."""
    best = float("inf")
    bound = float("nan")
    start = time.perf_counter()
    try:
        for _ in range(repeats):
            gc.collect()
            start = time.perf_counter()
            bound = fn()
            best = min(best, time.perf_counter() - start)
        gc.collect()
        tracemalloc.start()
        try:
            fn()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    except MemoryError as exc:
        elapsed = time.perf_counter() - start
        return Measurement(None, None, None, f"MemoryError after {elapsed:.1f} s: {exc}")
    return Measurement(best, peak, bound)


@contextlib.contextmanager
def address_space_cap(extra_bytes: int) -> Iterator[None]:
    """Cap the soft address-space limit at current size + *extra_bytes* (Linux only).

    A capped process gets a clean MemoryError from numpy; an uncapped one may instead be
    killed by the kernel's OOM killer halfway through scipy's jackknife.
    """
    try:
        import resource

        with open("/proc/self/status", encoding="ascii") as status:
            vm_kib = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    except (ImportError, OSError, StopIteration):
        print("(cannot cap address space on this platform; scipy runs uncapped)")
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = vm_kib * 1024 + extra_bytes
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def fmt_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:10.2f} ms"


def fmt_bytes(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:9.2f} MiB"


def fmt_ratio(theirs_value: float | None, ours_value: float | None) -> str:
    if theirs_value is None or not ours_value:
        return "-"
    return f"{theirs_value / ours_value:8.1f}x"


def main(argv: list[str] | None = None) -> int:
    """Print the comparison table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--scipy-100k",
        action="store_true",
        help="also run scipy at n = 100,000 (expect a MemoryError: its jackknife is O(n²))",
    )
    parser.add_argument(
        "--scipy-memory-gib",
        type=float,
        default=8.0,
        help="address space granted to scipy's n = 100,000 attempt (default 8 GiB)",
    )
    args = parser.parse_args(argv)

    print(
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}; "
        f"{DEFAULT_RESAMPLES} resamples, seed {SEED:#x}, uniform scores in [0, 1]"
    )
    header = (
        f"{'n':>7} | {'ours time':>13} {'ours peak':>13} | {'scipy time':>13} "
        f"{'scipy peak':>13} | {'time ratio':>10} {'mem ratio':>10} | {'|Δ bound|':>9}"
    )
    print(header)
    print("-" * len(header))
    for n in SIZES:
        x = np.random.Generator(np.random.PCG64(n)).random(n)
        repeats = 20 if n <= 10 else 5 if n <= 1_000 else 3
        mine = measure(partial(ours, x.tolist()), repeats)
        if n >= 100_000 and not args.scipy_100k:
            ref = Measurement(None, None, None, "skipped (pass --scipy-100k to try)")
        elif n >= 100_000:
            with address_space_cap(int(args.scipy_memory_gib * _GIB)):
                ref = measure(partial(theirs, x), 1)
        else:
            ref = measure(partial(theirs, x), repeats)
        delta = (
            f"{abs(mine.bound - ref.bound):9.1e}"
            if mine.bound is not None and ref.bound is not None
            else "-"
        )
        print(
            f"{n:>7} | {fmt_seconds(mine.seconds):>13} {fmt_bytes(mine.peak_bytes):>13} | "
            f"{fmt_seconds(ref.seconds):>13} {fmt_bytes(ref.peak_bytes):>13} | "
            f"{fmt_ratio(ref.seconds, mine.seconds):>10} "
            f"{fmt_ratio(ref.peak_bytes, mine.peak_bytes):>10} | {delta}"
        )
        if ref.error:
            print(f"{'':>7}   scipy: {ref.error}")
    print("ratios are scipy / ours: above 1 means ours is faster or smaller")
    print(
        "|Δ bound| is rounding-level unless resamples tie the observed mean: at small n a\n"
        "resample can be a permutation of the sample, which scipy compares with raw float\n"
        "equality and this module compares exactly (docs/adr/0002-lower-bound-as-gate-metric.md)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
