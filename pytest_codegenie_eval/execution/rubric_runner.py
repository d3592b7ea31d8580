"""Running a task class's rubric on one attempt: ``python -I rubric.py`` isolated (temporary
cwd, allowlisted environment, limits, timeout, bubblewrap or namespaces where available),
and its output validated against the task class (docs/bench-authoring.md).

Nothing the rubric does raises: a timeout, a crash or malformed output becomes a
block-severity failure mode with score 0.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pytest_codegenie_eval.execution import results
from pytest_codegenie_eval.execution.isolation.jailuser import JailUser
from pytest_codegenie_eval.execution.isolation.sandbox import (
    Jail,
    bwrap_status,
    interpreter_bin,
    python_prefixes,
    ro_sources_that_exist,
    sandbox_path,
)
from pytest_codegenie_eval.models import BenchCase, FailureMode, Severity
from pytest_codegenie_eval.process import (
    ProcessResult,
    ResourceLimits,
    StartedProcess,
    allowlisted_environment,
    harness_package_dir,
    isolated_script,
    sandbox_prefix,
    start_process,
    tail,
)
from pytest_codegenie_eval.taskclass.layout import CASES
from pytest_codegenie_eval.taskclass.loader import LoadedTaskClass

MAX_RUBRIC_STDOUT = 1024 * 1024
_block = results.block


def rubric_env() -> dict[str, str]:
    """The rubric subprocess's whole environment: the child allowlist, in UTC, with a fixed
    hash seed (a rubric scores the same wherever it runs)."""
    return {**allowlisted_environment(), "TZ": "UTC", "PYTHONHASHSEED": "0"}


def default_rubric_limits(timeout_s: float) -> ResourceLimits:
    """CPU a little past the wall-clock timeout, 4 GiB of address space, 64 MiB files."""
    return ResourceLimits(
        cpu_seconds=math.ceil(timeout_s) + 1,
        address_space_bytes=4 * 1024**3,
        file_size_bytes=64 * 1024**2,
    )


class _RubricFailure(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    code: str = Field(min_length=1)
    detail: str = ""
    severity: Severity | None = None


# A score is a JSON number (not true, not "1") that is finite and in [0, 1]; -0.0 counts as
# 0.0 (normalised, so equal scores give equal run ids). docs/bench-authoring.md says so.
_Score = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False, strict=True)]


class _RubricOutput(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    case_id: str | None = None
    score: _Score
    breakdown: dict[str, float] = Field(default_factory=dict)
    failure_modes: list[_RubricFailure] = Field(default_factory=list)


@dataclass(frozen=True)
class ValidatedScore:
    """The rubric's score, breakdown and failure modes after validation against the task
    class (not to be confused with a promotion verdict)."""

    score: float
    breakdown: dict[str, float]
    failure_modes: tuple[FailureMode, ...]


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when a key repeats: ``{"score": 0, "score": 1}`` would
    otherwise be read as whichever came last, and a second ``failure_modes`` could hide the
    block failure in the first."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _stray_lines(stdout: bytes) -> list[str]:
    """The lines printed besides one JSON object on a line of its own (a stray ``print``),
    or ``[]`` unless exactly one line of ``stdout`` is such an object (two objects are not
    a stray line but two answers)."""
    lines = stdout.decode("utf-8", errors="replace").splitlines()
    objects = [index for index, line in enumerate(lines) if _is_json_object(line)]
    if len(objects) != 1:
        return []
    others = lines[: objects[0]] + lines[objects[0] + 1 :]
    return [other[:120] for other in others if other.strip()]


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def validate_rubric_output(
    stdout: bytes, *, case_id: str, task_class: LoadedTaskClass
) -> ValidatedScore:
    """Check the rubric's stdout against the protocol, the keys and the taxonomy."""
    try:
        text = stdout.decode("utf-8")
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        stray = _stray_lines(stdout)
        if stray:
            detail = (
                f"stdout holds {len(stray)} line(s) besides the JSON object, first {stray[0]!r}: "
                "a rubric prints only the object (diagnostics go to stderr)"
            )
        else:
            detail = f"not one JSON object: {exc}: {tail(stdout, 200) or '<empty>'}"
        return ValidatedScore(0.0, {}, (_block("rubric.malformed_output", detail),))
    if not isinstance(data, dict):
        return ValidatedScore(
            0.0, {}, (_block("rubric.malformed_output", "stdout is JSON but not an object"),)
        )
    try:
        parsed = _RubricOutput.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        return ValidatedScore(0.0, {}, (_block("rubric.malformed_output", problems),))
    if parsed.case_id is not None and parsed.case_id != case_id:
        return ValidatedScore(
            0.0,
            {},
            (
                _block(
                    "rubric.malformed_output", f"scored case {parsed.case_id!r}, not {case_id!r}"
                ),
            ),
        )
    if task_class.task_class.scores == "pass_fail" and parsed.score not in (0.0, 1.0):
        detail = (
            f"scored {parsed.score!r}, but task class {task_class.name} declares pass/fail "
            "scores (register_task_class(..., scores='pass_fail')): 0 or 1 only"
        )
        return ValidatedScore(0.0, {}, (_block("rubric.malformed_output", detail),))
    modes: list[FailureMode] = []
    breakdown: dict[str, float] = {}
    for key, value in sorted(parsed.breakdown.items()):
        if key not in task_class.breakdown_keys:
            modes.append(_block("rubric.unknown_breakdown_key", f"{key!r} is not a BreakdownKey"))
        elif not (0.0 <= value <= 1.0) or not math.isfinite(value):
            modes.append(
                _block("rubric.malformed_output", f"breakdown {key!r}={value} not in [0, 1]")
            )
        else:
            breakdown[key] = value + 0.0  # -0.0 -> 0.0
    for fm in parsed.failure_modes:
        severity = task_class.failure_modes.get(fm.code)
        if severity is None:
            modes.append(
                _block("rubric.unknown_failure_mode", f"{fm.code!r} is not in failure_modes.yaml")
            )
        else:
            # the taxonomy's severity always wins over whatever the rubric claimed
            modes.append(FailureMode(code=fm.code, severity=severity[0], detail=fm.detail))
    harness_problem = any(m.code.startswith("rubric.") for m in modes)
    score = 0.0 if harness_problem else parsed.score + 0.0  # -0.0 -> 0.0
    return ValidatedScore(score, breakdown, tuple(modes))


