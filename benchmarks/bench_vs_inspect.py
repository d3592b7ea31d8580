"""Our own per-case cost against inspect_ai's per-sample cost. Prints figures, asserts nothing.

Both sides do the same trivial work per case: spawn ``/bin/true`` (the SUT) and
``python -I rubric.py`` fed the JSON payload on stdin (the rubric of ``_generate.py``).

- spawn floor: a bare Python loop spawning those two processes, per case.
- ours: a real session of N cases (``--codegenie-sut=/bin/true {workspace}``, cache off)
  minus the same session selecting no case (start-up and collection), per case.
- inspect_ai (in its own venv, ``~/.cache/codegenie-bench/inspect-venv``, created and
  reused; never the project's venv): ``eval()`` of a Task of N samples on
  ``mockllm/model``, minus the same eval of 1 sample, per sample (``(t(N) - t(1)) / (N - 1)``,
  the eval call alone, after an untimed warm-up). Once with a no-op solver, once with a
  solver spawning the two processes through ``sandbox().exec`` in the ``local`` sandbox.
  Samples run one at a time (``max_samples=1``), as our session does without ``-n``.
- own cost = per-case time minus the spawn floor. Wall time hides work done while something
  else waits, so the CPU time of every process (user and system, per case, measured the same
  three ways) is printed too, and once more for our session with both jails off
  (``--codegenie-sut-sandbox=none --codegenie-rubric-sandbox=none``): the same processes as
  the floor and inspect_ai's local sandbox, so what is left is the harness's own work.

Runs alternate (ours, inspect, ours, inspect, ...) ``--repeat`` times; medians are printed.
If inspect_ai cannot be installed (it needs PyPI), only our figures are printed.

    .venv/bin/python benchmarks/bench_vs_inspect.py [--cases 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
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
    "--codegenie-bench=gen", "--codegenie-sut=/bin/true {workspace}", "--codegenie-no-cache",
]  # fmt: skip
INSPECT_SPEC = "inspect_ai==0.3.*"
RUBRIC_ENV = {"PATH": os.environ.get("PATH", ""), "TZ": "UTC", "PYTHONHASHSEED": "0"}

# Run with the inspect venv's python: argv[1] is a JSON config; prints a JSON of timings.
INSPECT_SCRIPT = """
import json
import sys
import time

from inspect_ai import Task, eval as inspect_eval
from inspect_ai.dataset import Sample
from inspect_ai.scorer import Score, accuracy, scorer
from inspect_ai.solver import solver
from inspect_ai.util import sandbox

import resource

cfg = json.loads(sys.argv[1])
payload = cfg["payload"].encode()


@solver
def noop():
    async def solve(state, generate):
        return state

    return solve


@solver
def spawn():
    async def solve(state, generate):
        sut = await sandbox().exec(cfg["sut"])
        rubric = await sandbox().exec(cfg["rubric"], input=payload, env=cfg["env"])
        if not (sut.success and rubric.success):
            raise RuntimeError(f"spawn failed: {sut.stderr} {rubric.stderr}")
        return state

    return solve


@scorer(metrics=[accuracy()])
def one():
    async def score(state, target):
        return Score(value=1)

    return score


def cpu():
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(n, spawning):
    task = Task(
        dataset=[Sample(input="x", target="y") for _ in range(n)],
        solver=spawn() if spawning else noop(),
        scorer=one(),
        sandbox="local" if spawning else None,
    )
    started, used = time.perf_counter(), cpu()
    logs = inspect_eval(
        task, model="mockllm/model", display="none", log_dir=cfg["log_dir"], max_samples=1
    )
    elapsed, used = time.perf_counter() - started, cpu() - used
    if logs[0].status != "success":
        sys.exit(f"inspect eval ({n} samples) ended {logs[0].status}: {logs[0].error}")
    return elapsed, used


timed(1, True)  # warm-up: first-call initialisation, not timed
n = cfg["cases"]
out = {}
for name, spawning in (("noop", False), ("spawn", True)):
    one_wall, one_cpu = timed(1, spawning)
    wall, used = timed(n, spawning)
    out[name] = (wall - one_wall) / (n - 1)
    out[name + "_cpu"] = (used - one_cpu) / (n - 1)
