"""From per-case results to one BenchRunReport per task class (controller side).

The run id is derived from the content of the results, never from a clock, so two runs with
identical inputs get the same id, the same bootstrap seed and byte-identical bounds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

from pytest_codegenie_eval.codes import INFRASTRUCTURE
from pytest_codegenie_eval.evidence.shards import shard_case_ids
from pytest_codegenie_eval.evidence.stats import (
    ScoreKind,
    Welford,
    lower_bound_95,
    seed_from_bench,
)
from pytest_codegenie_eval.hashing import blake3_hex
from pytest_codegenie_eval.models import (
    PARTIAL_PREFIX,
    BenchRunReport,
    BoundInfo,
    CaseRepeats,
    CaseResult,
    MergedShard,
    ShardInfo,
)


def content_run_id(task_class: str, results: Iterable[CaseResult], *, complete: bool) -> str:
    """BLAKE3 over what the run measured: task class, and per case its inputs and score."""
    material = [
        {
            "case_id": r.case_id,
            # an unrepeated run's material is as it always was, so its run id is unchanged
            **({"repeat": r.repeat} if r.repeat != 1 else {}),
            "case_digest": r.case_digest,
            "sut_digest": r.sut_digest,
            "rubric_digest": r.rubric_digest,
            "status": r.status,
            "score": r.score.hex(),
            "passed": r.passed,
            "failure_modes": sorted(fm.code for fm in r.failure_modes),
        }
        for r in sorted(results, key=lambda r: (r.case_id, r.repeat))
    ]
    body = json.dumps({"task_class": task_class, "cases": material}, sort_keys=True)
    digest = blake3_hex(body.encode("utf-8"))
    return digest if complete else PARTIAL_PREFIX + digest


def _single(values: set[str]) -> str:
    return next(iter(values)) if len(values) == 1 else ("mixed" if values else "")


def attempts_by_case(results: Iterable[CaseResult]) -> dict[str, list[CaseResult]]:
    """case_id -> its scored attempts, r1 first (attempts the cost cap skipped are not
    scores and are left out); what the report, its bound and ``compare`` all pair on."""
    by_case: dict[str, list[CaseResult]] = {}
    for r in results:
        if r.status != "skipped_cost_cap":
            by_case.setdefault(r.case_id, []).append(r)
    for attempts in by_case.values():
        attempts.sort(key=lambda r: r.repeat)
    return by_case


def case_mean(attempts: list[CaseResult]) -> float:
    """A case's score: the mean of its attempts (the case is the unit, ADR 0016)."""
    return sum(r.score for r in attempts) / len(attempts)


def case_passed(attempts: list[CaseResult]) -> bool:
    """A case passes only when every attempt passed (ADR 0016)."""
    return all(r.passed for r in attempts)


def _repeat_stats(by_case: dict[str, list[CaseResult]], repeats: int) -> dict[str, object]:
    """pass@1, pass@K (Chen et al. 2021, unbiased), pass^K (all K attempts, as in
    tau-bench), the mean within-case variance and the per-case summaries. A case with fewer
    than K attempts (stopped by the cost cap) enters pass@1 and the variance only."""
    summaries = []
    at_1: list[float] = []
    at_k: list[float] = []
    hat_k: list[float] = []
    variances: list[float] = []
    for case_id in sorted(by_case):
        attempts = by_case[case_id]
        n = len(attempts)
        c = sum(1 for r in attempts if r.passed)
        acc = Welford()  # for the variance; the case's score is case_mean, as in the bound
        for r in attempts:
            acc.add(r.score)
        at_1.append(c / n)
        if n >= repeats:
            at_k.append(1.0 - math.comb(n - c, repeats) / math.comb(n, repeats))
            hat_k.append(math.comb(c, repeats) / math.comb(n, repeats))
        if n >= 2:
            variances.append(acc.stddev**2)
        summaries.append(
            CaseRepeats(
                case_id=case_id,
                scores=tuple(r.score for r in attempts),
                passes=c,
                mean=min(1.0, max(0.0, case_mean(attempts))),
                passed=case_passed(attempts),
            )
        )
    return {
        "pass_at_1": sum(at_1) / len(at_1) if at_1 else None,
        "pass_at_k": sum(at_k) / len(at_k) if at_k else None,
        "pass_hat_k": sum(hat_k) / len(hat_k) if hat_k else None,
        "within_case_variance": sum(variances) / len(variances) if variances else None,
        "case_repeats": tuple(summaries),
    }


