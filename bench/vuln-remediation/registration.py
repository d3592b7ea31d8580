"""Registration of the ``vuln-remediation`` task class (docs/bench-authoring.md)."""

from __future__ import annotations

from pytest_codegenie_eval import register_task_class


@register_task_class("vuln-remediation", min_cases_for_promotion={"bronze": 10, "silver": 25})
class VulnRemediation:
    """Fix one published advisory (OSV record) with the smallest dependency upgrade.

    The agent gets a project snapshot (npm ``package.json`` + ``package-lock.json`` or PyPI
    ``requirements.txt`` / ``pyproject.toml``) and the advisory in ``advisory.json``; the
    rubric checks with real version semantics that the vulnerable package no longer
    resolves to an affected version, that the upgrade is the minimal one on the pinned
    release line, that nothing else changed and that the lockfile is still in sync.
    """

    baseline_sut = "baseline_sut.py"
