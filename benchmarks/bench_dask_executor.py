"""Cases on a Dask LocalCluster (``--codegenie-executor=dask-local:N``) against the local
executor and against pytest-xdist (``-n N``). Prints figures, asserts nothing.

The stub task class is copied into a temporary project and grown to ``--cases`` cases
(default 40). Every session is a real ``python -m pytest`` subprocess in that project,
with ``--codegenie-no-cache``, a fresh state directory each, and the SUT in its default
sandbox (bubblewrap). The short sessions run ``--repeat`` times (default 3; medians count),
the sleeping local and Dask sessions ``--repeat-sleepers`` times (default 1; medians count,
and every ratio is printed).

1. **Speed-up.** A SUT that answers right and then sleeps ``--sleep`` seconds per case
   (default 1 s; I/O-bound, like an agent waiting on a model) runs once with the local
   executor and once on a ``--workers``-worker LocalCluster (default 4). The cluster's
   start-up is measured on its own, two ways: the same executor on a selection of no case
   (``-k nothing_matches``: collection, cluster start and stop) minus that session with the
   local executor; and importing distributed, constructing and closing a ``DaskRunner`` in
   this process. Printed: local time, Dask time with and without start-up, and both ratios
   local/Dask (target >= 3.5x without start-up).
2. **Per-case overhead.** The ``noop`` SUT over the same cases, local and on the cluster
   (it answers nothing, so the stub rubric fails every case and pytest exits 1): session
   time minus the 0-case session, per case.
3. **xdist.** The sleeping SUT with ``-n WORKERS`` (and ``-n 2``), its time and ratio
   against local.

    .venv/bin/python benchmarks/bench_dask_executor.py [--cases 40] [--workers 4]
        [--sleep 1.0] [--repeat 3] [--repeat-sleepers 1]
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pytest_codegenie_eval.execution.executors.dask_controller import DaskRunner
from pytest_codegenie_eval.execution.executors.spec import ExecutorSpec
from pytest_codegenie_eval.taskclass.digests import write_digests

REPO = Path(__file__).resolve().parents[1]
STUB = REPO / "tests" / "fixtures" / "bench" / "stub"
TEMPLATE_PIN = "0011223344556611"
SLEEPER = """\
import pathlib, sys, time
workspace = pathlib.Path(sys.argv[1])
n = int((workspace / "question.txt").read_text().split()[-1])
(workspace / "answer.txt").write_text(f"{{n + 1}}\\n")
time.sleep({sleep!r})
"""
EXIT_OK, EXIT_FAILED, EXIT_NO_TESTS = 0, 1, 5
READY = re.compile(r"Dask executor \S+ ready \((\d+(?:\.\d+)?) s\)")


@dataclass(frozen=True)
class Session:
    wall_s: float
    summary: str  # pytest's last line, e.g. "40 passed in 12.3s"
    # how long this session's Dask executor took to start, as the plugin printed it
    cluster_start_s: float | None = None


class SessionFailed(RuntimeError):
    pass


def _project(root: Path, cases: int) -> Path:
    """A project at ``root`` whose ``bench/stub`` holds ``cases`` cases c000, c001, ..."""
    task_class = root / "bench" / "stub"
    shutil.copytree(STUB, task_class, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "pytest.ini").write_text("")
    shipped = task_class / "cases"
    template = root / "template"
    shutil.move(shipped / "alpha", template)
    for name in ("beta", "gamma"):
        shutil.rmtree(shipped / name)
    for i in range(cases):
        case_id = f"c{i:03d}"
        case = shipped / case_id
        shutil.copytree(template, case)
        toml = (case / "case.toml").read_text()
        toml = toml.replace('"alpha"', f'"{case_id}"').replace(TEMPLATE_PIN, f"00112233{i:08x}")
        (case / "case.toml").write_text(toml)
        (case / "input" / "question.txt").write_text(f"What is one more than {i}\n")
        (case / "expected" / "answer.txt").write_text(f"{i + 1}\n")
    shutil.rmtree(template)
    write_digests(shipped)
    return task_class


class Runner:
    """Runs pytest sessions on the project, each with a state directory of its own."""

    def __init__(self, project: Path, scratch: Path) -> None:
        self.project = project
        self.scratch = scratch
        self.count = 0

    def run(self, label: str, sut: str, *extra: str, expect: int = EXIT_OK) -> Session:
        self.count += 1
        state = self.scratch / f"state-{self.count:02d}"
        argv = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            # hypothesis's pytest plugin imports all of hypothesis (~0.6 s a session), and
            # hypothesis is a test dependency of this repository, not the plugin's: not ours
            "-p",
            "no:hypothesispytest",
            "--codegenie-bench=stub",
            "--codegenie-no-cache",
            f"--codegenie-state-dir={state}",
            f"--codegenie-sut={sut}",
            *extra,
        ]
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=self.project, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
        summary = lines[-1].strip("= ") if lines else ""
        if done.returncode != expect:
            tail = "\n".join(done.stdout.splitlines()[-40:])
            print(
                f"ERROR: session {label!r} exited {done.returncode} (expected {expect})\n"
                f"  command: {shlex.join(argv)}\n--- stdout (tail) ---\n{tail}\n"
                f"--- stderr (tail) ---\n{done.stderr[-3000:]}",
                file=sys.stderr,
            )
            raise SessionFailed(label)
        print(f"  {label:<44} {wall:7.2f} s   [{summary}]", flush=True)
        ready = READY.search(done.stdout)
        return Session(wall, summary, float(ready.group(1)) if ready else None)


def _runner_startup(workers: int, repeat: int) -> tuple[float, float, float]:
    """Import distributed, then construct a DaskRunner (start the LocalCluster, connect)
    and close it ``repeat`` times: the import time and the medians of start and close."""
    started = time.perf_counter()
    importlib.import_module("distributed")
    imported = time.perf_counter() - started
    ups: list[float] = []
    downs: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        runner = DaskRunner(
            ExecutorSpec("dask-local", workers=workers), max_cost_usd=None, run_scope="bench"
        )
        ups.append(time.perf_counter() - started)
        started = time.perf_counter()
        runner.close()
        downs.append(time.perf_counter() - started)
    return imported, statistics.median(ups), statistics.median(downs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sleep", type=float, default=1.0)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each short session (the median counts)"
    )
    parser.add_argument(
        "--repeat-sleepers",
        type=int,
        default=1,
        help="runs of the sleeping local and Dask sessions, alternating (the median counts)",
    )
    args = parser.parse_args()
    cases, workers, repeat = args.cases, args.workers, args.repeat
    dask = f"--codegenie-executor=dask-local:{workers}"
    on = f"dask-local:{workers}"
    none = ("-k", "nothing_matches")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = root / "project"
        _project(project, cases)
        sleeper = root / "sleeper.py"
        sleeper.write_text(SLEEPER.format(sleep=args.sleep))
        sleepy = f"python {sleeper} {{workspace}}"
        runner = Runner(project, root)

        def short(label: str, sut: str, *extra: str, expect: int) -> float:
            runs = [runner.run(label, sut, *extra, expect=expect).wall_s for _ in range(repeat)]
            return statistics.median(runs)

        print(f"{cases} cases, SUT sleeps {args.sleep:g} s; sessions (wall time):")
        try:
            empty_local = short("0 cases, local", sleepy, *none, expect=EXIT_NO_TESTS)
            empties = [
                runner.run(f"0 cases, {on}", sleepy, dask, *none, expect=EXIT_NO_TESTS)
                for _ in range(repeat)
            ]
            empty_dask = statistics.median(e.wall_s for e in empties)
            locals_, dask_runs = [], []
            for _ in range(max(1, args.repeat_sleepers)):
                locals_.append(runner.run("sleeper, local", sleepy).wall_s)
                dask_runs.append(runner.run(f"sleeper, {on}", sleepy, dask))
            dasks = [d.wall_s for d in dask_runs]
            local, on_dask = statistics.median(locals_), statistics.median(dasks)
            xdist = {
                n: runner.run(f"sleeper, -n {n}", sleepy, "-n", str(n)).wall_s
                for n in sorted({workers, 2}, reverse=True)
            }
            noop_local = short("noop, local", "noop", expect=EXIT_FAILED)
            noop_dask = short(f"noop, {on}", "noop", dask, expect=EXIT_FAILED)
        except SessionFailed as exc:
            sys.exit(f"bench_dask_executor: session {exc} failed; figures not printed")
    imported, up, down = _runner_startup(workers, repeat)

    startup = empty_dask - empty_local
    print()
    print(f"cluster start-up, {on} (medians of {repeat}):")
    print(
        f"  0-case sessions: {empty_dask:.2f} s with the cluster, {empty_local:.2f} s local: "
        f"{startup:.2f} s to start and stop the cluster"
    )
    print(
        f"  DaskRunner in this process: import distributed {imported:.2f} s, "
        f"start {up:.2f} s, close {down:.2f} s: {imported + up + down:.2f} s"
    )
    print()
    bare = on_dask - startup
    if len(dasks) > 1:
        each = ", ".join(
            f"{lo / (da - startup):.2f}x" for lo, da in zip(locals_, dasks, strict=True)
        )
        print(f"w/o start-up, each pair of sleeping sessions in turn: {each}")
    # the cluster's start varies from session to session (1.4 to 2.3 s here): take each
    # session's own, as it printed it, and the rest of the cluster's cost (its stop, the
    # task classes loaded on the workers) from the zero-case sessions
    starts = [e.cluster_start_s for e in empties] + [d.cluster_start_s for d in dask_runs]
    if all(start is not None for start in starts):
        rest = (
            statistics.median(e.wall_s - (e.cluster_start_s or 0.0) for e in empties) - empty_local
        )
        own = [d.wall_s - (d.cluster_start_s or 0.0) - rest for d in dask_runs]
        each = ", ".join(f"{lo / o:.2f}x" for lo, o in zip(locals_, own, strict=True))
        print(
            f"w/o start-up, each session's own cluster start subtracted (and {rest:.2f} s of "
            f"stop from the zero-case sessions): median {statistics.median(own):.2f} s, ratio "
            f"{local / statistics.median(own):.2f}x; each pair in turn: {each}"
        )
    print(f"1. sleeping SUT, {cases} cases ({cases * args.sleep:g} s of sleep in all):")
    print(f"  local:                        {local:7.2f} s")
    print(f"  {on}, with start-up:  {on_dask:7.2f} s   ratio local/dask {local / on_dask:.2f}x")
    print(
        f"  {on}, w/o start-up:   {bare:7.2f} s   ratio local/dask {local / bare:.2f}x "
        "(target >= 3.5x)"
    )
    best = local / (empty_local + (local - empty_local) / workers)
    print(
        f"  (a cluster adding nothing, {workers} cases at a time, would give {best:.2f}x: "
        "the session's own start and collection are paid once either way)"
    )
    work_local, work_dask = local - empty_local, on_dask - empty_dask
    print(
        f"  running the cases only (each minus its 0-case session): local {work_local:.2f} s, "
        f"dask {work_dask:.2f} s, ratio {work_local / work_dask:.2f}x (ceiling {workers}x)"
    )
    per_case = work_local / cases - args.sleep
    print(f"  local harness cost per case beyond the sleep: {per_case * 1000:.0f} ms")
    print()
    print(f"2. per-case overhead, noop SUT, {cases} cases (session minus its 0-case session):")
    per_local = (noop_local - empty_local) / cases * 1000
    per_dask = (noop_dask - empty_dask) / cases * 1000
    print(f"  local:          {per_local:7.1f} ms/case  (session {noop_local:.2f} s)")
    print(f"  {on}:   {per_dask:7.1f} ms/case  (session {noop_dask:.2f} s)")
    print()
    print("3. sleeping SUT under pytest-xdist (worker start-up included):")
    for n, wall in xdist.items():
        print(f"  -n {n}:          {wall:7.2f} s   ratio local/xdist {local / wall:.2f}x")
    print(f"  ({on}:  {on_dask:7.2f} s with start-up, for comparison)")


if __name__ == "__main__":
    main()
