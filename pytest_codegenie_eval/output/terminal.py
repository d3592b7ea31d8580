"""The ``codegenie eval summary`` section of pytest's terminal report: what session end
produced, as lines of text (no decision is made here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pytest_codegenie_eval.evidence.promotion import format_verdict
from pytest_codegenie_eval.execution.sut import SutPolicy
from pytest_codegenie_eval.models import BenchRunReport, PromotionVerdict
from pytest_codegenie_eval.output.untrusted_text import safe_line


class Outcome(Protocol):
    """What session end produced for one task class, as the summary reads it."""

    @property
    def report(self) -> BenchRunReport: ...
    @property
    def report_path(self) -> Path | None: ...
    @property
    def chain_head(self) -> str | None: ...
    @property
    def verdict(self) -> PromotionVerdict | None: ...
    @property
    def recommendation(self) -> Path | None: ...
    @property
    def error(self) -> str | None: ...


class Summary(Protocol):
    """What session end produced, as the summary reads it."""

    @property
    def outcomes(self) -> Sequence[Outcome]: ...
    @property
    def verdict_errors(self) -> Sequence[str]: ...
    @property
    def write_errors(self) -> Sequence[str]: ...
    @property
    def comparisons(self) -> Sequence[str]: ...
    @property
    def html_index(self) -> Path | None: ...
    @property
    def jsonl_path(self) -> str | None: ...
    @property
    def gate(self) -> str | None: ...


@dataclass(frozen=True)
class SessionFacts:
    """What the summary says about the session itself."""

    sut_policy: SutPolicy
    executor_label: str
    kept_dir: Path | None  # --codegenie-keep-workspaces
    compare_task_class: str | None  # of the --codegenie-compare-to run
    tampered_after_pass: tuple[str, ...]


def _cached_cost(r: BenchRunReport) -> str:
    """What the cached results cost when they were measured: a rerun of a stochastic agent
    that hits the cache is not a free, fresh measurement."""
    origins = [c.cached_from for c in r.cases if c.cached and c.cached_from is not None]
    if not origins:
        return ""
    spent = sum(o.cost_usd for o in origins)
    sessions = len({o.run_scope for o in origins})
    return (
        f" (cached results: measured earlier in {sessions} session(s) for {spent:.4f} USD; "
        "--codegenie-no-cache measures a stochastic agent afresh)"
    )


def gateway_line(r: BenchRunReport) -> str | None:
    """What the model gateway metered over the run's cases, or ``None`` without it."""
    metered = [c for c in r.cases if c.model_usage is not None]
    if not metered:
        return None
    usages = [c.model_usage for c in metered if c.model_usage is not None]
    calls = sum(u.calls for u in usages)
    claimed = sum(c.sut_reported_cost_usd or 0.0 for c in metered)
    worst_p95 = max(u.latency_p95_s for u in usages)
    line = (
        f"model gateway: {calls} call(s) in {len(metered)} attempt(s), "
        f"{sum(u.input_tokens for u in usages)} input / "
        f"{sum(u.output_tokens for u in usages)} output tokens "
        f"({sum(u.cached_input_tokens for u in usages)} cached), metered cost "
        f"{sum(u.cost_usd for u in usages):.4f} USD (the SUT claimed {claimed:.4f}), "
        f"slowest attempt p95 latency {worst_p95:.3f} s"
    )
    errors = sum(u.upstream_errors for u in usages)
    unpriced = sum(u.unpriced_calls for u in usages)
    if errors:
        line += f", {errors} upstream error(s) (gateway.upstream_error: not the agent's)"
    if unpriced:
        line += f", {unpriced} call(s) of models the price table does not price (cost 0)"
    if all(u.replayed for u in usages):
        line += "; replayed from cassettes, no upstream contacted"
    return line


def _repeat_line(r: BenchRunReport) -> str:
    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    k = r.repeats
    return (
        f"repeats: {k} per case ({len(r.cases)} attempts); a case passes when all {k} do; "
        f"pass@1 {shown(r.pass_at_1)}, pass@{k} {shown(r.pass_at_k)}, "
        f"pass^{k} {shown(r.pass_hat_k)}, within-case variance "
        f"{shown(r.within_case_variance)}, clustered SE {shown(r.clustered_standard_error)}"
    )


def _sandbox_warning(facts: SessionFacts) -> str:
    from pytest_codegenie_eval.execution.isolation.sandbox import bwrap_status

    policy = facts.sut_policy
    why = (
        "--codegenie-sut-sandbox=none was given"
        if policy.sandbox == "none"
        else bwrap_status(policy.jail_user).reason or "the sandbox was unavailable for some cases"
    )
    return (
        f"the SUT ran without its sandbox, environment allowlist only ({why}); it could "
        "read the answer keys, so tiers requiring bwrap refuse this evidence "
        "(--codegenie-require-sandbox makes this an error)"
    )


