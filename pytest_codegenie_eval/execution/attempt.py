"""Running one case: workspace, SUT, isolated rubric, validation, cache (docs/bench-authoring.md).

:func:`run_case` never raises for anything the SUT or the rubric does: every deviation
becomes a block-severity :class:`FailureMode` on the case and the run goes on.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pytest_codegenie_eval import __version__
from pytest_codegenie_eval.codes import NOT_CACHED
from pytest_codegenie_eval.execution import results
from pytest_codegenie_eval.execution.canary import (
    CANARY_ENV,
    canary_for,
    leaked,
    with_pinned_canary,
)
from pytest_codegenie_eval.execution.isolation.jailuser import JailUser, hand_over
from pytest_codegenie_eval.execution.isolation.sandbox import (
    Jail,
    bwrap_status,
    interpreter_bin,
    python_prefixes,
    ro_sources_that_exist,
    sandbox_path,
)
from pytest_codegenie_eval.execution.sut import HookRunner, SutPolicy, SutRun, SutSpec, run_sut
from pytest_codegenie_eval.hashing import blake3_file
from pytest_codegenie_eval.models import (
    BenchCase,
    CachedFrom,
    CaseResult,
    FailureMode,
    Severity,
)
from pytest_codegenie_eval.process import (
    ResourceLimits,
    allowlisted_environment,
    harness_package_dir,
    isolated_script,
    run_process,
    sandbox_prefix,
    tail,
)
from pytest_codegenie_eval.store.cache import CacheKeyParts, ScoreCache
from pytest_codegenie_eval.store.cost_ledger import (
    TAG_ENV,
    CostLedger,
    Invocation,
    invocation_tag,
    tag_invocation,
)
from pytest_codegenie_eval.store.statedir import diff_digest, store_diff
from pytest_codegenie_eval.taskclass.digests import case_digest, check_input_links
from pytest_codegenie_eval.taskclass.layout import CASES, TASK_MD
from pytest_codegenie_eval.taskclass.loader import CaseEntry, LoadedTaskClass, rubric_digest

HARNESS_VERSION = __version__
CODEGENIE_DIR = ".codegenie"
MAX_DIFF_BYTES = 4 * 1024 * 1024
# Files larger than this are compared by streamed hash and summarised, never loaded.
MAX_DIFF_FILE_BYTES = 1024 * 1024
MAX_RUBRIC_STDOUT = 1024 * 1024


@dataclass(frozen=True)
class RunSettings:
    """Per-session settings every case run needs (built once by the plugin)."""

    cache: ScoreCache | None
    ledger: CostLedger | None
    run_scope: str
    max_cost_usd: float | None = None
    cassette_dir: Path | None = None
    cassette_digest: str = ""
    keep_workspaces: bool = False
    kept_dir: Path | None = None  # where kept workspaces go: <state>/workspaces/<run scope>
    sut_policy: SutPolicy = field(default_factory=SutPolicy)
    rubric_sandbox: str = "auto"
    diff_dir: Path | None = None  # where each run's diff is kept (<state dir>/diffs)


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


def _files(root: Path) -> dict[str, Path]:
    """Regular files under ``root`` (``.codegenie/`` left out), found without following a
    link: a link the SUT planted is reported by the harness, never read through."""
    found: dict[str, Path] = {}
    if not root.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        current = Path(dirpath)
        if current == root:
            dirnames[:] = [d for d in dirnames if d != CODEGENIE_DIR]
        for name in filenames:
            path = current / name
            try:
                regular = stat.S_ISREG(path.lstat().st_mode)
            except OSError:
                continue
            if regular:
                found[path.relative_to(root).as_posix()] = path
    return found


def _file_diff(rel: str, old: Path | None, new: Path | None) -> str:
    """One file's part of the diff, reading at most ``MAX_DIFF_FILE_BYTES`` of each side."""
    sizes = [p.stat().st_size if p is not None else 0 for p in (old, new)]
    if max(sizes) > MAX_DIFF_FILE_BYTES:
        digests = [blake3_file(p) if p is not None else "" for p in (old, new)]
        if old is not None and new is not None and digests[0] == digests[1]:
            return ""
        return f"Large files a/{rel} and b/{rel} differ ({sizes[0]} -> {sizes[1]} bytes)\n"
    a = old.read_bytes() if old is not None else b""
    b = new.read_bytes() if new is not None else b""
    if a == b and (old is None) == (new is None):
        return ""
    try:
        a_lines = a.decode("utf-8").splitlines(keepends=True)
        b_lines = b.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return f"Binary files a/{rel} and b/{rel} differ\n"
    text = "".join(
        difflib.unified_diff(
            a_lines,
            b_lines,
            fromfile=f"a/{rel}" if old is not None else "/dev/null",
            tofile=f"b/{rel}" if new is not None else "/dev/null",
        )
    )
    if text and not text.endswith("\n"):
        text += "\n\\ No newline at end of file\n"
    return text


