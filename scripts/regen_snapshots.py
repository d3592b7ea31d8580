"""Regenerate tests/snapshots/*.v1.json from the current code (run after an intended
format change, and bump the schema version if consumers must notice)."""

from __future__ import annotations

import json
from pathlib import Path

from pytest_codegenie_eval.snapshots import sample_documents, shape

SNAPSHOTS = Path(__file__).resolve().parent.parent / "tests" / "snapshots"


def main() -> None:
    for name, document in sample_documents().items():
        path = SNAPSHOTS / f"{name}.v1.json"
        path.write_text(json.dumps(shape(document), indent=2, sort_keys=True) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