print(json.dumps(out))
"""


def _payload(case_dir: Path) -> bytes:
    return json.dumps(
        {
            "case": {"case_id": "case-00000", "title": "t", "curation_class": "held-out"},
            "case_dir": str(case_dir),
            "harness_output": {"workspace": str(case_dir / "input")},
        }
    ).encode()


def _children_cpu() -> float:
    """CPU seconds (user and system) of every child this process has waited for."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def spawn_floor(rubric: Path, n: int, case_dir: Path) -> tuple[float, float]:
    """Seconds per case of a bare loop spawning the SUT and the rubric, and CPU seconds."""
    payload = _payload(case_dir)
    sut = ["/bin/true", str(case_dir / "input")]
    started, used = time.perf_counter(), _children_cpu()
    for _ in range(n):
        subprocess.run(sut, check=True, capture_output=True)
        subprocess.run(
            [sys.executable, "-I", str(rubric)], input=payload, env=RUBRIC_ENV, check=True,
            capture_output=True,
        )  # fmt: skip
    return (time.perf_counter() - started) / n, (_children_cpu() - used) / n


def _session(extra: list[str], cwd: Path, ok: tuple[int, ...] = (0,)) -> tuple[float, float]:
    """Wall and CPU seconds of a pytest session (CPU of it and all it started)."""
    started, used = time.perf_counter(), _children_cpu()
    proc = subprocess.run([*PYTEST, *extra], cwd=cwd, capture_output=True, text=True)
    elapsed, used = time.perf_counter() - started, _children_cpu() - used
    if proc.returncode not in ok:
        sys.exit(f"pytest session exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr}")
    return elapsed, used


# Our session doing exactly the floor's work: the SUT and the rubric without their
# bubblewrap jails, which neither the floor nor inspect_ai's local sandbox has.
UNJAILED = ["--codegenie-sut-sandbox=none", "--codegenie-rubric-sandbox=none"]


def ours_per_case(root: Path, n: int, extra: tuple[str, ...] = ()) -> tuple[float, float]:
    """Wall and CPU seconds per case of a real session, start-up and collection (an empty
    session) removed."""
    empty = _session(["-k", "nothing_matches_xyz", *extra], root, ok=(5,))
    full = _session([*extra], root)
    return (full[0] - empty[0]) / n, (full[1] - empty[1]) / n


def _venv_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "codegenie-bench" / "inspect-venv"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


def inspect_python() -> tuple[Path, str] | str:
    """The inspect venv's python and inspect_ai's version, installing if needed; or why not."""
    venv = _venv_dir()
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import inspect_ai; print(inspect_ai.__version__)"]
    try:
        if python.exists():
            done = subprocess.run(probe, capture_output=True, text=True)
            if done.returncode == 0:
                return python, done.stdout.strip()
        print(f"installing {INSPECT_SPEC} into {venv} ...", flush=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        made = subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(venv)], capture_output=True, text=True
        )
        if made.returncode != 0:
            return f"venv creation failed: {_last_line(made.stderr + made.stdout)}"
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        installed = subprocess.run(
            [*pip, INSPECT_SPEC], capture_output=True, text=True, timeout=1800
        )
        if installed.returncode != 0:
            return f"pip install failed: {_last_line(installed.stderr + installed.stdout)}"
        done = subprocess.run(probe, capture_output=True, text=True)
        if done.returncode != 0:
            return f"import failed after install: {_last_line(done.stderr)}"
        return python, done.stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{type(exc).__name__}: {exc}"


