"""Wire types: every structure that crosses a process, a file or a public API boundary.

All models are frozen and reject unknown fields, so a typo in a case.toml or a rubric's
output is an error naming the field, never a silently ignored value.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Severity = Literal["block", "warn", "info"]
CurationClass = Literal["held-out", "rag-corpus-derived"]
IsolationClass = Literal["subprocess", "microvm"]
BoundMethod = Literal["bca", "clopper-pearson", "betting", "wilson", "none"]
CaseStatus = Literal["scored", "skipped_cost_cap", "load_error", "crashed"]
# How a child really ran, as every case result records it: bubblewrap, namespaces (a rubric
# where bwrap is missing), the environment allowlist alone, or inside the harness (the hook)
Isolation = Literal["bwrap", "namespaces", "env-only", "in-process"]
# How a SUT may have run, strongest first; a tier requiring one accepts any stronger, and
# "in-process" counts only where a tier names it explicitly
SUT_ISOLATIONS: tuple[Isolation, ...] = ("bwrap", "env-only", "in-process")
# A run id that starts with this marks a partial run (cost cap, or a subset of the cases).
PARTIAL_PREFIX = "partial:"

_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")

UnitFloat = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FailureMode(_Wire):
    """One thing that went wrong with a case, with the severity of the task class taxonomy."""

    code: Annotated[str, Field(min_length=1, max_length=200)]
    severity: Severity
    detail: str = ""


class BenchScore(_Wire):
    """What a rubric decides about one case."""

    case_id: str
    score: UnitFloat
    breakdown: dict[str, UnitFloat] = Field(default_factory=dict)
    failure_modes: tuple[FailureMode, ...] = ()


class BenchCase(_Wire):
    """A case.toml, validated strictly: TOML has real types, so ``sut_timeout_s = true`` or
    ``pass_threshold = "1"`` is an error naming the key, never a silent conversion (an integer
    is still a number of seconds)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    case_id: str
    title: Annotated[str, Field(min_length=1)]
    curation_class: CurationClass
    cassette_canary_pin: Annotated[str, Field(min_length=1, max_length=128)]
    pass_threshold: UnitFloat = 1.0
    sut_timeout_s: Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False)] = 300.0
    rubric_timeout_s: Annotated[float, Field(gt=0, le=3_600, allow_inf_nan=False)] = 60.0
    instructions: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)

    @field_validator("case_id")
    @classmethod
    def _case_id_is_safe(cls, value: str) -> str:
        if not _CASE_ID.match(value):
            raise ValueError(
                "case_id must start with a letter or digit and use only letters, digits, "
                "'.', '_', '+' and '-' (at most 200 characters)"
            )
        return value

    @field_validator("cassette_canary_pin")
    @classmethod
    def _pin_is_hex(cls, value: str) -> str:
        if not _HEX.match(value):
            raise ValueError("cassette_canary_pin must be a hexadecimal string")
        return value.lower()


class CachedFrom(_Wire):
    """Where a cached result was measured: its session and what the SUT cost then."""

    run_scope: str
    cost_usd: NonNegFloat
    measured_at: str


class ExecutorAttempt(_Wire):
    """One try of a case on a Dask worker (``--codegenie-executor``): a worker that dies
    mid-case is retried once elsewhere, and both tries are recorded."""

    worker: str
    outcome: Literal["completed", "lost"]
    # what the SUT reported; None when the worker died before the SUT could report it
    cost_usd: NonNegFloat | None = None


class ModelUsage(_Wire):
    """What the model gateway metered for one attempt: its model calls, tokens, latency and
    cost (from the price table; ``unpriced_calls`` had usage the table does not price)."""

    calls: Annotated[int, Field(ge=0)] = 0
    input_tokens: Annotated[int, Field(ge=0)] = 0
    output_tokens: Annotated[int, Field(ge=0)] = 0
    cached_input_tokens: Annotated[int, Field(ge=0)] = 0
    cost_usd: NonNegFloat = 0.0
    unpriced_calls: Annotated[int, Field(ge=0)] = 0
    upstream_errors: Annotated[int, Field(ge=0)] = 0
    latency_p50_s: NonNegFloat = 0.0
    latency_p95_s: NonNegFloat = 0.0
    replayed: bool = False  # answered from a cassette (--codegenie-model-gateway=replay)
    # HTTPS tunnels the agent asked for (--codegenie-sut-egress): host:port of each
    egress_allowed: tuple[str, ...] = ()
    egress_refused: tuple[str, ...] = ()
    transcript_digest: str = ""  # BLAKE3 of the attempt's transcript in <state dir>/transcripts/


