"""Recorded evidence and the verdicts drawn from it: the glue between audit chain and gate.

Used at session end (``--codegenie-verdict``) and by ``codegenie-eval promote-verdict``. It
verifies the chain, reads the evidence window of run reports it names, asks the pure gate,
and writes a recommendation file. It never edits the tier configuration.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from pytest_codegenie_eval.evidence.promotion import PromotionGate
from pytest_codegenie_eval.evidence.tiers import load_tier_config
from pytest_codegenie_eval.models import BenchRunReport, PromotionVerdict
from pytest_codegenie_eval.registry import TaskClass
from pytest_codegenie_eval.store.audit import VerifyResult, recorded, verify
from pytest_codegenie_eval.store.statedir import StateDir, atomic_write

RECOMMENDATION_NOTE = (
    "read-only: current_tiers is never changed by the harness; "
    "a human must edit docs/trust-tiers.yaml"
)

_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._+-]")


@dataclass(frozen=True)
class Evidence:
    """Reports of one task class named by the chain, oldest first, with their digests."""

    reports: tuple[BenchRunReport, ...]
    digests: tuple[str, ...]


def counts_as_evidence(kind: object, report: BenchRunReport) -> bool:
    """Whether a recorded report is a run: a repair note is not, and a shard is a part of a
    run, never evidence alone (the merged record stands for it)."""
    return kind not in ("repair", "shard") and report.shard is None


def recorded_evidence(state_dir: Path, task_class: str) -> Evidence:
    """Every run report of ``task_class`` that the audit chain names, in chain order
    (shard reports left out: ``codegenie-eval merge`` records the run they are parts of)."""
    reports: list[BenchRunReport] = []
    digests: list[str] = []
    for record in recorded(state_dir):
        if record.get("task_class") != task_class or record.get("kind") == "repair":
            continue  # a repair's report is its note, not a run report
        path = state_dir / str(record.get("report_path", ""))
        try:
            report = BenchRunReport.model_validate_json(path.read_bytes())
        except (OSError, ValidationError):
            continue
        if not counts_as_evidence(record.get("kind"), report):
            continue
        reports.append(report)
        digests.append(str(record.get("report_digest", "")))
    return Evidence(tuple(reports), tuple(digests))


@dataclass(frozen=True)
class _Window:
    gate: PromotionGate
    reports: tuple[BenchRunReport, ...]
    digests: tuple[str, ...]
    chain_verified: bool
    chain_head: str | None


def _window(
    state_dir: Path, tiers_path: Path, task_class: TaskClass, check: VerifyResult | None
) -> _Window:
    """Load the tiers, verify the chain (unless ``check`` is that verification, already
    made) and cut the task class's evidence window."""
    gate = PromotionGate(load_tier_config(tiers_path))
    evidence = recorded_evidence(state_dir, task_class.name)
    return _cut(gate, evidence, check or verify(state_dir), task_class)


def _cut(
    gate: PromotionGate, evidence: Evidence, check: VerifyResult, task_class: TaskClass
) -> _Window:
    reports = gate.evidence_window(evidence.reports, task_class=task_class.name)
    digests = evidence.digests[-len(reports) :] if reports else ()
    return _Window(gate, reports, digests, check.ok, check.head)


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
) -> tuple[PromotionVerdict | None, Path | None]:
    """The verdict for ``tier`` (or the best tier above the current one) and its file;
    ``check`` is the chain's verification when the caller has made it already.

    A recommendation is written whenever a tier is asked for, or when the evidence is
    sufficient for a tier above the task class's current one.
    """
    if tier is not None:
        verdict = evaluate_recorded(
            state_dir=state_dir,
            tiers_path=tiers_path,
            task_class=task_class,
            tier=tier,
            check=check,
        )
        return verdict, write_recommendation(verdict, state_dir)
    w = _window(state_dir, tiers_path, task_class, check)
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


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        # A naive time would be silently read as local time and misname the file.
        raise ValueError("write_recommendation needs a timezone-aware datetime for now")
    return now.astimezone(UTC)


def write_recommendation(
    verdict: PromotionVerdict, state_dir: Path, *, now: datetime | None = None
) -> Path:
    """Write *verdict* as a promotion recommendation JSON and return its path.

    The file goes to ``state_dir/recommendations/<YYYYmmddTHHMMSSZ>-<task_class>-<tier>.json``
    (``-2``, ``-3``… before ``.json`` when that name exists: a recommendation is never
    overwritten). It is written to a temporary file in the same directory and moved into
    place with :func:`os.replace`, so a reader never sees half a file. Nothing else is
    touched: in particular never the tier config, whose ``current_tiers`` only a human edits.
    """
    moment = _utc(now)
    directory = StateDir(state_dir).recommendations
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "schema_version": 1,
        "kind": "promotion-recommendation",
        "created_at": moment.isoformat(timespec="seconds"),
        "verdict": verdict.model_dump(mode="json"),
        "note": RECOMMENDATION_NOTE,
    }
    text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    task_class = _UNSAFE_NAME_CHARS.sub("_", verdict.task_class)
    tier = _UNSAFE_NAME_CHARS.sub("_", verdict.tier)
    stem = f"{moment.strftime('%Y%m%dT%H%M%SZ')}-{task_class}-{tier}"

    # Only the session controller writes recommendations, so checking for a free name
    # and then writing to it does not race with another writer.
    target = directory / f"{stem}.json"
    counter = 2
    while target.exists():
        target = directory / f"{stem}-{counter}.json"
        counter += 1
    atomic_write(target, text.encode("utf-8"))
    return target
