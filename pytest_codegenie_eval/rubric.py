"""The rubric side of the protocol: what a task class's ``rubric.py`` imports.

A rubric runs as ``python -I rubric.py`` in a scrubbed subprocess; it reads one JSON object
on stdin and prints one BenchScore JSON on stdout. This module is deliberately light (stdlib
only, no pydantic) because it is imported once per case, inside the subprocess::

    from pytest_codegenie_eval.rubric import CaseInfo, HarnessOutput, serve

    def score(case: CaseInfo, out: HarnessOutput) -> dict:
        return {"score": 1.0, "breakdown": {"VULN_RESOLVED": 1.0}, "failure_modes": []}

    if __name__ == "__main__":
        serve(score)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pytest_codegenie_eval.models import BenchScore

__all__ = ["CaseInfo", "HarnessOutput", "Rubric", "ScoreResult", "parse_request", "serve"]

ScoreResult = Mapping[str, Any]


@dataclass(frozen=True)
class CaseInfo:
    """The case as the rubric sees it (fields of case.toml plus its directory)."""

    case_id: str
    case_dir: Path
    title: str = ""
    curation_class: str = ""
    pass_threshold: float = 1.0
    metadata: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def input_dir(self) -> Path:
        return self.case_dir / "input"

    @property
    def expected_dir(self) -> Path:
        return self.case_dir / "expected"


@dataclass(frozen=True)
class HarnessOutput:
    """What the harness observed of the SUT's run."""

    workspace: Path
    diff: str = ""
    sut_exit_code: int | None = 0
    stdout_tail: str = ""
    stderr_tail: str = ""
    cost_usd: float = 0.0
    duration_s: float = 0.0


@runtime_checkable
class Rubric(Protocol):
    """Anything with ``score(case, harness_output)`` returning a BenchScore or a mapping."""

    def score(self, case: CaseInfo, harness_output: HarnessOutput) -> BenchScore | ScoreResult:
        """Score one case from the SUT's workspace."""


def parse_request(payload: Mapping[str, Any]) -> tuple[CaseInfo, HarnessOutput]:
    """Turn the stdin JSON object of the protocol into typed views."""
    case = payload["case"]
    out = payload["harness_output"]
    info = CaseInfo(
        case_id=str(case["case_id"]),
        case_dir=Path(payload["case_dir"]),
        title=str(case.get("title", "")),
        curation_class=str(case.get("curation_class", "")),
        pass_threshold=float(case.get("pass_threshold", 1.0)),
        metadata=dict(case.get("metadata") or {}),
        raw=dict(case),
    )
    harness = HarnessOutput(
        workspace=Path(out["workspace"]),
        diff=str(out.get("diff", "")),
        sut_exit_code=out.get("sut_exit_code"),
        stdout_tail=str(out.get("stdout_tail", "")),
        stderr_tail=str(out.get("stderr_tail", "")),
        cost_usd=float(out.get("cost_usd", 0.0)),
        duration_s=float(out.get("duration_s", 0.0)),
    )
    return info, harness


def _to_mapping(result: object) -> dict[str, Any]:
    dump = getattr(result, "model_dump", None)
    if callable(dump):
        dumped = dump(mode="json")
        if isinstance(dumped, dict):
            return dumped
    if isinstance(result, Mapping):
        return dict(result)
    raise TypeError(f"a rubric must return a mapping or a BenchScore, got {type(result).__name__}")


def serve(
    rubric: Rubric | Callable[[CaseInfo, HarnessOutput], BenchScore | ScoreResult],
) -> None:
    """Read the request on stdin, score it, print the BenchScore JSON on stdout.

    ``case_id`` is filled in when the rubric leaves it out. Exceptions propagate: the
    harness turns a non-zero exit or anything but one JSON object into
    ``rubric.malformed_output``.
    """
    payload = json.load(sys.stdin)
    case, harness = parse_request(payload)
    fn = rubric.score if isinstance(rubric, Rubric) else rubric
    result = _to_mapping(fn(case, harness))
    result.setdefault("case_id", case.case_id)
    sys.stdout.write(json.dumps(result, sort_keys=True))
    sys.stdout.write("\n")
    sys.stdout.flush()