CostSource = Literal["gateway", "sut-reported", "none"]


class CaseResult(_Wire):
    """The harness's record of one case in one run (what JSONL case lines are made of)."""

    task_class: str
    case_id: str
    nodeid: str = ""
    status: CaseStatus = "scored"
    score: UnitFloat = 0.0
    passed: bool = False
    pass_threshold: UnitFloat = 1.0
    breakdown: dict[str, UnitFloat] = Field(default_factory=dict)
    failure_modes: tuple[FailureMode, ...] = ()
    cost_usd: NonNegFloat = 0.0
    cached: bool = False
    duration_s: NonNegFloat = 0.0
    curation_class: CurationClass | None = None
    case_digest: str = ""
    sut: str = ""
    sut_digest: str = ""
    rubric_digest: str = ""
    sut_exit_code: int | None = None
    # how the SUT really ran: "bwrap", "env-only" or "in-process" (the pluggy hook)
    sut_isolation: str = ""
    sut_network: str = ""  # "none" (sandboxed, network off) or "host"
    rubric_isolation: str = ""  # "bwrap", "namespaces" or "env-only": how the rubric ran
    # the host uid the SUT ran as (its jails' user when the harness is root); None: unknown
    jail_uid: int | None = None
    # how the SUT's memory limit held: "cgroup" (all its processes together) or
    # "per-process" (an address-space rlimit on each, where no cgroup could be made)
    sut_memory_limit: str = ""
    stdout_tail: str = ""
    stderr_tail: str = ""
    diff_digest: str = ""  # BLAKE3 of the diff the SUT made, kept in <state dir>/diffs/
    repeat: Annotated[int, Field(ge=1)] = 1  # which attempt of the case (--codegenie-repeat)
    # a cached result: the session that measured it and its cost then (cost_usd is 0 now)
    cached_from: CachedFrom | None = None
    # under a Dask executor: each try of the case and the worker that ran it
    executor_attempts: tuple[ExecutorAttempt, ...] = ()
    # where cost_usd comes from: the gateway's metering, the SUT's own report, or nothing
    cost_source: CostSource = "sut-reported"
    sut_reported_cost_usd: NonNegFloat | None = None  # what the SUT claimed, kept beside
    model_usage: ModelUsage | None = None  # --codegenie-model-gateway: what it metered
    # what the harness failed to keep about this attempt (a full or read-only disk: its
    # cache entry, ledger line, diff or transcript); the result itself stands as measured
    harness_errors: tuple[str, ...] = ()

    @property
    def block_failures(self) -> tuple[FailureMode, ...]:
        return tuple(fm for fm in self.failure_modes if fm.severity == "block")


class BoundInfo(_Wire):
    """How lower_bound_95 was obtained, so anyone can recompute it."""

    method: BoundMethod
    lower_bound_95: UnitFloat
    level: float = 0.95  # one-sided coverage of the bound
    resamples: int = 0
    seed: int = 0
    z0: float | None = None
    acceleration: float | None = None
    tie_rule: str = ""
    note: str = ""
    # both candidates of lower_bound_95 (the smaller is the gate's): the seed's BCa bound,
    # and the finite-sample one (clopper-pearson for 0/1 scores, betting otherwise)
    bca_lower_bound: float | None = None
    valid_lower_bound: float | None = None
    valid_method: str = ""

    @model_validator(mode="after")
    def _finite(self) -> BoundInfo:
        for value in (self.z0, self.acceleration):
            if value is not None and not math.isfinite(value):
                raise ValueError("z0 and acceleration must be finite")
        return self


class CaseRepeats(_Wire):
    """One case's attempts under ``--codegenie-repeat``: the case is the unit of evidence."""

    case_id: str
    scores: tuple[UnitFloat, ...]  # by attempt, r1 first
    passes: int  # attempts that passed
    mean: UnitFloat  # what the aggregate and the bound use for this case
    passed: bool  # every attempt passed (what the gate's case floor counts, ADR 0016)


class ShardCase(_Wire):
    """One case of the task class a shard belongs to (every case, not only the shard's)."""

    case_id: str
    case_digest: str = ""  # empty for a case that could not be loaded


class ShardInfo(_Wire):
    """What a ``--codegenie-shard=I/N`` report is a part of."""

    index: Annotated[int, Field(ge=1)]
    count: Annotated[int, Field(ge=1)]
    rubric_digest: str = ""  # of the task class definition the shard ran against
    cases: tuple[ShardCase, ...]  # the task class's full case list, sorted by case_id

    @model_validator(mode="after")
    def _index_in_range(self) -> ShardInfo:
        if self.index > self.count:
            raise ValueError(f"shard index {self.index} is greater than the count {self.count}")
        return self

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"


