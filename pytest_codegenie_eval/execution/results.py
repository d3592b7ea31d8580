"""Every :class:`~.models.CaseResult` the harness records is built here.

A case ends in one of five ways, each with its own builder: scored by the rubric
(:func:`scored`), skipped by the cost cap (:func:`cost_cap_skipped`), not loadable
(:func:`load_error`), stopped by a harness problem (:func:`harness_failure`), or lost with
a crashed xdist worker (:func:`worker_crashed`). Whatever happened, the case is recorded,
never lost; the controller derives the session's outcome from these records alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from pytest_codegenie_eval.errors import (
    BenchCaseDigestMismatch,
    CodegenieEvalError,
    DigestsFileInvalid,
)
from pytest_codegenie_eval.models import (
    CaseResult,
    CaseStatus,
    CurationClass,
    FailureMode,
)
from pytest_codegenie_eval.taskclass.layout import attempt_from_nodeid


def block(code: str, detail: str) -> FailureMode:
    """A block-severity failure mode (every harness-raised code is one)."""
    return FailureMode(code=code, severity="block", detail=detail)


def scored(
    *,
    failure_modes: Iterable[FailureMode],
    score: float,
    pass_threshold: float,
    **fields: object,
) -> CaseResult:
    """A case the rubric scored: it passes when the score reaches the threshold and no
    failure mode blocks it."""
    modes = tuple(failure_modes)
    blocked = any(m.severity == "block" for m in modes)
    return CaseResult.model_validate(
        {
            **fields,
            "score": score,
            "pass_threshold": pass_threshold,
            "failure_modes": modes,
            "passed": not blocked and score >= pass_threshold - 1e-12,
            "cached": False,
        }
    )


def cost_cap_skipped(
    task_class: str,
    case_id: str,
    nodeid: str,
    curation_class: CurationClass | None,
    repeat: int = 1,
) -> CaseResult:
    """A case the cost cap kept from starting."""
    return CaseResult(
        task_class=task_class,
        case_id=case_id,
        nodeid=nodeid,
        status="skipped_cost_cap",
        curation_class=curation_class,
        repeat=repeat,
    )


def load_error(
    task_class: str,
    case_id: str,
    nodeid: str,
    error: CodegenieEvalError | None,
    curation_class: CurationClass | None = None,
    repeat: int = 1,
) -> CaseResult:
    """A case that could not be loaded: a failed case, never a lost one."""
    code = (
        "harness.digest_mismatch"
        if isinstance(error, BenchCaseDigestMismatch | DigestsFileInvalid)
        else "harness.case_invalid"
    )
    return CaseResult(
        task_class=task_class,
        case_id=case_id,
        nodeid=nodeid,
        status="load_error",
        failure_modes=(block(code, str(error)),),
        curation_class=curation_class,
        repeat=repeat,
    )


def harness_failure(
    task_class: str,
    case_id: str,
    nodeid: str,
    code: str,
    detail: str,
    status: CaseStatus,
    repeat: int = 1,
) -> CaseResult:
    """A case the harness could not run (a broken task class, an internal error)."""
    return CaseResult(
        task_class=task_class,
        case_id=case_id,
        nodeid=nodeid,
        status=status,
        failure_modes=(block(code, detail),),
        repeat=repeat,
    )


def worker_crashed(nodeid: str, longrepr: str) -> CaseResult | None:
    """The attempt an xdist worker died in (``None`` when the node id names no case):
    that attempt fails, the case's other attempts keep their own results."""
    where = attempt_from_nodeid(nodeid)
    if where is None:
        return None
    task_class, case_id, repeat = where
    return harness_failure(
        task_class, case_id, nodeid, "harness.worker_crashed", longrepr[-500:], "crashed", repeat
    )
