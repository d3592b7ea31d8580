"""``codegenie-eval init``: a trust-tier file and, on request, a task-class skeleton.

The skeleton meets the whole contract: it passes ``--codegenie-fence``, loads, and its
baseline passes its three example cases, so a new bench author starts from something green
and edits it. Everything it writes is in this module, so the wheel ships it.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from pytest_codegenie_eval.taskclass.digests import write_digests
from pytest_codegenie_eval.taskclass.layout import (
    BREAKDOWN_KEYS,
    CASES,
    FAILURE_MODES,
    REGISTRATION,
    RUBRIC,
    TASK_MD,
)

TIERS_TEMPLATE = """\
# UNCALIBRATED: these thresholds are placeholders, not evidence-backed cut-offs.
#
# No calibration study ties a lower_bound_95 value to the real-world reliability of an
# agent on a task class yet. The numbers only fix an order (bronze < silver < gold), so the
# promotion gate can be exercised; do not read a tier earned against them as trust.
#
# The harness only READS this file. A human changes current_tiers, through review, after
# reading a recommendation under .codegenie/eval/recommendations/. Thresholds are
# lower_bound_95 values in [0, 1]; a tier's threshold may not be below a lower tier's.
schema_version: 1
uncalibrated: true
thresholds:
  bronze: 0.70
  silver: 0.80
  gold: 0.90
current_tiers: {}
# How many most recent run reports of a task class are judged together (newest last).
evidence_window: 1
# The weakest SUT isolation a case may have had to count as evidence: bwrap (the sandbox),
# env-only (the agent could read the answer keys) or in-process (the pluggy hook).
required_sut_isolation: bwrap
"""

_REGISTRATION = '''\
from pytest_codegenie_eval import register_task_class


@register_task_class("{name}", min_cases_for_promotion={{"bronze": 3}}, scores="pass_fail")
class TaskClass:
    """Write the answer to the question in question.txt into answer.txt (edit me)."""

    baseline_sut = "baseline_sut.py"
'''

_BREAKDOWN_KEYS = '''\
from enum import StrEnum


class BreakdownKey(StrEnum):
    """Observable properties the rubric measures (never a self-report)."""

    ANSWER_CORRECT = "ANSWER_CORRECT"
'''

_FAILURE_MODES = """\
version: 1
failure_modes:
  answer.missing: {severity: block, description: "answer.txt was not written"}
  answer.wrong: {severity: block, description: "answer.txt does not hold the expected answer"}
"""

_RUBRIC = '''\
"""Scores one case: reads the harness's request on stdin, prints one BenchScore JSON."""

from __future__ import annotations

from pytest_codegenie_eval.rubric import CaseInfo, HarnessOutput, serve


def score(case: CaseInfo, out: HarnessOutput) -> dict[str, object]:
    expected = (case.expected_dir / "answer.txt").read_text(encoding="utf-8").strip()
    answer = out.workspace / "answer.txt"
    if not answer.is_file():
        return {
            "score": 0.0,
            "breakdown": {"ANSWER_CORRECT": 0.0},
            "failure_modes": [{"code": "answer.missing"}],
        }
    got = answer.read_text(encoding="utf-8").strip()
    correct = got == expected
    return {
        "score": 1.0 if correct else 0.0,
        "breakdown": {"ANSWER_CORRECT": float(correct)},
        "failure_modes": [] if correct else [{"code": "answer.wrong", "detail": f"got {got!r}"}],
    }


if __name__ == "__main__":
    serve(score)
'''

_BASELINE = '''\
"""The baseline SUT: what any agent must beat. Run as `python -I baseline_sut.py WORKSPACE`."""

import sys
from pathlib import Path

workspace = Path(sys.argv[1])
number = int((workspace / "question.txt").read_text(encoding="utf-8").split()[-1])
(workspace / "answer.txt").write_text(f"{number + 1}\\n", encoding="utf-8")
'''

_TASK_MD = """\
# {name}

Read `question.txt` in the workspace and write the answer, a number, to `answer.txt`.
"""

_CASE = """\
case_id = "{case_id}"
title = "one more than {number}"
curation_class = "held-out"
cassette_canary_pin = "{pin}"
sut_timeout_s = 60
rubric_timeout_s = 30
"""

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class ScaffoldError(Exception):
    """``init`` would overwrite something, or the name is not a usable directory name."""


def write_tiers(path: Path) -> bool:
    """Write the uncalibrated tier file unless one exists; True when written."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TIERS_TEMPLATE, encoding="utf-8")
    return True


def write_task_class(bench_root: Path, name: str) -> Path:
    """Write a task-class skeleton with three example cases, pinned; returns its directory."""
    if not _NAME.match(name):
        raise ScaffoldError(
            f"task class name {name!r}: use lowercase letters, digits, '.', '_' and '-' "
            "(it is also the directory name)"
        )
    directory = bench_root / name
    if directory.exists():
        raise ScaffoldError(f"{directory} exists; init never overwrites a task class")
    files = {
        REGISTRATION: _REGISTRATION.format(name=name),
        BREAKDOWN_KEYS: _BREAKDOWN_KEYS,
        FAILURE_MODES: _FAILURE_MODES,
        RUBRIC: _RUBRIC,
        "baseline_sut.py": _BASELINE,
        TASK_MD: _TASK_MD.format(name=name),
    }
    for number in (1, 2, 3):
        case = f"cases/example-{number}"
        files[f"{case}/case.toml"] = _CASE.format(
            case_id=f"example-{number}", number=number, pin=secrets.token_hex(8)
        )
        files[f"{case}/input/question.txt"] = f"what is one more than {number}\n"
        files[f"{case}/expected/answer.txt"] = f"{number + 1}\n"
    for relative, text in files.items():
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    write_digests(directory / CASES)
    return directory


__all__ = ["TIERS_TEMPLATE", "ScaffoldError", "write_task_class", "write_tiers"]