def build_report(
    task_class: str,
    results: Iterable[CaseResult],
    *,
    harness_version: str,
    created_at: datetime | None = None,
    cases_total: int | None = None,
    repeats: int = 1,
    shard: ShardInfo | None = None,
    merged_from: tuple[MergedShard, ...] = (),
    scores: ScoreKind = "graded",
) -> BenchRunReport:
    """Aggregate one task class's case results (any order) into its run report.

    ``scores`` is what the task class declares its rubric's scores to be; it chooses the
    gate's bound: Clopper-Pearson on the passes of a pass/fail task class run once per case,
    the betting bound on the per-case means otherwise (a pass/fail case repeated K times has
    a mean that is a fraction). The betting order's seed comes from the bench: the task
    class, its cases and the repeat count (:func:`~.stats.seed_from_bench`).

    ``cases_total`` is how many cases the task class has; a run covering fewer (``-k``, a
    node id) is incomplete as evidence, like one stopped by the cost cap. With ``repeats``
    K > 1 the case is the unit (Miller, "Adding Error Bars to Evals", 2024): each case's
    attempts are averaged, the mean and the bound are over those per-case means (so the
    bootstrap resamples cases, never attempts), and a case counts as passed only when all
    its attempts passed (docs/adr/0016-repeats-per-case.md). A run missing an attempt of
    some case is a subset too.

    With ``shard`` (``--codegenie-shard=I/N``) the report is one part of a run: whole when
    every case of its shard ran (``incomplete_reason`` "shard", for ``codegenie-eval merge``
    to join), a subset or cost-capped otherwise.

    A run in which some attempt's model calls failed upstream (``gateway.upstream_error``)
    did not measure the agent on every case: ``incomplete_reason`` "infrastructure". One in
    which the harness could not keep part of what it measured (``harness_errors``: a full
    or read-only disk) keeps its scores but is "harness_write".
    """
    ordered = sorted(results, key=lambda r: (r.case_id, r.repeat))
    scored = [r for r in ordered if r.status != "skipped_cost_cap"]
    skipped = len(ordered) - len(scored)
    total = cases_total if cases_total is not None else len({r.case_id for r in ordered})
    if shard is not None:
        total = len(shard.cases)
        wanted = len(shard_case_ids(shard))
    else:
        wanted = total
    attempts_per_case: dict[str, int] = {}
    for r in ordered:
        attempts_per_case[r.case_id] = attempts_per_case.get(r.case_id, 0) + 1
    infrastructure = sum(
        1 for r in scored if any(fm.code in INFRASTRUCTURE for fm in r.failure_modes)
    )
    harness_write = sum(1 for r in scored if r.harness_errors)
    reason: Literal["cost_cap", "subset", "shard", "infrastructure", "harness_write"] | None = None
    if skipped:
        reason = "cost_cap"
    elif len(attempts_per_case) < wanted or any(
        count < repeats for count in attempts_per_case.values()
    ):
        reason = "subset"
    elif infrastructure:
        reason = "infrastructure"
    elif harness_write:
        reason = "harness_write"
    elif shard is not None:
        reason = "shard"
    complete = reason is None
    run_id = content_run_id(task_class, ordered, complete=complete)
    by_case = attempts_by_case(scored)
    case_ids = sorted(by_case)
    case_means = [case_mean(by_case[case_id]) for case_id in case_ids]
    passed_flags = [case_passed(by_case[case_id]) for case_id in case_ids]
    acc = Welford()
    for value in case_means:
        acc.add(value)
    seed = seed_from_bench(task_class, (r.case_id for r in ordered), repeats)
    if scores == "pass_fail" and repeats == 1:
        bound = lower_bound_95(
            [1.0 if flag else 0.0 for flag in passed_flags], seed=seed, kind="pass_fail"
        )
    else:
        bound = lower_bound_95(case_means, seed=seed, kind="graded")
    extra: dict[str, object] = {}
    if repeats > 1:
        extra = _repeat_stats(by_case, repeats)
    clustered_se = acc.stddev / math.sqrt(len(case_means)) if len(case_means) >= 2 else None
    when = (created_at or datetime.now(UTC)).astimezone(UTC)
    return BenchRunReport.model_validate(
        {
            "run_id": run_id,
            "task_class": task_class,
            "created_at": when.isoformat(),
            "harness_version": harness_version,
            "sut": _single({r.sut for r in scored if r.sut}),
            "sut_digest": _single({r.sut_digest for r in scored if r.sut_digest}),
            "rubric_digest": _single({r.rubric_digest for r in scored if r.rubric_digest}),
            "sut_isolation": _single({r.sut_isolation for r in scored if r.sut_isolation}),
            "sut_network": _single({r.sut_network for r in scored if r.sut_network}),
            "rubric_isolation": _single({r.rubric_isolation for r in scored if r.rubric_isolation}),
            "jail_uid": _single({str(r.jail_uid) for r in scored if r.jail_uid is not None}),
            "sut_memory_limit": _single({r.sut_memory_limit for r in scored if r.sut_memory_limit}),
            "complete": complete,
            "scores": scores,
            "incomplete_reason": reason,
            "infrastructure_failures": infrastructure,
            "harness_write_failures": harness_write,
            "cases_total": total,
            "n": len(case_means),
            "passed_count": sum(passed_flags),
            "mean": min(1.0, max(0.0, acc.mean)) if case_means else 0.0,
            "stddev": acc.stddev if case_means else 0.0,
            "lower_bound_95": bound.value,
            "bound": BoundInfo(
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
            "total_cost_usd": sum(r.cost_usd for r in ordered),
            "cache_hits": sum(1 for r in ordered if r.cached),
            "skipped_count": skipped,
            "block_failure_count": sum(len(r.block_failures) for r in scored),
            "repeats": repeats,
            "clustered_standard_error": clustered_se,
            **extra,
            "shard": shard,
            "merged_from": merged_from,
            "cases": tuple(ordered),
        }
    )
