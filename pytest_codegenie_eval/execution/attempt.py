"""One attempt of a case, and the one way every executor records it (docs/bench-authoring.md).

:func:`attempt_case` runs the attempt: workspace (:mod:`.workspace`), SUT (:mod:`.sut`),
the checks (:mod:`.tamper`, the canary), the diff (:mod:`.diff`) and the isolated rubric
(:mod:`.rubric_runner`). It never raises for anything the SUT or the rubric does: every
deviation becomes a block-severity :class:`FailureMode` on the case. Whatever executor ran
it, :func:`record_attempt` keeps its diff, puts its cost in the ledger and caches it;
:func:`cache_key` and :func:`cached_result` are the cache lookup before it.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_codegenie_eval import __version__
from pytest_codegenie_eval.codes import NOT_CACHED
from pytest_codegenie_eval.execution import results
from pytest_codegenie_eval.execution.canary import (
    CANARY_ENV,
    canary_for,
    leaked,
)
from pytest_codegenie_eval.execution.diff import unified_diff
from pytest_codegenie_eval.execution.gateway.settings import GatewaySettings
from pytest_codegenie_eval.execution.isolation.jailuser import hand_over
from pytest_codegenie_eval.execution.rubric_runner import (
    PendingRubric,
    ValidatedScore,
    rubric_isolation,
    start_rubric,
)
from pytest_codegenie_eval.execution.sut import HookRunner, SutPolicy, SutRun, SutSpec, run_sut
from pytest_codegenie_eval.execution.tamper import tamper_failures
from pytest_codegenie_eval.execution.workspace import (
    CODEGENIE_DIR,
    escape_failures,
    keep,
    kept_name,
    prepare_workspace,
    workspace_of,
)
from pytest_codegenie_eval.models import (
    BenchCase,
    CachedFrom,
    CaseResult,
    FailureMode,
    ModelUsage,
)
from pytest_codegenie_eval.process import (
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
from pytest_codegenie_eval.store.statedir import diff_digest, store_diff, store_transcript
from pytest_codegenie_eval.taskclass.layout import TASK_MD
from pytest_codegenie_eval.taskclass.loader import CaseEntry, LoadedTaskClass

if TYPE_CHECKING:
    from pytest_codegenie_eval.execution.gateway.access import GatewayAccess
    from pytest_codegenie_eval.execution.gateway.server import AttemptLease

HARNESS_VERSION = __version__
_block = results.block


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
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    transcript_dir: Path | None = None  # where model transcripts are kept


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
        cassette_corpus_digest=(
            f"{settings.gateway.mode}:{settings.cassette_digest}"
            if settings.gateway.enabled
            else settings.cassette_digest
        ),
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


@dataclass(frozen=True)
class Attempt:
    """One attempt's outcome before it is recorded: the result, the diff its
    ``diff_digest`` names, and whether its cost is in the ledger already."""

    result: CaseResult
    diff: str = ""
    cost_recorded: bool = False
    transcript: bytes = b""  # the model gateway's transcript of the attempt, when it ran


def record_attempt(settings: RunSettings, key: str, attempt: Attempt) -> CaseResult:
    """What every executor does with an attempt it ran (locally, or on a Dask worker whose
    reply this is): keep its diff, put its cost in the ledger (unless the attempt did, as it
    ran), and cache it. Returns the result as recorded: its ``diff_digest`` names the bytes
    kept, whatever the reply said.

    A write that fails (a full or read-only disk) never rewrites the measured result: the
    score and the pass stand, and what could not be kept is listed in ``harness_errors``
    (the report is then not complete evidence, and the session fails)."""
    result = attempt.result
    lost: list[str] = []
    if attempt.diff and settings.diff_dir is not None:
        try:
            kept: str | None = store_diff(settings.diff_dir, attempt.diff)
        except OSError as exc:
            kept = None
            lost.append(f"the diff was not kept: {_why(exc)}")
        if kept != result.diff_digest:
            result = result.model_copy(update={"diff_digest": kept})
    usage = result.model_usage
    if attempt.transcript and settings.transcript_dir is not None and usage is not None:
        try:
            digest: str | None = store_transcript(settings.transcript_dir, attempt.transcript)
        except OSError as exc:
            digest = None
            lost.append(f"the transcript was not kept: {_why(exc)}")
        usage = usage.model_copy(update={"transcript_digest": digest})
        result = result.model_copy(update={"model_usage": usage})
    if settings.ledger is not None and not attempt.cost_recorded:
        tag = invocation_tag(settings.run_scope, result.task_class, result.case_id)
        try:
            settings.ledger.record(
                Invocation(tag, result.task_class, result.case_id, result.cost_usd)
            )
        except OSError as exc:
            lost.append(f"the cost ledger was not written: {_why(exc)}")
    if lost:
        result = result.model_copy(update={"harness_errors": (*result.harness_errors, *lost)})
    try:
        remember(settings, key, result)
    except OSError as exc:
        # an uncached result is only measured again next time; nothing of it is lost
        result = result.model_copy(
            update={
                "harness_errors": (
                    *result.harness_errors,
                    f"the result was not cached: {_why(exc)}",
                )
            }
        )
    return result


def _why(exc: OSError) -> str:
    return f"{exc.strerror or type(exc).__name__}" + (f" ({exc.filename})" if exc.filename else "")


# An attempt whose rubric was not started ahead (local:N, a Dask worker) starts it once its
# SUT has run this long, or as the SUT ends if sooner: attempts side by side start at once,
# and their SUTs should not start competing for the CPU with as many rubric interpreters
# starting too. An agent takes longer than this to start; a SUT done sooner waits for its
# rubric's start (about 50 ms) instead (docs/adr/0026-when-a-rubric-starts.md).
RUBRIC_START_DELAY_S = 0.3


@dataclass
class StagedAttempt:
    """An attempt's run directory and empty workspace, with its rubric started or to be
    started (:func:`stage_attempt`): what an attempt can set up before it runs, ahead of
    time. :func:`attempt_case` takes it over; one never used is closed (:meth:`close`: its
    rubric ended unasked, its directory removed)."""

    nodeid: str
    run_dir: Path
    workspace: Path
    rubric_mode: str
    task_class: LoadedTaskClass
    case: BenchCase
    case_dir: Path
    settings: RunSettings
    pending: PendingRubric | None = None
    _failed: Exception | None = None

    def start_rubric(self) -> PendingRubric:
        """Start the rubric (once); raises what starting it met, now or before."""
        if self._failed is not None:
            raise self._failed
        if self.pending is None:
            jail_user = self.settings.sut_policy.jail_user
            if self.rubric_mode == "bwrap" and jail_user is not None:
                hand_over(self.run_dir, jail_user)
            self.pending = start_rubric(
                self.task_class,
                self.case,
                self.case_dir,
                self.workspace,
                self.settings.rubric_sandbox,
                jail_user,
            )
        return self.pending

    def start_rubric_quietly(self) -> None:
        """:meth:`start_rubric`, keeping what it raises for the next call to raise (it is
        called from the SUT's wait loop, which must not be broken out of)."""
        try:
            self.start_rubric()
        except Exception as exc:
            self._failed = exc

    def end_rubric(self) -> None:
        if self.pending is not None:
            self.pending.close()

    def close(self) -> None:
        self.end_rubric()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def stage_attempt(
    task_class: LoadedTaskClass,
    entry: CaseEntry,
    settings: RunSettings,
    nodeid: str = "",
    *,
    rubric: bool = True,
) -> StagedAttempt:
    """Make an attempt's run directory and empty workspace and, with ``rubric``, start its
    rubric: the rubric's jail and interpreter come up and wait for their request while the
    workspace is filled and the SUT runs (or, started ahead, while the attempt before it
    runs). The rubric's jail user must enter the run directory to reach the workspace,
    which it binds live."""
    case = entry.case
    if case is None or entry.error is not None:
        raise ValueError(f"case {entry.name} did not load: {entry.error}")
    run_dir = Path(tempfile.mkdtemp(prefix=f"codegenie-{case.case_id[:40]}-"))
    try:
        rubric_mode = rubric_isolation(settings.rubric_sandbox, settings.sut_policy.jail_user)
        staged = StagedAttempt(
            nodeid,
            run_dir,
            workspace_of(run_dir),
            rubric_mode,
            task_class,
            case,
            entry.directory,
            settings,
        )
        if rubric:
            staged.start_rubric()
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return staged


def attempt_case(
    task_class: LoadedTaskClass,
    entry: CaseEntry,
    sut: SutSpec,
    settings: RunSettings,
    *,
    nodeid: str = "",
    hook: HookRunner | None = None,
    repeat: int = 1,
    staged: StagedAttempt | None = None,
) -> Attempt:
    """Run one attempt of a loaded case: workspace, SUT, checks, rubric. Nothing is kept
    but the ledger entry of the SUT's cost, written as the SUT ends when ``settings`` has a
    ledger (so a cost-capped session counts it even if scoring then fails);
    :func:`record_attempt` keeps the rest. ``staged`` is this attempt's run directory and
    rubric, started ahead (:func:`stage_attempt`); the attempt takes it over."""
    case = entry.case
    if case is None or entry.error is not None:
        if staged is not None:
            staged.close()
        raise ValueError(f"case {entry.name} did not load: {entry.error}")
    started = time.monotonic()
    jail_user = settings.sut_policy.jail_user
    # not staged ahead: the rubric starts once the SUT is under way (from this thread: a
    # jail dies with the thread that started it)
    after: tuple[float, Callable[[], None]] | None = None
    if staged is None:
        staged = stage_attempt(task_class, entry, settings, nodeid, rubric=False)
        after = (RUBRIC_START_DELAY_S, staged.start_rubric_quietly)
    run_dir, workspace, rubric_mode = staged.run_dir, staged.workspace, staged.rubric_mode
    later = ExitStack()
    try:
        later.callback(staged.end_rubric)
        prepare_workspace(task_class, entry, run_dir)
        with tag_invocation(
            settings.ledger, settings.run_scope, task_class.name, case.case_id
        ) as invocation:
            env = _contract_env(case, workspace, invocation.tag, settings, repeat)
            extra_ro = (settings.cassette_dir,) if settings.cassette_dir is not None else ()
            with _gateway(settings, task_class, case, repeat, run_dir, sut) as way:
                sut_run = run_sut(
                    sut,
                    case=case,
                    workspace=workspace,
                    env=env,
                    policy=settings.sut_policy,
                    run_dir=run_dir,
                    extra_ro=extra_ro,
                    hook=hook,
                    gateway=way[0] if way else None,
                    after=after,
                )
            metered = _metered(way[1]) if way else None
            cost = metered[0].cost_usd if metered else sut_run.cost_usd
            invocation.cost_usd = cost
        modes = _sut_failures(sut_run, case)
        if metered is not None:
            modes += metered[1]
        modes += tamper_failures(task_class, entry)
        if sut_run.workspace_overflow is None:  # never walk an oversized tree
            modes += escape_failures(run_dir, workspace)
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
            # started now if the SUT ended before it was
            verdict = staged.start_rubric().score(harness_output)
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
            cost_usd=cost,
            cost_source="gateway" if metered else "sut-reported",
            sut_reported_cost_usd=sut_run.cost_usd,
            model_usage=metered[0] if metered else None,
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
        later.close()  # a rubric never asked (the SUT overflowed, or an error) ends here
        if not settings.keep_workspaces:
            shutil.rmtree(run_dir, ignore_errors=True)
        elif settings.kept_dir is not None:
            keep(run_dir, settings.kept_dir / task_class.name / kept_name(case.case_id, repeat))
    transcript = metered[2] if metered else b""
    return Attempt(result, diff, cost_recorded=invocation.recorded, transcript=transcript)


def _metered(lease: AttemptLease) -> tuple[ModelUsage, list[FailureMode], bytes]:
    from pytest_codegenie_eval.execution.gateway.access import summarize

    return summarize(lease)


@contextmanager
def _gateway(
    settings: RunSettings,
    task_class: LoadedTaskClass,
    case: BenchCase,
    repeat: int,
    run_dir: Path,
    sut: SutSpec,
) -> Iterator[tuple[GatewayAccess, AttemptLease] | None]:
    """The attempt's model gateway while its SUT runs (``None`` when the gateway is off)."""
    if not settings.gateway.enabled or sut.kind == "noop":
        yield None
        return
    from pytest_codegenie_eval.execution.gateway.access import attempt_gateway

    ledger = settings.ledger
    with attempt_gateway(
        settings.gateway,
        task_class=task_class.name,
        case_id=case.case_id,
        repeat=repeat,
        run_dir=run_dir,
        jailed=settings.sut_policy.isolation(sut) == "bwrap",
        max_cost_usd=settings.max_cost_usd,
        spent_elsewhere=ledger.total_usd if ledger is not None else None,
    ) as way:
        yield way


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
