"""Many agents at once on one machine: ``--codegenie-executor=local:N`` (N attempts at once
in the pytest process). Prints figures, asserts nothing.

The stub task class is grown to ``--cases`` cases in a temporary project (as
``bench_dask_executor.py`` does). Every session is a real ``python -m pytest`` subprocess,
``--codegenie-no-cache``, a fresh state directory each, the SUT in its default sandbox
(bubblewrap). The SUT answers right and then sleeps ``--sleep`` seconds (default 1 s), like
an agent waiting on a model.

1. **Near the ideal.** ``--cases`` (default 40) sleeping cases with ``local:8``, against
   the ideal: ``ceil(cases / 8) x sleep`` plus the session's own time on the same cases
   with a SUT that does not sleep (start-up, collection, the per-case work), and against
   the strict ideal: the sleeps plus a session that selects no case (start-up alone).
   Target: within 1.3x of the ideal. The local executor's time is printed beside it for
   the speed-up.
2. **Flat harness memory.** ``local:32`` on 50 and on ``--many`` (default 200) sleeping
   cases: the peak resident memory of the pytest process (``ru_maxrss`` of the children of
   this process, the largest of which is pytest) and the wall time. Flat: the 200-case peak
   close to the 50-case one.

    .venv/bin/python benchmarks/bench_local_concurrency.py [--cases 40] [--many 200]
        [--sleep 1.0] [--skip-local]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dask_executor import SLEEPER, Runner, _project


def _peak_rss_mib(argv: list[str], cwd: Path) -> tuple[float, float, str]:
    """Run ``argv`` in a fresh child of a fresh child (so ``ru_maxrss`` of the children is
    this session's alone); returns wall seconds, peak RSS in MiB and pytest's last line."""
    probe = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "wall = time.perf_counter() - t\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "lines = [ln for ln in done.stdout.splitlines() if ln.strip()]\n"
        "print(wall, peak, done.returncode, (lines[-1] if lines else '').strip('= '), sep='\\t')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, *argv], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()
    wall, peak, code, summary = out.split("\t", 3)
    if code != "0":
        raise RuntimeError(f"session exited {code}: {summary}")
    return float(wall), float(peak), summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--many", type=int, default=200)
    parser.add_argument("--sleep", type=float, default=1.0)
    parser.add_argument("--skip-local", action="store_true", help="skip the sequential run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="codegenie-local-n-") as tmp:
        root = Path(tmp)
        project = root / "project"
        project.mkdir()
        _project(project, args.cases)
        sleeper = project / "sleeper.py"
        sleeper.write_text(SLEEPER.format(sleep=args.sleep))
        quick = project / "quick.py"
        quick.write_text(SLEEPER.format(sleep=0.0))
        runner = Runner(project, root)
        print(f"1. {args.cases} cases, SUT sleeping {args.sleep} s, local:8")
        empty = runner.run(
            "no case selected, local:8 (start-up alone)",
            f"python {quick} {{workspace}}",
            "--codegenie-executor=local:8",
            "-k",
            "nothing_matches_this",
            expect=5,
        )
        base = runner.run(
            "quick SUT, local:8 (the session's own time)",
            f"python {quick} {{workspace}}",
            "--codegenie-executor=local:8",
        )
        eight = runner.run(
            "sleeping SUT, local:8",
            f"python {sleeper} {{workspace}}",
            "--codegenie-executor=local:8",
        )
        ideal = math.ceil(args.cases / 8) * args.sleep + base.wall_s
        strict = math.ceil(args.cases / 8) * args.sleep + empty.wall_s
        print(
            f"  ideal {ideal:.2f} s (ceil({args.cases}/8) x {args.sleep} s + {base.wall_s:.2f} s)"
            f"; local:8 / ideal = {eight.wall_s / ideal:.2f}x (target <= 1.3x)"
        )
        print(
            f"  strict ideal {strict:.2f} s (the sleeps + the start-up alone, "
            f"{empty.wall_s:.2f} s): local:8 / strict ideal = {eight.wall_s / strict:.2f}x"
        )
        if not args.skip_local:
            local = runner.run("sleeping SUT, local", f"python {sleeper} {{workspace}}")
            print(f"  speed-up local / local:8 = {local.wall_s / eight.wall_s:.2f}x")
        print("2. local:32, peak memory of the pytest process")
        peaks = []
        for cases in (50, args.many):
            grown = root / f"project-{cases}"
            grown.mkdir()
            _project(grown, cases)
            (grown / "sleeper.py").write_text(SLEEPER.format(sleep=args.sleep))
            argv = [
                # hypothesis's pytest plugin (a test dependency here, not the plugin's)
                # imports all of hypothesis in every session: not ours to time
                sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "-p", "no:hypothesispytest",
                "--codegenie-bench=stub", "--codegenie-no-cache",
                f"--codegenie-state-dir={root / f'state-many-{cases}'}",
                f"--codegenie-sut=python {grown / 'sleeper.py'} {{workspace}}",
                "--codegenie-executor=local:32",
            ]  # fmt: skip
            wall, peak, summary = _peak_rss_mib(argv, grown)
            ideal_many = math.ceil(cases / 32) * args.sleep
            peaks.append(peak)
            print(
                f"  {cases:4d} cases: {wall:6.2f} s (sleeping alone {ideal_many:.0f} s), "
                f"peak RSS {peak:6.1f} MiB   [{summary}]"
            )
        print(f"  peak at {args.many} / peak at 50 = {peaks[1] / peaks[0]:.2f}x (flat: about 1)")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"(benchmark took {time.perf_counter() - start:.0f} s)")
