"""The ``--codegenie-jsonl`` lines: one per case attempt and one aggregate per task class,
rendered from the run reports (models in, text out; writing it is the caller's)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from pytest_codegenie_eval.models import BenchRunReport


def _repeat_fields(r: BenchRunReport) -> dict[str, object]:
    """What an aggregate JSONL line adds under ``--codegenie-repeat`` (K > 1 only, so an
    unrepeated run's lines stay as they were)."""
    return {
        "repeats": r.repeats,
        "pass_at_1": r.pass_at_1,
        "pass_at_k": r.pass_at_k,
        "pass_hat_k": r.pass_hat_k,
        "within_case_variance": r.within_case_variance,
        "clustered_standard_error": r.clustered_standard_error,
    }


def render_jsonl(runs: Iterable[tuple[BenchRunReport, str | None]]) -> str:
    """The JSON lines of each (report, chain head recorded for it), newline-terminated."""
    lines: list[str] = []
    for report, chain_head in runs:
        for case in report.cases:
            lines.append(
                json.dumps(
                    {
                        "type": "case",
                        "task_class": case.task_class,
                        "case_id": case.case_id,
                        "score": case.score,
                        "passed": case.passed,
                        "status": case.status,
                        "breakdown": case.breakdown,
                        "failure_modes": [fm.model_dump() for fm in case.failure_modes],
                        "cost_usd": case.cost_usd,
                        "cached": case.cached,
                        **(
                            {"cached_from": case.cached_from.model_dump()}
                            if case.cached and case.cached_from is not None
                            else {}
                        ),
                        "duration_s": round(case.duration_s, 6),
                        **({"repeat": case.repeat} if report.repeats > 1 else {}),
                    },
                    sort_keys=True,
                )
            )
        lines.append(
            json.dumps(
                {
                    "type": "aggregate",
                    "task_class": report.task_class,
                    "run_id": report.run_id,
                    "n": report.n,
                    "passed_count": report.passed_count,
                    "mean": report.mean,
                    "stddev": report.stddev,
                    "lower_bound_95": report.lower_bound_95,
                    "bound_method": report.bound.method,
                    "total_cost_usd": report.total_cost_usd,
                    "complete": report.complete,
                    **({"shard": report.shard.label} if report.shard else {}),
                    **({"label": report.label} if report.label else {}),
                    "chain_head": chain_head,
                    **(_repeat_fields(report) if report.repeats > 1 else {}),
                },
                sort_keys=True,
            )
        )
    return "".join(line + "\n" for line in lines)