def rubric_isolation(mode: str = "auto", user: JailUser | None = None) -> str:
    """How a rubric runs under ``mode`` on this machine: ``bwrap`` (as ``user`` when one is
    given), ``namespaces`` or ``env-only`` (the environment allowlist, temporary cwd and
    limits apply to all)."""
    if mode in ("auto", "bwrap") and bwrap_status(user).usable:
        return "bwrap"
    if mode in ("auto", "bwrap", "namespaces") and sandbox_prefix():
        return "namespaces"
    return "env-only"


def _rubric_jail(
    task_class: LoadedTaskClass,
    case_dir: Path,
    workspace: Path,
    cwd: Path,
    env: dict[str, str],
    user: JailUser | None,
) -> Jail:
    """The rubric's sandbox: no network; the task class (its ``cases/`` hidden but for this
    case), the case and the workspace read-only; its own scratch directory read-write."""
    visible = ro_sources_that_exist(
        [
            *python_prefixes(),
            harness_package_dir(),
            task_class.directory,
            case_dir.resolve(),
            workspace,
        ]
    )
    return Jail(
        ro=visible,
        rw=(cwd,),
        chdir=cwd,
        env={**env, "PATH": sandbox_path([interpreter_bin()], visible)},
        network="none",
        masks=(task_class.directory / CASES,),
        user=user,
    )


def run_rubric(
    task_class: LoadedTaskClass,
    case: BenchCase,
    case_dir: Path,
    harness_output: Mapping[str, Any],
    mode: str = "auto",
    user: JailUser | None = None,
) -> ValidatedScore:
    """Run ``python -I rubric.py`` isolated: temp cwd, allowlisted env, limits, timeout,
    inside bubblewrap (or namespaces) as ``mode`` and the machine allow; a bubblewrap jail
    runs as ``user`` when one is given (a root harness), with its cwd handed to it."""
    workspace = Path(str(harness_output["workspace"]))
    with start_rubric(task_class, case, case_dir, workspace, mode, user) as pending:
        return pending.score(harness_output)