def unified_diff(before: Path, after: Path, limit: int = MAX_DIFF_BYTES) -> str:
    """A git-style unified diff of two trees (``.codegenie/`` left out), capped in size.

    The harness's memory stays bounded whatever the SUT wrote: files past
    ``MAX_DIFF_FILE_BYTES`` are compared by a streamed hash and summarised in one line.
    """
    old, new = _files(before), _files(after)
    chunks: list[str] = []
    size = 0
    for rel in sorted(set(old) | set(new)):
        try:
            text = _file_diff(rel, old.get(rel), new.get(rel))
        except OSError as exc:
            text = f"Unreadable file b/{rel}: {exc}\n"
        if not text:
            continue
        size += len(text)
        if size > limit:
            chunks.append(f"[diff truncated at {limit} bytes]\n")
            break
        chunks.append(text)
    return "".join(chunks)


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


_block = results.block
log = logging.getLogger("codegenie_eval.execution")


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


def validate_rubric_output(
    stdout: bytes, *, case_id: str, task_class: LoadedTaskClass
) -> ValidatedScore:
    """Check the rubric's stdout against the protocol, the keys and the taxonomy."""
    try:
        text = stdout.decode("utf-8")
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        shown = tail(stdout, 200) or "<empty>"
        return ValidatedScore(
            0.0, {}, (_block("rubric.malformed_output", f"not one JSON object: {exc}: {shown}"),)
        )
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
    payload = json.dumps(
        {
            "case": case.model_dump(mode="json"),
            "case_dir": str(case_dir.resolve()),
            "harness_output": dict(harness_output),
        }
    ).encode("utf-8")
    isolation = rubric_isolation(mode, user)
    with tempfile.TemporaryDirectory(prefix="codegenie-rubric-") as cwd:
        argv = isolated_script(task_class.rubric_path, with_harness=True)
        env = rubric_env()
        if isolation == "bwrap":
            bwrap = bwrap_status(user).path
            assert bwrap is not None
            workspace = Path(str(harness_output["workspace"]))
            if user is not None:
                os.chown(cwd, user.uid, user.gid)
            jail = _rubric_jail(task_class, case_dir, workspace, Path(cwd), env, user)
            argv, env = jail.argv(bwrap, argv), jail.spawn_env()
        elif isolation == "namespaces":
            argv = [*sandbox_prefix(), *argv]
        result = run_process(
            argv,
            cwd=Path(cwd),
            env=env,
            stdin=payload,
            timeout_s=case.rubric_timeout_s,
            max_stdout=MAX_RUBRIC_STDOUT,
            limits=default_rubric_limits(case.rubric_timeout_s),
        )
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


def cache_key(
    entry: CaseEntry,
    task_class: LoadedTaskClass,
    sut: SutSpec,
    settings: RunSettings,
    repeat: int = 1,
) -> str:
    if entry.case is None:
        raise ValueError(f"case {entry.name} did not load")
    return CacheKeyParts(
        case_digest=entry.digest,
        sut_digest=sut.digest,
        rubric_digest=task_class.rubric_digest,
        cassette_corpus_digest=settings.cassette_digest,
        harness_version=HARNESS_VERSION,
        cassette_canary_pin=entry.case.cassette_canary_pin,
        sut_policy=settings.sut_policy.describe(sut),
        repeat=repeat,
    ).key()


