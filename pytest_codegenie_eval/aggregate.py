"""From per-case results to one BenchRunReport per task class (controller side).

The run id is derived from the content of the results, never from a clock, so two runs with
identical inputs get the same id, the same bootstrap seed and byte-identical bounds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

import blake3

from pytest_codegenie_eval.models import PARTIAL_PREFIX, BenchRunReport, BoundInfo, CaseResult
from pytest_codegenie_eval.stats import Welford, lower_bound_95, seed_from_run_id


def content_run_id(task_class: str, results: Iterable[CaseResult], *, complete: bool) -> str:
    """BLAKE3 over what the run measured: task class, and per case its inputs and score."""
    material = [
        {
            "case_id": r.case_id,
            "case_digest": r.case_digest,
            "sut_digest": r.sut_digest,
            "rubric_digest": r.rubric_digest,
            "status": r.status,
            "score": r.score.hex(),
            "passed": r.passed,
            "failure_modes": sorted(fm.code for fm in r.failure_modes),
        }
        for r in sorted(results, key=lambda r: r.case_id)
    ]
    body = json.dumps({"task_class": task_class, "cases": material}, sort_keys=True)
    digest = str(blake3.blake3(body.encode("utf-8")).hexdigest())
    return digest if complete else PARTIAL_PREFIX + digest


def _single(values: set[str]) -> str:
    return next(iter(values)) if len(values) == 1 else ("mixed" if values else "")


def build_report(
    task_class: str,
    results: Iterable[CaseResult],
    *,
    harness_version: str,
    created_at: datetime | None = None,
    cases_total: int | None = None,
) -> BenchRunReport:
    """Aggregate one task class's case results (any order) into its run report.

    ``cases_total`` is how many cases the task class has; a run covering fewer (``-k``, a
    node id) is incomplete as evidence, like one stopped by the cost cap.
    """
    ordered = sorted(results, key=lambda r: r.case_id)
    scored = [r for r in ordered if r.status != "skipped_cost_cap"]
    skipped = len(ordered) - len(scored)
    total = cases_total if cases_total is not None else len(ordered)
    reason: Literal["cost_cap", "subset"] | None = None
    if skipped:
        reason = "cost_cap"
    elif len(ordered) < total:
        reason = "subset"
    complete = reason is None
    run_id = content_run_id(task_class, ordered, complete=complete)
    acc = Welford()
    for r in scored:
        acc.add(r.score)
    bound = lower_bound_95(
        [r.score for r in scored],
        seed=seed_from_run_id(run_id),
        passed=[r.passed for r in scored],
    )
    when = (created_at or datetime.now(UTC)).astimezone(UTC)
    return BenchRunReport(
        run_id=run_id,
        task_class=task_class,
        created_at=when.isoformat(),
        harness_version=harness_version,
        sut=_single({r.sut for r in scored if r.sut}),
        sut_digest=_single({r.sut_digest for r in scored if r.sut_digest}),
        rubric_digest=_single({r.rubric_digest for r in scored if r.rubric_digest}),
        sut_isolation=_single({r.sut_isolation for r in scored if r.sut_isolation}),
        sut_network=_single({r.sut_network for r in scored if r.sut_network}),
        rubric_isolation=_single({r.rubric_isolation for r in scored if r.rubric_isolation}),
        complete=complete,
        incomplete_reason=reason,
        cases_total=total,
        n=len(scored),
        passed_count=sum(1 for r in scored if r.passed),
        mean=min(1.0, max(0.0, acc.mean)) if scored else 0.0,
        stddev=acc.stddev if scored else 0.0,
        lower_bound_95=bound.value,
        bound=BoundInfo(
            method=bound.method,
            lower_bound_95=bound.value,
            level=0.95,
            resamples=bound.resamples,
            seed=bound.seed,
            z0=bound.z0,
            acceleration=bound.acceleration,
            tie_rule=bound.tie_rule,
            note=bound.note,
            bca_lower_bound=bound.bca,
            valid_lower_bound=bound.valid,
            valid_method=bound.valid_method,
        ),
        total_cost_usd=sum(r.cost_usd for r in ordered),
        cache_hits=sum(1 for r in ordered if r.cached),
        skipped_count=skipped,
        block_failure_count=sum(len(r.block_failures) for r in scored),
        cases=tuple(ordered),
    )
