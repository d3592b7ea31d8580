"""Building the static HTML results page for a large state directory ("takes seconds, not
minutes"). Prints figures, asserts nothing.

A temporary state directory is filled through the real code paths: ``--runs`` run reports
(default 1,000) of one task class, ``--cases`` cases each (default 100), with deterministic
synthetic scores, each built by :func:`build_report` and appended to the audit chain by
:func:`write_run_record` (which fsyncs, so generation is timed and printed on its own). The
newest run's cases each carry a small diff kept by :func:`store_diff`, and the project's
``docs/trust-tiers.yaml`` is passed as the tier file. :func:`build_site` is then timed
``--repeat`` times (default 3) into a fresh output directory; min and median wall time, the
cost per run and the size of the generated site are printed. ``--profile`` also runs one
build under cProfile and prints the top 15 functions by cumulative time.

    .venv/bin/python benchmarks/bench_html_report.py [--runs 1000] [--cases 100]
        [--repeat 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pytest_codegenie_eval.evidence.aggregate import build_report
from pytest_codegenie_eval.models import CaseResult, FailureMode
from pytest_codegenie_eval.output.html import SiteSummary, build_site
from pytest_codegenie_eval.store.audit import write_run_record
from pytest_codegenie_eval.store.statedir import StateDir, store_diff

TASK_CLASS = "bench-perf"
TIERS = Path(__file__).resolve().parents[1] / "docs" / "trust-tiers.yaml"
SEED = 20260101
_WRONG = FailureMode(code="x.wrong", severity="warn")
_DIFF = """--- a/package.json
+++ b/package.json
@@ -1,5 +1,5 @@
 {{
   "name": "bench-app",
-  "version": "1.{old}.0",
+  "version": "1.{new}.0",
   "private": true
 }}
"""


def _hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def _results(
    rng: random.Random, cases: int, sut_digest: str, rubric_digest: str, diffs: list[str]
) -> list[CaseResult]:
    results = []
    for i in range(cases):
        # about a third of the cases pass; the rest score anywhere below 1
        score = 1.0 if rng.random() < 0.35 else round(rng.random(), 3)
        passed = score >= 1.0
        results.append(
            CaseResult(
                task_class=TASK_CLASS,
                case_id=f"case-{i:03d}",
                score=score,
                passed=passed,
                breakdown={"A": score, "B": 1.0},
                failure_modes=() if passed else (_WRONG,),
                cost_usd=round(rng.uniform(0.001, 0.05), 4),
                duration_s=round(rng.uniform(0.5, 30.0), 2),
                case_digest=f"{i:064x}",
                sut="bench-sut",
                sut_digest=sut_digest,
                rubric_digest=rubric_digest,
                sut_exit_code=0,
                stdout_tail=f"case {i}: done\n",
                stderr_tail="" if passed else f"case {i}: warning: check failed\n",
                diff_digest=diffs[i] if diffs else "",
            )
        )
    return results


def generate(state_dir: Path, runs: int, cases: int) -> None:
    """Write ``runs`` reports of ``cases`` cases each to ``state_dir``, oldest first."""
    rng = random.Random(SEED)
    sut_digest, rubric_digest = _hex(rng), _hex(rng)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    diffs_dir = StateDir(state_dir).diffs
    for seq in range(runs):
        newest = seq == runs - 1
        diffs = (
            [store_diff(diffs_dir, _DIFF.format(old=i, new=i + 1)) for i in range(cases)]
            if newest
            else []
        )
        report = build_report(
            TASK_CLASS,
            _results(rng, cases, sut_digest, rubric_digest, diffs),
            harness_version="bench",
            created_at=start + timedelta(minutes=seq),
        )
        write_run_record(report, state_dir)


def _tree_size(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def _build(state_dir: Path, out: Path) -> tuple[float, SiteSummary]:
    if out.exists():
        shutil.rmtree(out)
    started = time.perf_counter()
    summary = build_site(state_dir, out, tiers_path=TIERS)
    return time.perf_counter() - started, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1000, help="run reports to generate")
    parser.add_argument("--cases", type=int, default=100, help="cases per run")
    parser.add_argument("--repeat", type=int, default=3, help="timed builds")
    parser.add_argument("--profile", action="store_true", help="also profile one build")
    args = parser.parse_args()
    runs: int = args.runs
    cases: int = args.cases

    with tempfile.TemporaryDirectory(prefix="codegenie-bench-html-") as tmp:
        state_dir = Path(tmp) / "eval"
        out = Path(tmp) / "site"
        started = time.perf_counter()
        generate(state_dir, runs, cases)
        gen_s = time.perf_counter() - started
        state_bytes, state_files = _tree_size(state_dir)
        print(
            f"generated {runs} runs x {cases} cases in {gen_s:.1f} s "
            f"({gen_s / runs * 1e3:.1f} ms per run, through write_run_record); "
            f"state dir {state_bytes / 1e6:.1f} MB in {state_files} files"
        )

        timings = []
        summary = None
        for _ in range(args.repeat):
            elapsed, summary = _build(state_dir, out)
            timings.append(elapsed)
        assert summary is not None
        site_bytes, site_files = _tree_size(out)
        best, median = min(timings), statistics.median(timings)
        print(
            f"build_site: {summary.task_classes} task class(es), {summary.runs} runs, "
            f"{summary.attempts} attempts"
        )
        print(
            f"build_site x{args.repeat}: min {best:.2f} s, median {median:.2f} s "
            f"(first {timings[0]:.2f} s); {best / runs * 1e3:.2f} ms per run (min)"
        )
        print(f"site: {site_bytes / 1e6:.1f} MB in {site_files} files")

        if args.profile:
            if out.exists():
                shutil.rmtree(out)
            profiler = cProfile.Profile()
            profiler.enable()
            build_site(state_dir, out, tiers_path=TIERS)
            profiler.disable()
            print("\ncProfile of one build_site, top 15 by cumulative time:")
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(15)


if __name__ == "__main__":
    main()