def _contract_env(
    case: BenchCase, workspace: Path, tag: str, settings: RunSettings, repeat: int = 1
) -> dict[str, str]:
    """The ``CODEGENIE_*`` variables of the SUT contract (the SUT gets these and the
    allowlist, nothing else of the harness's environment)."""
    env = {
        CANARY_ENV: canary_for(case),
        TAG_ENV: tag,
        "CODEGENIE_CASE_ID": case.case_id,
        "CODEGENIE_WORKSPACE": str(workspace),
        "CODEGENIE_TASK_FILE": str(workspace / CODEGENIE_DIR / TASK_MD),
        "CODEGENIE_REPEAT": str(repeat),  # which attempt of the case (1 unless repeated)
    }
    if settings.cassette_dir is not None:
        env["CODEGENIE_CASSETTE_DIR"] = str(settings.cassette_dir)
    return env


def kept_name(case_id: str, repeat: int) -> str:
    """The folder a kept run directory of one attempt is moved to."""
    return case_id if repeat == 1 else f"{case_id}-r{repeat}"


def _keep(run_dir: Path, target: Path) -> None:
    """Move a run directory (workspace, SUT tmp) where --codegenie-keep-workspaces says."""
    try:
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(run_dir), str(target))
    except OSError:
        log.warning("could not move the kept workspace %s to %s", run_dir, target)


def _copy_input(source: Path, workspace: Path) -> None:
    """Copy ``input/`` into the workspace, links as links (never followed out of it: the
    loader refuses a link that leaves ``input/``, and this re-checks just before copying)."""
    check_input_links(source)
    shutil.copytree(source, workspace, symlinks=True)


def _prepare_workspace(task_class: LoadedTaskClass, entry: CaseEntry, run_dir: Path) -> Path:
    workspace = run_dir / "workspace"
    source = entry.directory / "input"
    if source.is_dir():
        _copy_input(source, workspace)
    else:
        workspace.mkdir()
    meta = workspace / CODEGENIE_DIR
    meta.mkdir(exist_ok=True)
    task_text = (entry.case.instructions if entry.case else None) or task_class.task_md
    (meta / TASK_MD).write_text(task_text, encoding="utf-8")
    (run_dir / "tmp").mkdir()
    return workspace


# What an env-only SUT's run directory may hold besides the workspace.
_RUN_DIR_ENTRIES = frozenset({"workspace", "tmp", "home"})


def _escape_failures(run_dir: Path, workspace: Path) -> list[FailureMode]:
    """Writes next to the workspace, and links in it that lead out of it (removed, so the
    rubric never reads through them)."""
    modes = []
    stray = sorted(p.name for p in run_dir.iterdir() if p.name not in _RUN_DIR_ENTRIES)
    if stray:
        modes.append(
            _block("sut.escaped_workspace", f"wrote outside its workspace: {', '.join(stray)}")
        )
    root = workspace.resolve()
    leaving: list[str] = []
    for dirpath, dirnames, filenames in os.walk(workspace, followlinks=False):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            if not path.is_symlink():
                continue
            target = Path(os.path.normpath(Path(dirpath) / os.readlink(path)))
            try:
                inside = path.resolve().is_relative_to(root) and target.is_relative_to(root)
            except (OSError, RuntimeError):  # a loop
                inside = False
            if not inside:
                leaving.append(f"{path.relative_to(workspace).as_posix()} -> {os.readlink(path)}")
                path.unlink()
    if leaving:
        modes.append(
            _block(
                "sut.escaped_workspace",
                "symlink(s) leading out of the workspace (removed before scoring): "
                + ", ".join(sorted(leaving)[:20]),
            )
        )
    return modes


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


@dataclass(frozen=True)
class Attempt:
    """One attempt's outcome before it is recorded: the result, the diff its
    ``diff_digest`` names, and whether its cost is in the ledger already."""

    result: CaseResult
    diff: str = ""
    cost_recorded: bool = False


