"""Shapes of the persisted formats (run report, audit record), for drift detection (used by
tests/unit/test_snapshots.py and scripts/regen_snapshots.py).

A shape keeps every key and the JSON type of every value, but no value, so it is stable
across runs; the golden shapes live in ``tests/snapshots/*.v1.json`` and are regenerated
with ``python scripts/regen_snapshots.py``. A format change that consumers would notice
(a key added, removed or retyped) fails the snapshot test with a readable diagnostic.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pytest_codegenie_eval.evidence.aggregate import build_report
from pytest_codegenie_eval.models import CaseResult, FailureMode
from pytest_codegenie_eval.store.audit import write_run_record


def shape(value: Any) -> Any:
    """The structure of a JSON value: dicts keep keys, lists show their element shapes."""
    if isinstance(value, dict):
        return {key: shape(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        shapes: list[Any] = []
        for item in value:
            s = shape(item)
            if s not in shapes:
                shapes.append(s)
        return shapes
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string"


def sample_documents() -> dict[str, Any]:
    """A representative report and audit record, built with the real code paths."""
    results = [
        CaseResult(
            task_class="sample",
            case_id=f"case-{i}",
            score=score,
            passed=score == 1.0,
            breakdown={"KEY": score},
            failure_modes=()
            if score == 1.0
            else (FailureMode(code="x.wrong", severity="block", detail="d"),),
            sut="baseline:baseline_sut.py",
            sut_digest="a" * 64,
            rubric_digest="b" * 64,
            case_digest="c" * 64,
            curation_class="held-out",
            sut_exit_code=0,
        )
        for i, score in enumerate([1.0, 0.5, 1.0, 0.0, 1.0])
    ]
    report = build_report(
        "sample",
        results,
        harness_version="0.0.0",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    with tempfile.TemporaryDirectory() as tmp:
        path, _head = write_run_record(report, Path(tmp))
        record = json.loads((Path(tmp) / "audit.jsonl").read_text().splitlines()[0])
        written = json.loads(path.read_text())
    return {"report": written, "audit_record": record}


def diff_shapes(expected: Any, actual: Any, where: str = "$") -> list[str]:
    """Human-readable differences between two shapes."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = [f"{where}.{k}: removed" for k in sorted(set(expected) - set(actual))]
        out += [f"{where}.{k}: added ({actual[k]!r})" for k in sorted(set(actual) - set(expected))]
        for key in sorted(set(expected) & set(actual)):
            out += diff_shapes(expected[key], actual[key], f"{where}.{key}")
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        out = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=False)):
            out += diff_shapes(e, a, f"{where}[{i}]")
        if len(expected) != len(actual):
            out.append(f"{where}: element shapes {len(expected)} -> {len(actual)}")
        return out
    return [] if expected == actual else [f"{where}: {expected!r} -> {actual!r}"]
