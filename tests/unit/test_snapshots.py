"""Golden shapes of the run report and the audit record: drift fails with a diagnostic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.snapshot_shapes import diff_shapes, sample_documents, shape

SNAPSHOTS = Path(__file__).resolve().parent.parent / "snapshots"


@pytest.mark.parametrize("name", ["report", "audit_record"])
def test_shape_matches_golden_snapshot(name: str) -> None:
    golden = json.loads((SNAPSHOTS / f"{name}.v1.json").read_text())
    actual = shape(sample_documents()[name])
    drift = diff_shapes(golden, actual)
    assert not drift, (
        f"{name} format drifted from tests/snapshots/{name}.v1.json:\n  "
        + "\n  ".join(drift)
        + "\nIf intended, run `python scripts/regen_snapshots.py` and review the diff."
    )


def test_diagnostic_names_added_removed_and_retyped_keys() -> None:
    old = {"a": "number", "b": "string", "c": {"d": "boolean"}}
    new = {"a": "string", "c": {"d": "boolean", "e": "null"}, "f": "number"}
    assert diff_shapes(old, new) == [
        "$.b: removed",
        "$.f: added ('number')",
        "$.a: 'number' -> 'string'",
        "$.c.e: added ('null')",
    ]


def test_sample_report_is_deterministic() -> None:
    first, second = sample_documents(), sample_documents()
    assert first["report"] == second["report"]
    bound = first["report"]["bound"]
    assert bound["method"] in ("bca", "betting")
    assert bound["bca_lower_bound"] is not None
    assert bound["lower_bound_95"] == min(bound["bca_lower_bound"], bound["valid_lower_bound"])
