"""Per-case harness overhead and warm-cache reruns. Prints figures, asserts nothing.

1. 200 cases with a trivial rubric, cache off, against the floor: a bare loop spawning the
   same ``python -I rubric.py`` 200 times. Measured with the no-op SUT, and with a command
   SUT (``/bin/true``) in the bubblewrap sandbox, both sandboxes on (target ratio <= 1.5).
   The cost of one ``bwrap`` start is printed beside it.
2. A warm-cache rerun of 1,000 cases (target < 5 s on 2 cores).

    .venv/bin/python benchmarks/bench_harness_overhead.py [--cases 200] [--warm-cases 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _generate import generate

# hypothesis's pytest plugin imports all of hypothesis at session end (~1 s): not ours to time
PYTEST = [
    sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
    "--codegenie-bench=gen",
]  # fmt: skip


def _run(cmd: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def floor_loop(rubric: Path, n: int, case_dir: Path) -> float:
    payload = json.dumps(
        {
            "case": {"case_id": "case-00000", "title": "t", "curation_class": "held-out"},
            "case_dir": str(case_dir),
            "harness_output": {"workspace": str(case_dir / "input")},
        }
    ).encode()
    env = {"PATH": os.environ.get("PATH", ""), "TZ": "UTC", "PYTHONHASHSEED": "0"}
    started = time.perf_counter()
    for _ in range(n):
        subprocess.run(
            [sys.executable, "-I", str(rubric)], input=payload, env=env, check=True,
            capture_output=True,
        )  # fmt: skip
    return time.perf_counter() - started


def bwrap_start_cost(n: int = 100) -> tuple[float, float, float | None] | None:
    """Seconds per start of ``/bin/true`` bare, inside the SUT's jail as the harness's own
    uid, and (for a root harness) dropped to the sandbox user through the staging
    namespace; None without bubblewrap."""
    from pytest_codegenie_eval.execution.isolation.jailuser import default_jail_user, give_to
    from pytest_codegenie_eval.execution.isolation.sandbox import Jail, bwrap_status

    status = bwrap_status()
    if not status.usable or status.path is None:
        return None
    user = default_jail_user()

    def per_start(jail: Jail) -> float:
        assert status.path is not None
        argv = jail.argv(status.path, ["/bin/true"])
        subprocess.run(argv, check=True, env=jail.spawn_env())  # stages once, not timed
        started = time.perf_counter()
        for _ in range(n):
            subprocess.run(argv, check=True, env=jail.spawn_env())
        return (time.perf_counter() - started) / n

    with tempfile.TemporaryDirectory() as ws:
        started = time.perf_counter()
        for _ in range(n):
            subprocess.run(["/bin/true"], check=True)
        bare = (time.perf_counter() - started) / n
        env = {"PATH": "/usr/bin:/bin"}
        jailed = per_start(Jail(ro=(), rw=(Path(ws),), chdir=Path(ws), env=env))
        dropped = None
        if user is not None and bwrap_status(user).usable:
            give_to(user, Path(ws))
            dropped = per_start(Jail(ro=(), rw=(Path(ws),), chdir=Path(ws), env=env, user=user))
    return bare, jailed, dropped


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--warm-cases", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "overhead"
        rubric = generate(root, args.cases)
        floor = floor_loop(rubric, args.cases, rubric.parent / "cases" / "case-00000")
        harness = _run([*PYTEST, "--codegenie-sut=noop", "--codegenie-no-cache"], root)
        both = _run(
            [*PYTEST, "--codegenie-sut=/bin/true {workspace}", "--codegenie-no-cache"], root
        )
        print(f"floor: {args.cases} bare `python -I rubric.py` spawns: {floor:.2f} s "
              f"({floor / args.cases * 1000:.1f} ms each)")  # fmt: skip
        print(f"harness: {args.cases} cases, noop SUT, sandboxed rubric, cache off: "
              f"{harness:.2f} s ({harness / args.cases * 1000:.1f} ms each), "
              f"ratio {harness / floor:.2f}")  # fmt: skip
        print(f"harness: {args.cases} cases, sandboxed /bin/true SUT and sandboxed rubric: "
              f"{both:.2f} s ({both / args.cases * 1000:.1f} ms each), "
              f"ratio {both / floor:.2f} (target <= 1.5)")  # fmt: skip
        cost = bwrap_start_cost()
        if cost is None:
            print("bwrap start: unavailable on this machine (sandboxed runs were env-only)")
        else:
            print(f"bwrap start: {cost[1] * 1000:.2f} ms per jail vs {cost[0] * 1000:.2f} ms "
                  f"for a bare /bin/true spawn")  # fmt: skip
            if cost[2] is not None:
                print(f"bwrap start as the sandbox user (root harness: staging namespace, "
                      f"nsenter as the user): {cost[2] * 1000:.2f} ms per jail, "
                      f"ratio {cost[2] / cost[1]:.2f} to a jail as root")  # fmt: skip
        warm_root = Path(tmp) / "warm"
        generate(warm_root, args.warm_cases)
        cold = _run([*PYTEST, "--codegenie-sut=noop", "-n", "2"], warm_root)
        warm = _run([*PYTEST, "--codegenie-sut=noop"], warm_root)
        warm_n2 = _run([*PYTEST, "--codegenie-sut=noop", "-n", "2"], warm_root)
        print(f"cold run of {args.warm_cases} cases (-n 2): {cold:.2f} s")
        print(f"warm rerun of {args.warm_cases} cases: {warm:.2f} s (-n 2: {warm_n2:.2f} s; "
              f"target < 5 s); ratio warm/cold {warm / cold:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
