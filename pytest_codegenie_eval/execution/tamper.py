"""The one tamper rule: the task class definition and a case are digested when loaded and
again after the SUT and the rubric ran, and once more when the session ends; a result
measured against bytes that changed is blocked (``sut.tampered_bench``)."""

from __future__ import annotations

from pathlib import Path

from pytest_codegenie_eval.execution import results
from pytest_codegenie_eval.models import CaseResult, FailureMode
from pytest_codegenie_eval.taskclass.digests import case_digest
from pytest_codegenie_eval.taskclass.loader import CaseEntry, LoadedTaskClass, rubric_digest

_block = results.block


def _definition_now(directory: Path) -> str | None:
    try:
        return rubric_digest(directory)
    except OSError:
        return None


def _case_now(directory: Path | None) -> str | None:
    if directory is None:
        return None
    try:
        return case_digest(directory)
    except Exception:  # the SUT may have left the case unreadable or full of bad links
        return None


def _changed(
    task_class: LoadedTaskClass,
    definition: tuple[str, str | None],
    case_dir: Path | None,
    case: tuple[str, str | None],
) -> list[str]:
    """The one tamper rule: what differs between the digests a result was measured with
    (``then``) and the digests now, each given as ``(then, now)``; ``None`` is unreadable."""
    changed: list[str] = []
    if definition[0] != definition[1]:
        unreadable = " (unreadable)" if definition[1] is None else ""
        changed.append(f"the task class definition under {task_class.directory}{unreadable}")
    if case[0] and case[0] != case[1]:
        unreadable = " (unreadable)" if case[1] is None else ""
        changed.append(f"the case directory {case_dir}{unreadable}")
    return changed


def tamper_failures(
    task_class: LoadedTaskClass, entry: CaseEntry, code: str = "sut.tampered_bench"
) -> list[FailureMode]:
    """The task class definition and this case, re-digested: anything the SUT (or, with
    ``code="rubric.tampered_bench"``, the rubric) changed blocks the case."""
    changed = _changed(
        task_class,
        (task_class.rubric_digest, _definition_now(task_class.directory)),
        entry.directory,
        (entry.digest, _case_now(entry.directory)),
    )
    return [_block(code, "changed " + " and ".join(changed))] if changed else []


def recheck_at_session_end(
    task_class: LoadedTaskClass, results: list[CaseResult]
) -> list[CaseResult]:
    """Re-digest the task class definition and every case once more when the session ends:
    a result whose rubric or case changed after it was loaded gets ``sut.tampered_bench``
    (a SUT may have edited another case, or the rubric after its own check)."""
    definition_now = _definition_now(task_class.directory)
    directories = {entry.case_id: entry.directory for entry in task_class.cases}
    checked: list[CaseResult] = []
    for result in results:
        changed: list[str] = []
        if result.status == "scored" and result.rubric_digest:
            directory = directories.get(result.case_id)
            changed = _changed(
                task_class,
                (result.rubric_digest, definition_now),
                directory,
                (result.case_digest, _case_now(directory)),
            )
        if changed and not any(fm.code == "sut.tampered_bench" for fm in result.failure_modes):
            mode = _block(
                "sut.tampered_bench", "changed during the session: " + " and ".join(changed)
            )
            result = result.model_copy(
                update={"failure_modes": (*result.failure_modes, mode), "passed": False}
            )
        checked.append(result)
    return checked