class PendingRubric:
    """A rubric started before it is needed (:func:`start_rubric`): its jail is up, its
    interpreter has started and imported ``rubric.py``, and it waits for its request on
    stdin, which :meth:`score` sends. Its timeout counts from then. Use it as a context
    manager: leaving it ends a rubric that was never asked, and removes its directory."""

    def __init__(
        self,
        task_class: LoadedTaskClass,
        case: BenchCase,
        case_dir: Path,
        cwd: tempfile.TemporaryDirectory[str],
        started: StartedProcess | ProcessResult,
    ) -> None:
        self.task_class = task_class
        self.case = case
        self.case_dir = case_dir
        self._cwd = cwd
        self._started = started

    def __enter__(self) -> PendingRubric:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if isinstance(self._started, StartedProcess):
            self._started.kill()
        self._cwd.cleanup()

    def score(self, harness_output: Mapping[str, Any]) -> ValidatedScore:
        """Send the request and read the rubric's score (validated), once."""
        case = self.case
        payload = json.dumps(
            {
                "case": case.model_dump(mode="json"),
                "case_dir": str(self.case_dir.resolve()),
                "harness_output": dict(harness_output),
            }
        ).encode("utf-8")
        started = self._started
        if isinstance(started, StartedProcess):
            result = started.finish(
                stdin=payload, timeout_s=case.rubric_timeout_s, max_stdout=MAX_RUBRIC_STDOUT
            )
        else:
            result = started  # it could not be started: the spawn error
        return _validated(result, case, self.task_class)


def start_rubric(
    task_class: LoadedTaskClass,
    case: BenchCase,
    case_dir: Path,
    workspace: Path,
    mode: str = "auto",
    user: JailUser | None = None,
) -> PendingRubric:
    """Start the case's rubric isolated as :func:`run_rubric` runs it (the workspace bound
    read-only into its jail, live: what the SUT writes there later is what it reads), so
    that its jail and interpreter come up before they are needed. A rubric's module
    therefore runs before the SUT has finished; only ``score()``, called when the request
    arrives, sees the workspace's path and what the SUT left there."""
    isolation = rubric_isolation(mode, user)
    cwd = tempfile.TemporaryDirectory(prefix="codegenie-rubric-")
    try:
        # the interpreter applies the limits itself, before the rubric runs: one process fewer
        # on the way to the rubric than prlimit
        limits = default_rubric_limits(case.rubric_timeout_s)
        argv = isolated_script(task_class.rubric_path, with_harness=True, limits=limits)
        env = rubric_env()
        if isolation == "bwrap":
            bwrap = bwrap_status(user).path
            assert bwrap is not None
            if user is not None:
                os.chown(cwd.name, user.uid, user.gid)
            jail = _rubric_jail(task_class, case_dir, workspace, Path(cwd.name), env, user)
            jail = replace(jail, keep_pwd=True)  # the bootstrap drops it
            argv, env = jail.argv(bwrap, argv), jail.spawn_env()
        elif isolation == "namespaces":
            argv = [*sandbox_prefix(), *argv]
        started = start_process(argv, cwd=Path(cwd.name), env=env)
    except BaseException:
        cwd.cleanup()
        raise
    return PendingRubric(task_class, case, case_dir, cwd, started)


def _validated(
    result: ProcessResult, case: BenchCase, task_class: LoadedTaskClass
) -> ValidatedScore:
    if result.timed_out:
        return ValidatedScore(
            0.0,
            {},
            (_block("rubric.timeout", f"killed after {case.rubric_timeout_s:g} s"),),
        )
    if result.stdout_truncated:
        return ValidatedScore(
            0.0,
            {},
            (_block("rubric.malformed_output", f"stdout exceeded {MAX_RUBRIC_STDOUT} bytes"),),
        )
    if result.spawn_error or result.returncode != 0:
        why = result.spawn_error or f"exit code {result.returncode}"
        return ValidatedScore(
            0.0,
            {},
            (_block("rubric.malformed_output", f"{why}; stderr: {tail(result.stderr, 1500)}"),),
        )
    return validate_rubric_output(result.stdout, case_id=case.case_id, task_class=task_class)
