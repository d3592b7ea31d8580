"""What ``--junitxml`` shows of a bench run: a case as ``classname=<task class>`` (not a
path ending in ``case.toml``), and each task class's aggregate as ``<testsuite>``
properties, which GitLab and Jenkins show. The one module that touches pytest's junitxml
plugin; it does nothing when ``--junitxml`` is not given."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from pytest_codegenie_eval.models import BenchRunReport, PromotionVerdict


def _xml(config: pytest.Config) -> Any:
    from _pytest.junitxml import xml_key

    return config.stash.get(xml_key, None)


def name_case(config: pytest.Config, report: pytest.TestReport, *, task_class: str) -> None:
    """Record a case item's test case under its task class (before junitxml records it)."""
    xml = _xml(config)
    if xml is not None:
        xml.node_reporter(report).add_attribute("classname", task_class)


def suite_properties(
    runs: Iterable[tuple[BenchRunReport, str | None, PromotionVerdict | None]],
) -> list[tuple[str, object]]:
    """``codegenie.<task class>.<field>`` properties of each (report, chain head, verdict)."""
    found: list[tuple[str, object]] = []
    for r, chain_head, verdict in runs:
        prefix = f"codegenie.{r.task_class}."
        values: dict[str, object] = {
            "cases": r.n,
            "passed": r.passed_count,
            "mean": f"{r.mean:.6f}",
            "lower_bound_95": f"{r.lower_bound_95:.6f}",
            "bound_method": r.bound.method,
            "complete": str(r.complete).lower(),
            "run_id": r.run_id,
            "chain_head": chain_head or "",
        }
        if verdict is not None:
            outcome = "sufficient" if verdict.evidence_sufficient else "insufficient"
            values["verdict"] = f"{verdict.tier}: {outcome}"
        found += [(prefix + name, value) for name, value in values.items()]
    return found


def add_suite_properties(config: pytest.Config, properties: list[tuple[str, object]]) -> None:
    """Add the properties to the ``<testsuite>`` junitxml writes (before it writes)."""
    xml = _xml(config)
    if xml is not None:
        for name, value in properties:
            xml.add_global_property(name, value)
