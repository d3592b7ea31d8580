"""What the installed plugin costs a pytest run that selects no bench (an IDE re-running one
unit test). Prints figures, asserts nothing.

A one-test project is run with the plugin and with ``-p no:codegenie_eval``, alternately,
``--repeat`` times each; the medians of wall time and of peak RSS are compared
(targets: <= 1.10x the wall time, <= 5 MiB more peak memory).

    .venv/bin/python benchmarks/bench_plugin_idle.py [--repeat 9]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_RUN = (
    "import resource, sys, pytest\n"
    "code = pytest.main(sys.argv[1:])\n"
    "print('PEAK-KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
)


def _run(project: Path, *extra: str) -> tuple[float, int]:
    started = time.perf_counter()
    # hypothesis's own pytest plugin is not ours to time: both runs go without it
    args = ["-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", *extra, "test_one.py"]
    done = subprocess.run(
        [sys.executable, "-c", _RUN, *args],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - started
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("PEAK-KB ")]
    return wall, int(line.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "test_one.py").write_text("def test_one():\n    assert True\n")
        with_plugin: list[tuple[float, int]] = []
        without: list[tuple[float, int]] = []
        for _ in range(args.repeat):
            with_plugin.append(_run(project))
            without.append(_run(project, "-p", "no:codegenie_eval"))
    wall_on = statistics.median(w for w, _ in with_plugin)
    wall_off = statistics.median(w for w, _ in without)
    rss_on = statistics.median(r for _, r in with_plugin) / 1024
    rss_off = statistics.median(r for _, r in without) / 1024
    print(f"one-test run, plugin loaded:      {wall_on:.3f} s, peak {rss_on:.1f} MiB")
    print(f"one-test run, -p no:codegenie_eval: {wall_off:.3f} s, peak {rss_off:.1f} MiB")
    print(
        f"ratio {wall_on / wall_off:.2f} (target <= 1.10), "
        f"+{rss_on - rss_off:.1f} MiB (target <= 5 MiB)"
    )


if __name__ == "__main__":
    main()