def run_case(
    task_class: LoadedTaskClass,
    entry: CaseEntry,
    sut: SutSpec,
    settings: RunSettings,
    *,
    nodeid: str = "",
    hook: HookRunner | None = None,
    repeat: int = 1,
) -> CaseResult:
    """The local executor: one attempt of a loaded case end to end, recorded (or its
    cached result)."""
    key = cache_key(entry, task_class, sut, settings, repeat)
    hit = cached_result(settings, key, nodeid, repeat)
    if hit is not None:
        return hit
    done = attempt_case(task_class, entry, sut, settings, nodeid=nodeid, hook=hook, repeat=repeat)
    return record_attempt(settings, key, done)


def record_attempt(settings: RunSettings, key: str, attempt: Attempt) -> CaseResult:
    """What every executor does with an attempt it ran (locally, or on a Dask worker whose
    reply this is): keep its diff, put its cost in the ledger (unless the attempt did, as it
    ran), and cache it. Returns the result as recorded: its ``diff_digest`` names the bytes
    kept, whatever the reply said."""
    result = attempt.result
    if attempt.diff and settings.diff_dir is not None:
        kept = store_diff(settings.diff_dir, attempt.diff)
        if kept != result.diff_digest:
            result = result.model_copy(update={"diff_digest": kept})
    if settings.ledger is not None and not attempt.cost_recorded:
        tag = invocation_tag(settings.run_scope, result.task_class, result.case_id)
        settings.ledger.record(Invocation(tag, result.task_class, result.case_id, result.cost_usd))
    remember(settings, key, result)
    return result


def attempt_case(
    task_class: LoadedTaskClass,
    entry: CaseEntry,
    sut: SutSpec,
    settings: RunSettings,
    *,
    nodeid: str = "",
    hook: HookRunner | None = None,
    repeat: int = 1,
) -> Attempt:
    """Run one attempt of a loaded case: workspace, SUT, checks, rubric. Nothing is kept
    but the ledger entry of the SUT's cost, written as the SUT ends when ``settings`` has a
    ledger (so a cost-capped session counts it even if scoring then fails);
    :func:`record_attempt` keeps the rest."""
    case = entry.case
    if case is None or entry.error is not None:
        raise ValueError(f"case {entry.name} did not load: {entry.error}")
    started = time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix=f"codegenie-{case.case_id[:40]}-"))
    jail_user = settings.sut_policy.jail_user
    try:
        workspace = _prepare_workspace(task_class, entry, run_dir)
        with tag_invocation(
            settings.ledger, settings.run_scope, task_class.name, case.case_id
        ) as invocation:
            env = _contract_env(case, workspace, invocation.tag, settings, repeat)
            extra_ro = (settings.cassette_dir,) if settings.cassette_dir is not None else ()
            with with_pinned_canary(case):
                sut_run = run_sut(
                    sut,
                    case=case,
                    workspace=workspace,
                    env=env,
                    policy=settings.sut_policy,
                    run_dir=run_dir,
                    extra_ro=extra_ro,
                    hook=hook,
                )
            invocation.cost_usd = sut_run.cost_usd
        modes = _sut_failures(sut_run, case)
        modes += tamper_failures(task_class, entry)
        if sut_run.workspace_overflow is None:  # never walk an oversized tree
            modes += _escape_failures(run_dir, workspace)
        rubric_mode = rubric_isolation(settings.rubric_sandbox, jail_user)
        # the rubric's jail user must enter the run directory to reach the workspace; a
        # rubric outside bubblewrap runs as the harness, which then owns it again
        hand_over(run_dir, jail_user if rubric_mode == "bwrap" else None)
        if sut_run.workspace_overflow is not None:
            # nothing of an oversized workspace is read: no diff, no rubric
            modes.append(_block("sut.workspace_too_large", sut_run.workspace_overflow))
            diff = ""
            verdict = ValidatedScore(0.0, {}, ())
        else:
            diff = unified_diff(entry.directory / "input", workspace)
        if leaked(canary_for(case), sut_run.stdout, sut_run.stderr, diff):
            modes.append(_block("canary.leaked", "the SUT's output contains the case's canary"))
        if sut_run.workspace_overflow is None:
            harness_output = {
                "workspace": str(workspace),
                "diff": diff,
                "sut_exit_code": sut_run.exit_code,
                "stdout_tail": sut_run.stdout_tail,
                "stderr_tail": sut_run.stderr_tail,
                "cost_usd": sut_run.cost_usd,
                "duration_s": round(sut_run.duration_s, 6),
            }
            verdict = run_rubric(
                task_class,
                case,
                entry.directory,
                harness_output,
                settings.rubric_sandbox,
                jail_user,
            )
        if not any(m.code == "sut.tampered_bench" for m in modes):
            # a rubric outside bubblewrap can write the case it reads
            modes += tamper_failures(task_class, entry, "rubric.tampered_bench")
        result = results.scored(
            failure_modes=(*modes, *verdict.failure_modes),
            score=verdict.score,
            pass_threshold=case.pass_threshold,
            task_class=task_class.name,
            case_id=case.case_id,
            nodeid=nodeid,
            curation_class=case.curation_class,
            case_digest=entry.digest,
            sut=sut.display,
            sut_digest=sut.digest,
            rubric_digest=task_class.rubric_digest,
            breakdown=verdict.breakdown,
            cost_usd=sut_run.cost_usd,
            duration_s=time.monotonic() - started,
            sut_exit_code=sut_run.exit_code,
            sut_isolation=sut_run.isolation,
            sut_network=sut_run.network,
            rubric_isolation=rubric_mode,
            jail_uid=sut_run.jail_uid,
            sut_memory_limit=sut_run.memory_limit,
            stdout_tail=sut_run.stdout_tail,
            stderr_tail=sut_run.stderr_tail,
            repeat=repeat,
            diff_digest=diff_digest(diff) if diff else "",
        )
    finally:
        if not settings.keep_workspaces:
            shutil.rmtree(run_dir, ignore_errors=True)
        elif settings.kept_dir is not None:
            _keep(run_dir, settings.kept_dir / task_class.name / kept_name(case.case_id, repeat))
    return Attempt(result, diff, cost_recorded=settings.ledger is not None)