def inspect_per_sample(
    python: Path, script: Path, n: int, rubric: Path, case_dir: Path, log_dir: Path
) -> dict[str, float]:
    """Seconds per sample of inspect_ai's eval, no-op and spawning solvers."""
    cfg = {
        "cases": n,
        "sut": ["/bin/true", str(case_dir / "input")],
        "rubric": [sys.executable, "-I", str(rubric)],
        "payload": _payload(case_dir).decode(),
        "env": RUBRIC_ENV,
        "log_dir": str(log_dir),
    }
    env = {**os.environ, "INSPECT_DISPLAY": "none"}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        [str(python), str(script), json.dumps(cfg)],
        cwd=script.parent, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(_last_line(done.stderr + done.stdout))
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, repeat = max(args.cases, 2), max(args.repeat, 1)
    found = inspect_python()
    if isinstance(found, str):
        print(f"inspect_ai could not be installed ({found}); skipping the inspect_ai side")
        python, skipped = None, found
    else:
        python, version = found
        skipped = None
        print(f"inspect_ai {version} ({python})")
    floors: list[float] = []
    ours: list[float] = []
    noop: list[float] = []
    spawning: list[float] = []
    cpu: dict[str, list[float]] = {"floor": [], "ours": [], "unjailed": [], "inspect": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        rubric = generate(root, n)
        case_dir = rubric.parent / "cases" / "case-00000"
        script = Path(tmp) / "inspect_side" / "bench_inspect.py"
        script.parent.mkdir()
        script.write_text(INSPECT_SCRIPT)
        for r in range(repeat):
            wall, used = spawn_floor(rubric, n, case_dir)
            floors.append(wall)
            cpu["floor"].append(used)
            wall, used = ours_per_case(root, n)
            ours.append(wall)
            cpu["ours"].append(used)
            cpu["unjailed"].append(ours_per_case(root, n, tuple(UNJAILED))[1])
            line = f"run {r + 1}/{repeat}: floor {_ms(floors[-1])}, ours {_ms(ours[-1])}"
            if python is not None:
                try:
                    got = inspect_per_sample(
                        python, script, n, rubric, case_dir, Path(tmp) / f"logs-{r}"
                    )
                except (RuntimeError, ValueError, OSError) as exc:
                    print(f"inspect_ai run failed ({exc}); skipping the inspect_ai side")
                    python, skipped = None, f"run failed: {exc}"
                else:
                    noop.append(got["noop"])
                    spawning.append(got["spawn"])
                    cpu["inspect"].append(got["spawn_cpu"])
                    line += f", inspect no-op {_ms(noop[-1])}, spawning {_ms(spawning[-1])}"
            print(line, flush=True)
    floor = statistics.median(floors)
    our = statistics.median(ours)
    print(f"{n} cases, medians of {repeat} alternating runs:")
    print(f"spawn floor (/bin/true + python -I rubric.py, bare loop): {_ms(floor)} per case")
    print(f"ours (session of {n} cases minus an empty session): {_ms(our)} per case, "
          f"own cost {_ms(our - floor)}")  # fmt: skip
    if noop:
        no, sp = statistics.median(noop), statistics.median(spawning)
        print(f"inspect_ai, no-op solver (t(N) - t(1)) / (N - 1): {_ms(no)} per sample")
        print(f"inspect_ai, spawning solver (local sandbox exec): {_ms(sp)} per sample, "
              f"own cost {_ms(sp - floor)}")  # fmt: skip
        theirs = _ms(sp - floor)
    else:
        theirs = f"n/a (skipped: {skipped})"
    print(f"own cost per case: ours {_ms(our - floor)}, inspect_ai {theirs} "
          f"(target: ours <= inspect_ai and <= 10 ms)")  # fmt: skip
    # wall time hides work done while something else waits (the next rubric starting while
    # this attempt runs): the CPU every process spent says what the work itself costs
    busy = {name: statistics.median(v) for name, v in cpu.items() if v}
    line = f"CPU per case (user + system, every process): floor {_ms(busy['floor'])}, "
    line += f"ours {_ms(busy['ours'])} (own {_ms(busy['ours'] - busy['floor'])})"
    if "inspect" in busy:
        line += f", inspect_ai {_ms(busy['inspect'])} (own {_ms(busy['inspect'] - busy['floor'])})"
    print(line)
    # the same processes on both sides: ours without the two jails inspect_ai does not have
    line = f"CPU per case, ours without the jails ({' '.join(UNJAILED)}): "
    line += f"{_ms(busy['unjailed'])} (own {_ms(busy['unjailed'] - busy['floor'])}"
    if "inspect" in busy:
        line += f"; inspect_ai own {_ms(busy['inspect'] - busy['floor'])}"
    print(line + "); the jails cost " + _ms(busy["ours"] - busy["unjailed"]))


if __name__ == "__main__":
    main()
