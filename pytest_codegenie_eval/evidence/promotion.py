"""The promotion gate: a read-only answer to "has this agent earned TIER on this task class?".

The gate judges evidence and says why it falls short; it never grants a tier. Granting is a
human edit of ``current_tiers`` in ``docs/trust-tiers.yaml`` through review, which is why
:meth:`PromotionGate.apply` always raises and ``evidence.write_recommendation`` only writes a
new file under the state directory (see ``docs/adr/0003-uncalibrated-trust-tiers.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

from pytest_codegenie_eval.errors import (
    CodegenieEvalError,
    IncompleteReportForPromotion,
    PromotionMustBeHumanAuthorized,
)
from pytest_codegenie_eval.evidence.tiers import TierConfig, UnknownTier
from pytest_codegenie_eval.models import BenchRunReport, PromotionVerdict
from pytest_codegenie_eval.registry import TaskClass

__all__ = [
    "EvidenceTaskClassMismatch",
    "PromotionGate",
    "UnknownTier",
    "format_verdict",
]


# Reason texts are a stable, user-visible surface (terminal verdict, recommendation JSON):
# keep them and their order as they are.
REASON_NO_REPORTS = "no run reports in evidence window"
REASON_CHAIN = "audit chain does not verify"
REASON_INCOMPLETE = "report incomplete (cost cap)"
REASON_SUBSET = "report incomplete (subset of cases selected)"
REASON_INFRASTRUCTURE = (
    "report incomplete (model calls failed upstream, gateway.upstream_error: the "
    "infrastructure, not the agent; run it again)"
)
REASON_HARNESS_WRITE = (
    "the harness could not keep part of what it measured (a full or read-only disk: see "
    "harness_errors in the report); not complete evidence: free space and run it again"
)
REASON_SHARD = "report is one shard of a run (join the shards with codegenie-eval merge)"
REASON_MIXED_ISOLATION = "mixed isolation classes in evidence window"
_NAMED_CASES = 10  # how many short-falling cases a reason names before "and N more"


def _regime(report: BenchRunReport) -> tuple[str, str, str, str]:
    """How a run was isolated, as far as it changes what its scores mean."""
    return (
        report.isolation_class,
        report.sut_isolation,
        report.sut_network,
        report.rubric_isolation,
    )


class EvidenceTaskClassMismatch(CodegenieEvalError, ValueError):
    """A report of another task class was offered as evidence: a caller bug, never a reason."""

    def __init__(self, run_id: str, report_task_class: str, task_class: str) -> None:
        self.run_id = run_id
        self.report_task_class = report_task_class
        self.task_class = task_class
        super().__init__(
            f"run {run_id} belongs to task class {report_task_class!r} and cannot be "
            f"evidence for {task_class!r}"
        )


def _format_pair(value: float, threshold: float) -> tuple[str, str]:
    # Two decimals read best, but 0.699 vs 0.70 would print "0.70 < 0.70": add digits until
    # the two numbers visibly differ.
    for digits in range(2, 7):
        left, right = f"{value:.{digits}f}", f"{threshold:.{digits}f}"
        if left != right:
            return left, right
    return repr(value), repr(threshold)


def _block_failures(report: BenchRunReport) -> int:
    # A report may carry only its aggregate (cases trimmed) or only its cases; trust the
    # larger count so that neither shape can hide a block failure.
    from_cases = sum(len(case.block_failures) for case in report.cases)
    return max(from_cases, report.block_failure_count)


class PromotionGate:
    """Judges a task class's evidence window against a tier of a :class:`TierConfig`.

    The gate is pure: :meth:`evaluate` reads no file and no clock, so the same inputs always
    give the same verdict. It is also read-only: :meth:`apply` always raises.
    """

    def __init__(self, config: TierConfig) -> None:
        self._config = config

    @property
    def config(self) -> TierConfig:
        """The tier configuration the gate judges against."""
        return self._config

    def evidence_window(
        self, reports: Sequence[BenchRunReport], *, task_class: str
    ) -> tuple[BenchRunReport, ...]:
        """The last ``config.evidence_window`` reports of *task_class* in *reports*.

        *reports* must be ordered oldest first (the order of the run directory's names); the
        result keeps that order, so its last report is the newest.
        """
        own = [report for report in reports if report.task_class == task_class]
        return tuple(own[-self._config.evidence_window :])

    def _floor(self, task_class: TaskClass, tier: str) -> int:
        """The task class's case floor for *tier*, once the tier is known to the config too."""
        if tier not in self._config.thresholds:
            raise UnknownTier(
                tier,
                declared=self._config.tiers,
                where="the thresholds of the trust tier config",
                task_class=task_class.name,
            )
        floors = task_class.min_cases_for_promotion
        if tier not in floors:
            raise UnknownTier(
                tier,
                declared=sorted(floors),
                where=f"min_cases_for_promotion of {task_class.where}",
                task_class=task_class.name,
                hint="add a floor for it to @register_task_class(..., min_cases_for_promotion=...)",
            )
        return floors[tier]

    def _weakly_isolated(self, reports: Sequence[BenchRunReport], tier: str) -> list[str]:
        """``case_id (isolation)`` of every scored case in the window whose SUT ran with
        less isolation than the tier requires."""
        weak: list[str] = []
        for report in reports:
            if not report.cases and report.n:
                # a report trimmed to its aggregate: its one recorded isolation decides
                if not self._config.isolation_suffices(tier, report.sut_isolation):
                    shown = report.sut_isolation or "unrecorded"
                    weak.append(f"run {report.run_id[:16]} ({shown}, cases not listed)")
                continue
            for case in report.cases:
                if case.status != "scored":
                    continue
                if not self._config.isolation_suffices(tier, case.sut_isolation):
                    weak.append(f"{case.case_id} ({case.sut_isolation or 'unrecorded'})")
        return sorted(set(weak))

    def _unmetered(self, reports: Sequence[BenchRunReport], tier: str) -> list[str]:
        """``case_id`` of every scored case in the window without gateway-metered cost and
        a transcript, when *tier* requires them."""
        if not self._config.metering_required(tier):
            return []
        short: list[str] = []
        for report in reports:
            if not report.cases and report.n:
                short.append(f"run {report.run_id[:16]} (cases not listed)")
            for case in report.cases:
                usage = case.model_usage
                metered = case.cost_source == "gateway" and usage is not None
                if case.status == "scored" and not (metered and usage and usage.transcript_digest):
                    short.append(case.case_id)
        return sorted(set(short))

    def evaluate(
        self,
        *,
        task_class: TaskClass,
        tier: str,
        reports: Sequence[BenchRunReport],
        chain_verified: bool,
        chain_head: str | None = None,
        report_digests: Sequence[str] = (),
        pooled: Sequence[BenchRunReport] = (),
        pooled_digests: Sequence[str] = (),
    ) -> PromotionVerdict:
        """Judge *reports* (the evidence window, newest last) for promotion to *tier*.

        *pooled* are earlier complete runs of the same agent on the same bench definition as
        the newest report (:func:`same_measurement`): their attempts count as further
        attempts of each case (:func:`pool`), so re-running adds attempts, not lottery
        tickets, and the bound and the floor are judged on the pooled run.

        Evidence is sufficient only when all hold: the newest report's ``lower_bound_95``
        reaches the tier threshold; its ``passed_count`` reaches the task class's floor for
        the tier; no case of any report in the window has a block-severity failure mode; the
        audit chain verifies; every report in the window is complete; every report in the
        window was isolated alike (isolation class, SUT isolation and network, rubric
        isolation); and every scored case's SUT ran with at least the isolation
        the tier requires (``required_sut_isolation``, ``bwrap`` by default). ``reasons``
        names every condition that fails, in that order.

        Raises :class:`UnknownTier` when *tier* has no threshold in the config or no floor in
        ``task_class.min_cases_for_promotion``, and :class:`EvidenceTaskClassMismatch` when a
        report belongs to another task class.
        """
        floor = self._floor(task_class, tier)  # raises UnknownTier before anything is judged
        threshold = self._config.threshold(tier)
        for report in reports:
            if report.task_class != task_class.name:
                raise EvidenceTaskClassMismatch(report.run_id, report.task_class, task_class.name)

        reasons: list[str] = []
        newest = reports[-1] if reports else None
        pooled = [r for r in pooled if newest is not None and same_measurement(r, newest)]
        if newest is not None and pooled:
            newest = pool([*pooled, newest])
        judged = [*pooled, *reports]
        if newest is None:
            reasons.append(REASON_NO_REPORTS)
        else:
            if newest.lower_bound_95 < threshold:
                shown, needed = _format_pair(newest.lower_bound_95, threshold)
                reasons.append(f"lower_bound_95 {shown} < {tier} threshold {needed}")
            if newest.passed_count < floor:
                reasons.append(f"case count below floor ({newest.passed_count} < {floor})")
        block_count = sum(_block_failures(report) for report in judged)
        if block_count:
            noun = "mode" if block_count == 1 else "modes"
            reasons.append(f"{block_count} block-severity failure {noun}")
        if not chain_verified:
            reasons.append(REASON_CHAIN)
        incomplete = [report for report in reports if not report.complete]
        if incomplete:
            # a run stopped by the cost cap and one that selected a subset (-k, node ids)
            # are both partial evidence; name the cap whenever it is involved
            why = {r.incomplete_reason for r in incomplete}
            if "cost_cap" in why:
                reasons.append(REASON_INCOMPLETE)
            elif "infrastructure" in why:
                reasons.append(REASON_INFRASTRUCTURE)
            elif "harness_write" in why:
                reasons.append(REASON_HARNESS_WRITE)
            else:
                reasons.append(REASON_SHARD if why == {"shard"} else REASON_SUBSET)
        isolation_classes = tuple(sorted({report.isolation_class for report in reports}))
        if len({_regime(report) for report in reports}) > 1:
            # scores from runs isolated differently (sandboxed or not, network on or off)
            # measure different things and are not pooled into one decision
            reasons.append(REASON_MIXED_ISOLATION)
        weak = self._weakly_isolated(reports, tier)
        if weak:
            required = self._config.required_isolation(tier)
            shown = ", ".join(weak[:_NAMED_CASES])
            more = f" and {len(weak) - _NAMED_CASES} more" if len(weak) > _NAMED_CASES else ""
            reasons.append(f"SUT isolation below {required} required for {tier}: {shown}{more}")
        unmetered = self._unmetered(reports, tier)
        if unmetered:
            shown = ", ".join(unmetered[:_NAMED_CASES])
            more = (
                f" and {len(unmetered) - _NAMED_CASES} more"
                if len(unmetered) > _NAMED_CASES
                else ""
            )
            reasons.append(
                f"{tier} requires cost metered by the model gateway and a kept transcript "
                f"(requires_metered_cost); cases without: {shown}{more}"
            )

        next_step = None
        if newest is not None and newest.lower_bound_95 < threshold:
            next_step = _next_step(newest, tier, threshold)
        return PromotionVerdict(
            next_step=next_step,
            task_class=task_class.name,
            tier=tier,
            current_tier=self._config.current_tier(task_class.name),
            evidence_sufficient=not reasons,
            reasons=tuple(reasons),
            lower_bound_95=newest.lower_bound_95 if newest is not None else None,
            threshold=threshold,
            passed_count=newest.passed_count if newest is not None else 0,
            min_cases=floor,
            block_failure_count=block_count,
            chain_verified=chain_verified,
            chain_head=chain_head,
            run_ids=tuple(report.run_id for report in judged),
            report_digests=(*pooled_digests[: len(pooled)], *report_digests),
            pooled_runs=len(pooled) + 1 if pooled else 1,
            isolation_classes=isolation_classes,
            uncalibrated=self._config.uncalibrated,
        )

    def evaluate_report(
        self,
        report: BenchRunReport,
        *,
        task_class: TaskClass,
        tier: str,
        chain_verified: bool,
        chain_head: str | None = None,
        report_digest: str | None = None,
    ) -> PromotionVerdict:
        """Judge one report, handed over as the whole evidence, for promotion to *tier*.

        Raises :class:`IncompleteReportForPromotion` when the report is not complete: a run
        the cost cap stopped, a subset of the cases or one shard is no evidence to judge on
        its own. (:meth:`evaluate`, which judges a recorded window, names such a report in
        its reasons instead.) Otherwise it is :meth:`evaluate` over that one report.
        """
        if not report.complete:
            raise IncompleteReportForPromotion(
                report.run_id, report.task_class, report.incomplete_reason
            )
        return self.evaluate(
            task_class=task_class,
            tier=tier,
            reports=[report],
            chain_verified=chain_verified,
            chain_head=chain_head,
            report_digests=(report_digest,) if report_digest else (),
        )

    def highest_sufficient_tier(
        self,
        *,
        task_class: TaskClass,
        reports: Sequence[BenchRunReport],
        chain_verified: bool,
        chain_head: str | None = None,
        report_digests: Sequence[str] = (),
        pooled: Sequence[BenchRunReport] = (),
        pooled_digests: Sequence[str] = (),
    ) -> str | None:
        """The highest configured tier the evidence is sufficient for, or ``None``.

        Tiers the task class declares no floor for are skipped (they cannot be earned), so
        this never raises :class:`UnknownTier`.
        """
        verdict = self.best_verdict(
            task_class=task_class,
            reports=reports,
            chain_verified=chain_verified,
            chain_head=chain_head,
            report_digests=report_digests,
            pooled=pooled,
            pooled_digests=pooled_digests,
        )
        return verdict.tier if verdict is not None else None

    def best_verdict(
        self,
        *,
        task_class: TaskClass,
        reports: Sequence[BenchRunReport],
        chain_verified: bool,
        chain_head: str | None = None,
        report_digests: Sequence[str] = (),
        pooled: Sequence[BenchRunReport] = (),
        pooled_digests: Sequence[str] = (),
    ) -> PromotionVerdict | None:
        """The sufficient verdict of the highest earnable tier, or ``None`` (see above)."""
        for tier in reversed(self._config.tiers):
            if tier not in task_class.min_cases_for_promotion:
                continue
            verdict = self.evaluate(
                task_class=task_class,
                tier=tier,
                reports=reports,
                chain_verified=chain_verified,
                chain_head=chain_head,
                report_digests=report_digests,
                pooled=pooled,
                pooled_digests=pooled_digests,
            )
            if verdict.evidence_sufficient:
                return verdict
        return None

    def recommendation(
        self,
        *,
        task_class: TaskClass,
        reports: Sequence[BenchRunReport],
        chain_verified: bool,
        chain_head: str | None = None,
        report_digests: Sequence[str] = (),
        pooled: Sequence[BenchRunReport] = (),
        pooled_digests: Sequence[str] = (),
    ) -> PromotionVerdict | None:
        """The verdict worth recommending to a human unasked, or ``None``.

        That is the verdict for the tier directly above the task class's current tier, when
        its evidence is sufficient. A task class that holds no tier gets a verdict only when
        one is asked for (``--codegenie-verdict``, ``--codegenie-gate``, ``promote-verdict``):
        a plain run of a new bench prints no verdict and writes no recommendation.
        """
        current = self._config.current_tier(task_class.name)
        if current is None:
            return None
        tier = self._config.next_tier(current)
        if tier is None or tier not in task_class.min_cases_for_promotion:
            return None
        verdict = self.evaluate(
            task_class=task_class,
            tier=tier,
            reports=reports,
            chain_verified=chain_verified,
            chain_head=chain_head,
            report_digests=report_digests,
            pooled=pooled,
            pooled_digests=pooled_digests,
        )
        return verdict if verdict.evidence_sufficient else None

    def apply(self, verdict: PromotionVerdict) -> NoReturn:
        """Refuse, always: promotion is a human edit of ``docs/trust-tiers.yaml``.

        Raises :class:`~pytest_codegenie_eval.errors.PromotionMustBeHumanAuthorized` even
        for a sufficient verdict, so no code path can turn evidence into trust on its own.
        """
        raise PromotionMustBeHumanAuthorized(verdict.task_class, verdict.tier)


def _case_set(report: BenchRunReport) -> frozenset[tuple[str, str]]:
    return frozenset((c.case_id, c.case_digest) for c in report.cases)


def same_measurement(a: BenchRunReport, b: BenchRunReport) -> bool:
    """Whether two runs measured the same agent on the same bench definition, alike: both
    complete with their cases listed, the same SUT, rubric, cases (and their digests),
    repeat count, declared scores and isolation."""
    return (
        a.complete
        and b.complete
        and bool(a.cases)
        and bool(b.cases)
        and bool(a.sut_digest)
        and a.sut_digest == b.sut_digest
        and a.rubric_digest == b.rubric_digest
        and a.repeats == b.repeats
        and a.scores == b.scores
        and _regime(a) == _regime(b)
        and _case_set(a) == _case_set(b)
    )


def pool(reports: Sequence[BenchRunReport]) -> BenchRunReport:
    """One report of every attempt of *reports* (runs that :func:`same_measurement`, oldest
    first): run j's attempt r of a case becomes its attempt ``j * K + r``, and the report is
    aggregated as a run with ``K`` times the number of runs attempts per case (ADR 0016)."""
    from datetime import datetime

    from pytest_codegenie_eval.evidence.aggregate import build_report

    per_run = reports[0].repeats
    newest = reports[-1]
    attempts = [
        case.model_copy(update={"repeat": index * per_run + case.repeat})
        for index, report in enumerate(reports)
        for case in report.cases
    ]
    return build_report(
        newest.task_class,
        attempts,
        harness_version=newest.harness_version,
        created_at=datetime.fromisoformat(newest.created_at),
        cases_total=newest.cases_total,
        repeats=per_run * len(reports),
        scores=newest.scores,
    )


def format_verdict(verdict: PromotionVerdict) -> str:
    """Human-readable verdict: a headline, then one ``  - reason`` line per failing check,
    then what would clear the bound when it fell short."""
    outcome = "SUFFICIENT" if verdict.evidence_sufficient else "INSUFFICIENT"
    lines = [f"codegenie verdict {verdict.task_class} → {verdict.tier}: evidence {outcome}"]
    if verdict.pooled_runs > 1:
        lines.append(
            f"  pooled {verdict.pooled_runs} runs of this agent on this bench: each run's "
            "attempts count as further attempts of each case"
        )
    lines.extend(f"  - {reason}" for reason in verdict.reasons)
    if verdict.next_step:
        lines.append(f"  next: {verdict.next_step}")
    return "\n".join(lines)


def _rate_name(report: BenchRunReport) -> str:
    return "per-attempt pass rate" if report.repeats > 1 else "pass rate"


def _next_step(report: BenchRunReport, tier: str, threshold: float) -> str | None:
    """How many cases would bring the bound to the threshold, at this run's per-attempt
    pass rate (with repeats, ``pass_at_1``: the planner simulates the K attempts itself;
    the share of cases whose attempts all passed would count the repeats twice)."""
    from pytest_codegenie_eval.evidence.planning import cases_needed, perfect_cases_needed

    n = report.n
    if n == 0:
        return None
    if threshold >= 1.0:
        return f"no bench reaches a bound of {threshold:.2f}: lower the {tier} threshold"
    if report.passed_count >= n and report.mean >= 1.0:
        needed = perfect_cases_needed(threshold)
        return f"{n}/{n} passed: {needed} perfect cases would reach {tier} {threshold:.2f}"
    observed = report.passed_count / n
    if report.repeats > 1 and report.pass_at_1 is not None:
        observed = report.pass_at_1
    rate = min(1.0, max(0.0, observed))
    try:
        plan = cases_needed(rate, threshold, repeats=report.repeats)
    except ValueError:  # a hand-made report out of range: no advice rather than no verdict
        return None
    if plan.cases is None:
        return (
            f"at the observed {_rate_name(report)} {rate:.2f} no bench size reaches {tier} "
            f"{threshold:.2f}: the pass rate itself must exceed it"
        )
    return (
        f"at the observed {_rate_name(report)} {rate:.2f}, about {plan.cases} cases would reach "
        f"{tier} "
        f"{threshold:.2f} with 80% probability ({plan.method}; `codegenie-eval plan`)"
    )
