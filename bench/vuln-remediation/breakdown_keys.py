"""The only breakdown keys the vuln-remediation rubric may emit (docs/bench-authoring.md)."""

from __future__ import annotations

from enum import StrEnum


class BreakdownKey(StrEnum):
    """Score components of a vulnerability remediation; weights live in rubric.py."""

    VULN_RESOLVED = "VULN_RESOLVED"
    MINIMAL_UPGRADE = "MINIMAL_UPGRADE"
    NO_COLLATERAL_CHANGES = "NO_COLLATERAL_CHANGES"
    MANIFEST_VALID = "MANIFEST_VALID"
    LOCKFILE_CONSISTENT = "LOCKFILE_CONSISTENT"
