"""Generate a synthetic task class with N trivial cases for the benchmarks."""

from __future__ import annotations

from pathlib import Path

from pytest_codegenie_eval.taskclass.digests import write_digests

REGISTRATION = """from pytest_codegenie_eval import register_task_class


@register_task_class("gen", min_cases_for_promotion={"bronze": 1})
class Gen:
    \"\"\"Synthetic benchmark task class.\"\"\"
"""
KEYS = """from enum import StrEnum


class BreakdownKey(StrEnum):
    OK = "OK"
"""
MODES = """version: 1
failure_modes:
  gen.wrong: {severity: block, description: "never emitted"}
"""
RUBRIC = """from pytest_codegenie_eval.rubric import serve


def score(case, out):
    return {"score": 1.0, "breakdown": {"OK": 1.0}, "failure_modes": []}


if __name__ == "__main__":
    serve(score)
"""


def generate(root: Path, n: int) -> Path:
    """Write ``root/bench/gen`` with ``n`` cases and pinned digests; return the rubric path."""
    tc = root / "bench" / "gen"
    (tc / "cases").mkdir(parents=True)
    (tc / "registration.py").write_text(REGISTRATION)
    (tc / "breakdown_keys.py").write_text(KEYS)
    (tc / "failure_modes.yaml").write_text(MODES)
    (tc / "rubric.py").write_text(RUBRIC)
    for i in range(n):
        case = tc / "cases" / f"case-{i:05d}"
        (case / "input").mkdir(parents=True)
        (case / "expected").mkdir()
        (case / "input" / "file.txt").write_text(f"input {i}\n")
        (case / "case.toml").write_text(
            f'case_id = "case-{i:05d}"\ntitle = "synthetic {i}"\n'
            f'curation_class = "held-out"\ncassette_canary_pin = "{i:016x}"\n'
        )
    write_digests(tc / "cases")
    return tc / "rubric.py"
