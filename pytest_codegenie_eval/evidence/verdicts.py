"""Recorded evidence and the verdicts drawn from it: the glue between audit chain and gate.

Used at session end (``--codegenie-verdict``) and by ``codegenie-eval promote-verdict``. It
verifies the chain, reads the evidence window of run reports it names, asks the pure gate,
and writes a recommendation file (through ``store/``, which owns the state directory). It
never edits the tier configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pytest_codegenie_eval.errors import RecommendationNotWritten
from pytest_codegenie_eval.evidence.promotion import PromotionGate, same_measurement
from pytest_codegenie_eval.evidence.tiers import load_tier_config
from pytest_codegenie_eval.models import BenchRunReport, PromotionVerdict
from pytest_codegenie_eval.registry import TaskClass
from pytest_codegenie_eval.store.audit import VerifyResult, verify
from pytest_codegenie_eval.store.recommendations import write_recommendation
from pytest_codegenie_eval.store.reports import Evidence
from pytest_codegenie_eval.store.reports import evidence as recorded_evidence


@dataclass(frozen=True)
class _Window:
    gate: PromotionGate
    reports: tuple[BenchRunReport, ...]
    digests: tuple[str, ...]
    chain_verified: bool
    chain_head: str | None
    pooled: tuple[BenchRunReport, ...] = ()  # earlier runs of the same agent and bench
    pooled_digests: tuple[str, ...] = ()


def _window(
    state_dir: Path, tiers_path: Path, task_class: TaskClass, check: VerifyResult | None
) -> _Window:
    """Load the tiers, verify the chain (unless ``check`` is that verification, already
    made) and cut the task class's evidence window."""
    gate = PromotionGate(load_tier_config(tiers_path))
    found = recorded_evidence(state_dir, task_class.name)
    return _cut(gate, found, check or verify(state_dir), task_class)


def _cut(
    gate: PromotionGate, evidence: Evidence, check: VerifyResult, task_class: TaskClass
) -> _Window:
    reports = gate.evidence_window(evidence.reports, task_class=task_class.name)
    digests = evidence.digests[-len(reports) :] if reports else ()
    earlier = list(zip(evidence.reports, evidence.digests, strict=True))[: -len(reports) or None]
    pooled = (
        [(r, d) for r, d in earlier if reports and same_measurement(r, reports[-1])]
        if reports
        else []
    )
    return _Window(
        gate,
        reports,
        digests,
        check.ok,
        check.head,
        tuple(r for r, _ in pooled),
        tuple(d for _, d in pooled),
    )


def judge(
    *,
    gate: PromotionGate,
    evidence: Evidence,
    check: VerifyResult,
    task_class: TaskClass,
    tier: str,
) -> PromotionVerdict:
    """Judge evidence already read (and the chain check already made) for ``tier``: what
    :func:`evaluate_recorded` does after reading, for a caller that has read it (the
    results page)."""
    w = _cut(gate, evidence, check, task_class)
    return w.gate.evaluate(
        task_class=task_class,
        tier=tier,
        reports=w.reports,
        chain_verified=w.chain_verified,
        chain_head=w.chain_head,
        report_digests=w.digests,
        pooled=w.pooled,
        pooled_digests=w.pooled_digests,
    )


def evaluate_recorded(
    *,
    state_dir: Path,
    tiers_path: Path,
    task_class: TaskClass,
    tier: str,
    check: VerifyResult | None = None,
) -> PromotionVerdict:
    """Verify the chain (unless ``check`` is that verification, already made) and judge the
    task class's evidence window for ``tier``."""
    return judge(
        gate=PromotionGate(load_tier_config(tiers_path)),
        evidence=recorded_evidence(state_dir, task_class.name),
        check=check or verify(state_dir),
        task_class=task_class,
        tier=tier,
    )


def recommend(
    *,
    state_dir: Path,
    tiers_path: Path,
    task_class: TaskClass,
    tier: str | None,
    check: VerifyResult | None = None,
) -> Recommendation:
    """The verdict for ``tier`` (or the best tier above the current one) and its file;
    ``check`` is the chain's verification when the caller has made it already.

    A recommendation is written whenever a tier is asked for, or when the evidence is
    sufficient for a tier above the task class's current one. A state directory that
    cannot be written (read-only, full) keeps the verdict: ``not_written`` says why there
    is no file.
    """
    if tier is not None:
        verdict = evaluate_recorded(
            state_dir=state_dir,
            tiers_path=tiers_path,
            task_class=task_class,
            tier=tier,
            check=check,
        )
        return _written(verdict, state_dir)
    w = _window(state_dir, tiers_path, task_class, check)
    best = w.gate.recommendation(
        task_class=task_class,
        reports=w.reports,
        chain_verified=w.chain_verified,
        chain_head=w.chain_head,
        report_digests=w.digests,
        pooled=w.pooled,
        pooled_digests=w.pooled_digests,
    )
    if best is None:
        return Recommendation(None, None)
    return _written(best, state_dir)


class Recommendation(NamedTuple):
    """A verdict, the recommendation file written for it, or why none could be."""

    verdict: PromotionVerdict | None
    path: Path | None
    not_written: str | None = None


def _written(verdict: PromotionVerdict, state_dir: Path) -> Recommendation:
    try:
        return Recommendation(verdict, write_recommendation(verdict, state_dir))
    except RecommendationNotWritten as exc:
        return Recommendation(verdict, None, str(exc))