def summary_lines(end: Summary, facts: SessionFacts) -> list[str]:
    """The lines of the ``codegenie eval summary`` section, in order (unescaped: the caller
    prints each through :func:`~pytest_codegenie_eval.output.untrusted_text.safe_lines`)."""
    lines: list[str] = []
    for outcome in end.outcomes:
        r = outcome.report
        if r.complete:
            state = "complete"
        elif r.incomplete_reason == "shard" and r.shard is not None:
            state = f"shard {r.shard.label} of {r.cases_total} cases"
        elif r.incomplete_reason == "cost_cap":
            state = f"PARTIAL ({r.skipped_count} skipped: cost cap)"
        elif r.incomplete_reason == "infrastructure":
            state = f"PARTIAL ({r.infrastructure_failures} attempt(s) failed upstream)"
        elif r.incomplete_reason == "harness_write":
            state = f"PARTIAL ({r.harness_write_failures} attempt(s) not fully kept)"
        else:
            ran = len({c.case_id for c in r.cases})
            state = f"PARTIAL (subset: {ran} of {r.cases_total} cases selected)"
        if r.shard is not None:
            empty = " (an empty shard: no case falls in it)" if not r.cases else ""
            lines.append(
                f"SHARD {r.shard.label} of {r.task_class}{empty}: one part of a run, not "
                "evidence alone; join the shards with `codegenie-eval merge`"
            )
        if not r.complete and r.incomplete_reason != "shard":
            why = {
                "cost_cap": "the cost cap",
                "infrastructure": "model calls failed upstream (gateway.upstream_error), not "
                "the agent; run it again",
                "harness_write": "the harness could not keep part of what it measured (a "
                "full or read-only disk; the scores stand, see harness_errors)",
            }.get(r.incomplete_reason or "", "a subset of cases")
            lines.append(
                f"PARTIAL RUN of {r.task_class}: {why}; not complete evidence for any tier"
            )
        lines.append(
            f"{r.task_class}: {r.n} case{'' if r.n == 1 else 's'}, {r.passed_count} passed, "
            f"mean {r.mean:.3f}, "
            f"stddev {r.stddev:.3f}, lower_bound_95 {r.lower_bound_95:.3f} "
            f"({r.bound.method}), cost {r.total_cost_usd:.4f} USD, "
            f"cache hits {r.cache_hits}/{len(r.cases)}, {state}" + _cached_cost(r)
        )
        labelled = f"  label: {r.label}" if r.label else ""
        lines.append(f"  sut: {r.sut}{labelled}  run id: {r.run_id}")
        if r.repeats > 1:
            lines.append("  " + _repeat_line(r))
        metered = gateway_line(r)
        if metered is not None:
            lines.append("  " + metered)
        if r.sut_isolation:
            how = [f"network {r.sut_network}"]
            if r.jail_uid:
                how.append(f"host uid {r.jail_uid}")
            if r.sut_memory_limit:
                how.append(f"memory limit {r.sut_memory_limit}")
            lines.append(f"  sut isolation: {r.sut_isolation} ({', '.join(how)})")
        if r.sut_isolation in ("env-only", "mixed"):
            lines.append(f"  WARNING: {_sandbox_warning(facts)}")
        tries = [a for c in r.cases for a in c.executor_attempts]
        if tries:
            workers = len({a.worker for a in tries})
            lost = sum(1 for a in tries if a.outcome == "lost")
            lines.append(
                f"  executor: {facts.executor_label}: "
                f"{sum(1 for c in r.cases if c.executor_attempts)} attempt(s) on {workers} "
                f"worker(s)" + (f", {lost} lost with their worker and retried" if lost else "")
            )
        elif facts.executor_label.startswith("local:"):
            at_once = facts.executor_label.partition(":")[2]
            lines.append(
                f"  executor: {facts.executor_label}: up to {at_once} attempts at once in this "
                "pytest process"
            )
        if r.rubric_isolation:
            lines.append(f"  rubric isolation: {r.isolation_class} ({r.rubric_isolation})")
        not_kept = [error for c in r.cases for error in c.harness_errors]
        if not_kept:
            more = f" (and {len(not_kept) - 1} more)" if len(not_kept) > 1 else ""
            lines.append(f"  NOT KEPT: {safe_line(not_kept[0])}{more}")
        if outcome.error:
            lines.append(f"  REPORT NOT RECORDED: {outcome.error}")
        else:
            lines.append(f"  report: {outcome.report_path}")
            lines.append(f"  chain head: {outcome.chain_head}")
        if outcome.verdict is not None:
            lines += ["  " + line for line in format_verdict(outcome.verdict).splitlines()]
        if outcome.recommendation is not None:
            lines.append(f"  recommendation: {outcome.recommendation}")
    kept = facts.kept_dir
    if kept is not None and end.outcomes:
        lines.append(f"workspaces kept in: {kept}/<task class>/<case id>[-r<attempt>]")
    lines += [f"VERDICT ERROR: {error}" for error in end.verdict_errors]
    if end.gate is not None:
        lines.append(end.gate)
    lines += [f"WRITE ERROR: {error}" for error in end.write_errors]
    lines += end.comparisons
    if facts.compare_task_class is not None and not end.comparisons:
        lines.append(
            f"COMPARE: the --codegenie-compare-to run is of task class "
            f"{facts.compare_task_class!r}, which this session did not run"
        )
    tampered = facts.tampered_after_pass
    if tampered:
        lines.append(
            f"TAMPERED: {', '.join(tampered)} passed, but the bench files they were "
            "scored against changed before the session ended (sut.tampered_bench); "
            "the run fails"
        )
    if end.html_index is not None:
        lines.append(f"results page: {end.html_index}")
    if end.jsonl_path and end.jsonl_path != "-":
        lines.append(f"jsonl: {end.jsonl_path}")
    return lines


def progress_line(
    done: int, total: int | None, elapsed_s: float, spent_usd: float, failed: int
) -> str:
    """The live progress line of a long run: cases done (of how many), failures, elapsed
    time, spend so far and, once the total is known, an estimate of the time left."""
    of = f"/{total}" if total else ""
    parts = [f"codegenie progress: {done}{of} case attempt(s) done", f"{failed} failed"]
    parts.append(f"{_duration(elapsed_s)} elapsed")
    parts.append(f"{spent_usd:.4f} USD spent")
    if total and 0 < done < total:
        parts.append(f"about {_duration(elapsed_s / done * (total - done))} left")
    return ", ".join(parts)


def _duration(seconds: float) -> str:
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