def cached_result(settings: RunSettings, key: str, nodeid: str, repeat: int) -> CaseResult | None:
    """The cached result of an attempt, as this session reports it (cost 0: not spent now)."""
    if settings.cache is None:
        return None
    hit = settings.cache.get(key)
    if hit is None:
        return None
    return hit.model_copy(
        update={"cached": True, "cost_usd": 0.0, "nodeid": nodeid, "repeat": repeat}
    )


def remember(settings: RunSettings, key: str, result: CaseResult) -> None:
    """Cache a measured result with where it was measured (results a crash, a timeout or
    tampering produced are never cached)."""
    if settings.cache is None or any(m.code in NOT_CACHED for m in result.failure_modes):
        return
    origin = CachedFrom(
        run_scope=settings.run_scope,
        cost_usd=result.cost_usd,
        measured_at=datetime.now(UTC).isoformat(),
    )
    # where it ran (the Dask tries) is of that session; cached_from says where it came from
    update = {"nodeid": "", "cached_from": origin, "executor_attempts": ()}
    settings.cache.put(key, result.model_copy(update=update))


def _sut_failures(run: SutRun, case: BenchCase) -> list[FailureMode]:
    if run.timed_out:
        return [_block("sut.timeout", f"killed after {case.sut_timeout_s:g} s")]
    modes = []
    if run.memory_exceeded is not None:
        modes.append(_block("sut.memory_exceeded", run.memory_exceeded))
    if run.workspace_overflow is not None:
        return modes  # the harness stopped it: its exit code says nothing of its own
    if run.exit_code != 0:
        detail = run.error or f"exit code {run.exit_code}; stderr: {tail(run.stderr, 1500)}"
        modes.append(_block("sut.exception", detail))
    elif run.error:
        modes.append(_block("sut.exception", run.error))
    return modes