class MergedShard(_Wire):
    """One shard report a merged report was built from (``codegenie-eval merge``)."""

    index: Annotated[int, Field(ge=1)]
    count: Annotated[int, Field(ge=1)]
    run_id: str
    report_digest: str  # BLAKE3 of the shard report file's bytes
    source: str  # the file it was read from
    chain_head: str | None = None  # head of the shard's own audit chain, when it had one


class BenchRunReport(_Wire):
    """One task class in one session: the evidence a team defends.

    With ``repeats`` K > 1, ``n`` counts cases (not attempts), ``mean`` and the bound are over
    per-case means, ``passed_count`` counts cases whose every attempt passed, and ``cases``
    holds every attempt.
    """

    schema_version: Literal[1] = 1
    run_id: str
    task_class: str
    created_at: str
    harness_version: str
    sut: str = ""
    # --codegenie-label: the name the user gives the agent (a series on the results page);
    # metadata only, never part of the run id
    label: Annotated[str, Field(max_length=200)] = ""
    sut_digest: str = ""
    rubric_digest: str = ""
    isolation_class: IsolationClass = "subprocess"
    sut_isolation: str = ""  # one value, or "mixed" when cases differ
    sut_network: str = ""
    rubric_isolation: str = ""
    jail_uid: str = ""  # the host uid the SUTs ran as, or "mixed" when cases differ
    sut_memory_limit: str = ""  # "cgroup", "per-process" or "mixed"
    complete: bool = True
    # what the task class declares its scores to be; it chose the bound's method
    scores: Literal["graded", "pass_fail"] = "graded"
    # "shard": one part of a --codegenie-shard run; `codegenie-eval merge` makes the whole
    # "infrastructure": some model calls failed upstream (gateway.upstream_error), so the
    # agent was not measured on every case
    # "harness_write": the harness could not keep part of what it measured (a full or
    # read-only disk); the scores stand, but the run is not complete evidence
    incomplete_reason: (
        Literal["cost_cap", "subset", "shard", "infrastructure", "harness_write"] | None
    ) = None
    infrastructure_failures: int = 0  # attempts with a failure of the infrastructure
    harness_write_failures: int = 0  # attempts with harness_errors
    cases_total: int = 0
    n: int = 0
    passed_count: int = 0
    mean: UnitFloat = 0.0
    stddev: NonNegFloat = 0.0
    lower_bound_95: UnitFloat = 0.0
    bound: BoundInfo = BoundInfo(method="none", lower_bound_95=0.0)
    total_cost_usd: NonNegFloat = 0.0
    cache_hits: int = 0
    skipped_count: int = 0
    block_failure_count: int = 0
    repeats: Annotated[int, Field(ge=1)] = 1
    pass_at_1: UnitFloat | None = None  # mean share of a case's attempts that passed
    pass_at_k: UnitFloat | None = None  # share of cases with at least one passing attempt
    pass_hat_k: UnitFloat | None = None  # share of cases whose K attempts all passed
    within_case_variance: NonNegFloat | None = None  # mean variance of a case's attempts
    clustered_standard_error: NonNegFloat | None = None  # of the mean, cases as clusters
    case_repeats: tuple[CaseRepeats, ...] = ()  # per case, when repeats > 1
    shard: ShardInfo | None = None  # set on the report of one shard
    merged_from: tuple[MergedShard, ...] = ()  # set on a report merged from shards
    cases: tuple[CaseResult, ...] = ()


class PromotionVerdict(_Wire):
    """The read-only answer to "has this agent earned TIER on this task class?"."""

    task_class: str
    tier: str
    current_tier: str | None = None
    evidence_sufficient: bool
    reasons: tuple[str, ...] = ()
    lower_bound_95: float | None = None
    threshold: float | None = None
    passed_count: int = 0
    min_cases: int | None = None
    block_failure_count: int = 0
    chain_verified: bool = False
    chain_head: str | None = None
    run_ids: tuple[str, ...] = ()
    report_digests: tuple[str, ...] = ()
    isolation_classes: tuple[str, ...] = ()
    uncalibrated: bool = True
    # when the bound falls short: how many cases would clear the threshold (evidence/planning.py)
    next_step: str | None = None
    # runs of the same agent on the same bench judged together (their attempts pooled)
    pooled_runs: Annotated[int, Field(ge=1)] = 1
