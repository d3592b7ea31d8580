"""Shared fixtures of the adversarial suite: run a bench through the plugin with pytester,
and copy fixture task classes into ``tmp_path`` so a test can break them without touching
the committed fixtures."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.adv.procs import alive

FIXTURE_BENCH_ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "bench"

# (pytest outcome, JSONL case lines by case_id)
BenchRun = tuple[pytest.RunResult, dict[str, dict[str, Any]]]


@pytest.fixture
def run_fixture_bench(pytester: pytest.Pytester) -> Callable[..., BenchRun]:
    """Run one task class through the plugin; returns the result and the JSONL case lines.

    ``subprocess=True`` runs pytest in a child process (needed whenever timeouts, process
    kills or the harness's own environment are under test).
    """
    counter = itertools.count()

    def run(
        bench: str,
        *args: str,
        root: Path = FIXTURE_BENCH_ROOT,
        subprocess: bool = False,
        timeout: float = 120.0,
    ) -> BenchRun:
        n = next(counter)
        jsonl = pytester.path / f"run-{n}.jsonl"
        argv = [
            "-p",
            "no:cacheprovider",
            f"--codegenie-bench={bench}",
            f"--codegenie-bench-root={root}",
            f"--codegenie-state-dir={pytester.path / f'state-{n}'}",
            f"--codegenie-jsonl={jsonl}",
            "--codegenie-no-cache",
            *args,
        ]
        if subprocess:
            result = pytester.runpytest_subprocess(*argv, timeout=timeout)
        else:
            result = pytester.runpytest(*argv)
        cases: dict[str, dict[str, Any]] = {}
        if jsonl.exists():
            for line in jsonl.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                if record["type"] == "case":
                    assert record["case_id"] not in cases, f"case {record['case_id']} twice"
                    cases[record["case_id"]] = record
        return result, cases

    return run


@pytest.fixture
def copy_task_class(tmp_path: Path) -> Callable[[str], Path]:
    """Copy a fixture task class to ``tmp_path/bench/NAME`` and return its directory."""

    def copy(name: str) -> Path:
        target = tmp_path / "bench" / name
        shutil.copytree(
            FIXTURE_BENCH_ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__")
        )
        return target

    return copy


@pytest.fixture
def recorded_pids() -> Iterator[list[int]]:
    """Pids of hostile processes a test recorded; any still alive at teardown are killed
    (only if they still look like ours: a pid may have been reused)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if alive(pid) and (b"hangs.py" in cmdline or b"sleep" in cmdline):
                os.kill(pid, signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):
            pass
