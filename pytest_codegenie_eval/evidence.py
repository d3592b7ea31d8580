"""Recorded evidence and the verdicts drawn from it: the glue between audit chain and gate.

Used at session end (``--codegenie-verdict``) and by ``codegenie-eval promote-verdict``. It
verifies the chain, reads the evidence window of run reports it names, asks the pure gate,
and writes a recommendation file. It never edits the tier configuration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from pytest_codegenie_eval.audit import AUDIT_FILE, verify
from pytest_codegenie_eval.models import BenchRunReport, PromotionVerdict
from pytest_codegenie_eval.promotion import PromotionGate, write_recommendation
from pytest_codegenie_eval.registry import TaskClass
from pytest_codegenie_eval.tiers import load_tier_config


@dataclass(frozen=True)
class Evidence:
    """Reports of one task class named by the chain, oldest first, with their digests."""

    reports: tuple[BenchRunReport, ...]
    digests: tuple[str, ...]


def recorded_evidence(state_dir: Path, task_class: str) -> Evidence:
    """Every report of ``task_class`` that the audit chain names, in chain order."""
    chain = state_dir / AUDIT_FILE
    if not chain.exists():
        return Evidence((), ())
    reports: list[BenchRunReport] = []
    digests: list[str] = []
    for line in chain.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # verify() reports it; evidence simply does not include it
        if not isinstance(record, dict) or record.get("task_class") != task_class:
            continue
        path = state_dir / str(record.get("report_path", ""))
        try:
            reports.append(BenchRunReport.model_validate_json(path.read_bytes()))
        except (OSError, ValidationError):
            continue
        digests.append(str(record.get("report_digest", "")))
    return Evidence(tuple(reports), tuple(digests))


@dataclass(frozen=True)
class _Window:
    gate: PromotionGate
    reports: tuple[BenchRunReport, ...]
    digests: tuple[str, ...]
    chain_verified: bool
    chain_head: str | None


def _window(state_dir: Path, tiers_path: Path, task_class: TaskClass) -> _Window:
    """Load the tiers, verify the chain and cut the task class's evidence window."""
    gate = PromotionGate(load_tier_config(tiers_path))
    check = verify(state_dir)
    evidence = recorded_evidence(state_dir, task_class.name)
    reports = gate.evidence_window(evidence.reports, task_class=task_class.name)
    digests = evidence.digests[-len(reports) :] if reports else ()
    return _Window(gate, reports, digests, check.ok, check.head)


def evaluate_recorded(
    *, state_dir: Path, tiers_path: Path, task_class: TaskClass, tier: str
) -> PromotionVerdict:
    """Verify the chain and judge the task class's evidence window for ``tier``."""
    w = _window(state_dir, tiers_path, task_class)
    return w.gate.evaluate(
        task_class=task_class,
        tier=tier,
        reports=w.reports,
        chain_verified=w.chain_verified,
        chain_head=w.chain_head,
        report_digests=w.digests,
    )


def recommend(
    *,
    state_dir: Path,
    tiers_path: Path,
    task_class: TaskClass,
    tier: str | None,
) -> tuple[PromotionVerdict | None, Path | None]:
    """The verdict for ``tier`` (or the best tier above the current one) and its file.

    A recommendation is written whenever a tier is asked for, or when the evidence is
    sufficient for a tier above the task class's current one.
    """
    if tier is not None:
        verdict = evaluate_recorded(
            state_dir=state_dir, tiers_path=tiers_path, task_class=task_class, tier=tier
        )
        return verdict, write_recommendation(verdict, state_dir)
    w = _window(state_dir, tiers_path, task_class)
    best = w.gate.recommendation(
        task_class=task_class,
        reports=w.reports,
        chain_verified=w.chain_verified,
        chain_head=w.chain_head,
        report_digests=w.digests,
    )
    if best is None:
        return None, None
    return best, write_recommendation(best, state_dir)
