"""Promotion recommendations in ``<state dir>/recommendations/``: written at session end or
by ``codegenie-eval promote-verdict``, read by the results page.

A recommendation is advice for a human: nothing here ever edits the tier configuration.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from pytest_codegenie_eval.errors import RecommendationNotWritten
from pytest_codegenie_eval.fsutil import name_part
from pytest_codegenie_eval.models import PromotionVerdict
from pytest_codegenie_eval.store.statedir import StateDir, unique_name_order, write_unique

RECOMMENDATION_NOTE = (
    "read-only: current_tiers is never changed by the harness; "
    "a human must edit docs/trust-tiers.yaml"
)


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
    overwritten, not even by another session writing in the same second). A reader never
    sees half a file. Raises :class:`RecommendationNotWritten` when the directory cannot be
    written (full, read-only). Nothing else is
    touched: in particular never the tier config, whose ``current_tiers`` only a human edits.
    """
    moment = _utc(now)
    directory = StateDir(state_dir).recommendations
    payload = {
        "schema_version": 1,
        "kind": "promotion-recommendation",
        "created_at": moment.isoformat(timespec="seconds"),
        "verdict": verdict.model_dump(mode="json"),
        "note": RECOMMENDATION_NOTE,
    }
    text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    task_class = name_part(verdict.task_class, fallback="task")
    tier = name_part(verdict.tier, fallback="tier")
    stem = f"{moment.strftime('%Y%m%dT%H%M%SZ')}-{task_class}-{tier}"

    # Claiming the name and writing the file is one step, so two sessions that judge in the
    # same second never overwrite each other's recommendation.
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return write_unique(directory, stem, ".json", text.encode("utf-8"))
    except OSError as exc:
        raise RecommendationNotWritten(directory, exc.strerror or str(exc)) from exc


def recommendations(state_dir: Path) -> Iterator[tuple[str, PromotionVerdict]]:
    """Every recommendation file that holds a verdict, newest first, with its file name
    (files that cannot be read or hold no verdict are passed over: a recommendation is not
    chained, and the page shows one only when it matches the chain)."""
    folder = StateDir(state_dir).recommendations
    try:
        names = unique_name_order((p.name for p in folder.glob("*.json")), ".json")[::-1]
    except OSError:
        return
    for name in names:
        try:
            payload = json.loads((folder / name).read_bytes())
            verdict = PromotionVerdict.model_validate(payload.get("verdict"))
        except (OSError, ValueError, AttributeError):  # ValidationError is a ValueError
            continue
        yield name, verdict


__all__ = ["RECOMMENDATION_NOTE", "recommendations", "write_recommendation"]
