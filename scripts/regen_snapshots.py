"""Regenerate tests/snapshots/*.v1.json from the current code (run after an intended
format change, and bump the schema version if consumers must notice)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the shapes live with the tests that check them

from tests.snapshot_shapes import sample_documents, shape  # noqa: E402

SNAPSHOTS = REPO / "tests" / "snapshots"


def main() -> None:
    for name, document in sample_documents().items():
        path = SNAPSHOTS / f"{name}.v1.json"
        path.write_text(json.dumps(shape(document), indent=2, sort_keys=True) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
