"""What the results page shows, read from a state directory and nothing else.

Every number on the page comes from a run report the audit chain names, a recommendation
file, or the tier file. This module reads them; what it derives comes from ``evidence/``,
never from a rule of its own: the paired comparison is
:func:`~pytest_codegenie_eval.evidence.compare.compare` (the numbers ``codegenie-eval
compare`` prints) and the verdict is :func:`~pytest_codegenie_eval.evidence.verdicts.judge`
(the one ``codegenie-eval promote-verdict`` gives). What the model gateway metered is summed
from the cases' ``model_usage`` (:func:`run_totals`), and a case's transcript is read
through the store, verified by its digest, and parsed by the sibling ``transcripts`` module
(:func:`transcript_view`). Rendering (templates, charts, highlighting) is in the sibling
modules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_codegenie_eval.errors import CodegenieEvalError
from pytest_codegenie_eval.evidence.compare import Comparison, compare
from pytest_codegenie_eval.evidence.tiers import TierConfig, load_tier_config
from pytest_codegenie_eval.execution.gateway.latency import nearest_rank
from pytest_codegenie_eval.fsutil import unique_name_part
from pytest_codegenie_eval.models import BenchRunReport, CaseResult, PromotionVerdict
from pytest_codegenie_eval.output.html.transcripts import Transcript, parse_transcript
from pytest_codegenie_eval.registry import TaskClass
from pytest_codegenie_eval.store.audit import VerifyResult, records, verify
from pytest_codegenie_eval.store.recommendations import recommendations
from pytest_codegenie_eval.store.reports import Evidence, RecordedReport, read_recorded
from pytest_codegenie_eval.store.statedir import StateDir, read_transcript


def slug(text: str) -> str:
    """A file name for a task class or case id: safe characters only, and unique (a short
    digest is added whenever characters had to be replaced)."""
    return unique_name_part(text)


@dataclass(frozen=True)
class GatewayTotals:
    """What the model gateway metered over a run's attempts: the sums of their
    ``model_usage``, where each attempt's cost came from, and the latency percentiles.

    The latency is over every call (``latency_over == "calls"``) when the latencies of
    every metered attempt's calls were read from its verified transcript; otherwise over
    the attempts that made a call (``"attempts"``): the median of their p50s and the 95th
    percentile of their p95s. ``latency_count`` is how many calls or attempts that is.
    """

    attempts: int  # attempts the gateway metered
    calls: int
    input_tokens: int  # without the cached ones
    output_tokens: int
    cached_input_tokens: int
    cost_usd: float  # metered
    cached: int  # metered attempts answered from the score cache: metered when measured
    cached_cost_usd: float  # what those cost then (in cost_usd; not spent by this run)
    sut_claimed_usd: float  # what the SUTs of the metered attempts reported
    unpriced_calls: int
    upstream_errors: int
    replayed: int  # attempts answered from cassettes
    latency_p50_s: float
    latency_p95_s: float
    latency_over: str  # "calls" or "attempts"
    latency_count: int
    cost_sources: tuple[tuple[str, int], ...]  # (cost_source, attempts), most first


def run_totals(
    report: BenchRunReport, latencies: Mapping[str, Sequence[float] | None] | None = None
) -> GatewayTotals | None:
    """What the gateway metered over ``report``'s attempts, or ``None`` when it metered
    none. ``latencies`` maps a transcript digest to its calls' latencies (``None``: the
    transcript is missing or does not verify); without every metered attempt's, the
    latency is over attempts."""
    metered = [(c, c.model_usage) for c in report.cases if c.model_usage is not None]
    if not metered:
        return None
    usages = [u for _, u in metered]
    known = latencies or {}
    per_call: list[float] = []
    over_calls = True
    for usage in usages:
        if usage.calls == 0:
            continue
        seen = known.get(usage.transcript_digest) if usage.transcript_digest else None
        if seen is None or len(seen) != usage.calls:
            over_calls = False
            break
        per_call.extend(seen)
    if over_calls:
        p50, p95 = nearest_rank(per_call, 0.5), nearest_rank(per_call, 0.95)
        count = len(per_call)
    else:
        calling = [u for u in usages if u.calls > 0]
        p50 = nearest_rank([u.latency_p50_s for u in calling], 0.5)
        p95 = nearest_rank([u.latency_p95_s for u in calling], 0.95)
        count = len(calling)
    sources = Counter(c.cost_source for c in report.cases)
    return GatewayTotals(
        attempts=len(metered),
        calls=sum(u.calls for u in usages),
        input_tokens=sum(u.input_tokens for u in usages),
        output_tokens=sum(u.output_tokens for u in usages),
        cached_input_tokens=sum(u.cached_input_tokens for u in usages),
        cost_usd=sum(u.cost_usd for u in usages),
        cached=sum(1 for c, _ in metered if c.cached),
        cached_cost_usd=sum(u.cost_usd for c, u in metered if c.cached),
        sut_claimed_usd=sum(c.sut_reported_cost_usd or 0.0 for c, _ in metered),
        unpriced_calls=sum(u.unpriced_calls for u in usages),
        upstream_errors=sum(u.upstream_errors for u in usages),
        replayed=sum(1 for u in usages if u.replayed),
        latency_p50_s=p50,
        latency_p95_s=p95,
        latency_over="calls" if over_calls else "attempts",
        latency_count=count,
        cost_sources=tuple(sources.most_common()),
    )


@dataclass(frozen=True)
class TranscriptView:
    """A case attempt's transcript as its page shows it: parsed from the bytes the store
    verified against the recorded digest, else ``None`` and the note saying why."""

    digest: str
    transcript: Transcript | None
    note: str = ""
    data: bytes = b""  # the verified bytes (the page's raw copy)

    @property
    def latencies(self) -> tuple[float, ...] | None:
        """Its calls' latencies, or ``None`` when it could not be read or a call has none."""
        if self.transcript is None:
            return None
        found = self.transcript.latencies
        return found if len(found) == len(self.transcript.calls) else None


def transcript_view(transcripts_dir: Path, case: CaseResult) -> TranscriptView | None:
    """The transcript ``case``'s ``model_usage`` names, or ``None`` when the gateway did not
    meter the attempt. A transcript that is missing, or whose bytes no longer match the
    recorded digest, is never parsed: its view says so instead."""
    usage = case.model_usage
    if usage is None:
        return None
    digest = usage.transcript_digest
    if not digest:
        why = (
            "the agent made no model call"
            if usage.calls == 0
            else "no transcript was kept of this attempt's calls"
        )
        return TranscriptView(digest="", transcript=None, note=why)
    data = read_transcript(transcripts_dir, digest)
    if data is None:
        return TranscriptView(
            digest=digest,
            transcript=None,
            note=f"transcript {digest[:16]}… is missing from the state directory or no "
            "longer matches its recorded digest",
        )
    return TranscriptView(digest=digest, transcript=parse_transcript(data), data=data)


@dataclass(frozen=True)
class RunEntry:
    """One chain record of a task class and what its report holds."""

    seq: int
    kind: str  # "run", "adopted", "shard" or "merged"
    created_at: str
    run_id: str
    report_path: str
    report_digest: str  # what the record says the report's bytes digest to
    report_verified: bool  # the report's bytes match the record's digest
    report: BenchRunReport | None  # None: missing or unreadable

    is_evidence: bool  # a whole run whose report is present (what the gate judges)
    gateway: GatewayTotals | None = None  # what the model gateway metered, latency over attempts

    @classmethod
    def of(cls, entry: RecordedReport) -> RunEntry:
        record = entry.record
        return cls(
            seq=record.seq,
            kind=record.kind,
            created_at=record.created_at,
            run_id=record.run_id,
            report_path=record.report_path,
            report_digest=record.report_digest,
            report_verified=entry.digest_matches,
            report=entry.report,
            is_evidence=entry.is_evidence,
            gateway=run_totals(entry.report) if entry.report is not None else None,
        )


@dataclass
class TaskClassView:
    """Everything the pages of one task class show."""

    name: str
    slug: str
    runs: list[RunEntry] = field(default_factory=list)
    verdict: PromotionVerdict | None = None
    verdict_file: str | None = None
    verdicts_ignored: int = 0  # newer recommendation files that do not match the chain
    verdict_recomputed: bool = False  # judged from the chain when the page was built
    verdict_error: str | None = None  # why it could not be judged then
    current_tier: str | None = None
    comparison: Comparison | None = None
    compare_a: RunEntry | None = None
    compare_b: RunEntry | None = None

    @property
    def metered(self) -> bool:
        """Whether the model gateway metered any attempt of any run recorded here."""
        return any(run.gateway is not None for run in self.runs)

    @property
    def latest(self) -> RunEntry | None:
        """The newest run of the task class. Shards are parts of a run, so a shard is shown
        only where no whole run is recorded (a shard job's own page)."""
        runs = [r for r in self.runs if r.is_evidence]
        if runs:
            return runs[-1]
        shards = [r for r in self.runs if r.report is not None]
        return shards[-1] if shards else None


@dataclass
class SiteData:
    """The whole site's input."""

    state_dir: Path
    chain: VerifyResult
    task_classes: list[TaskClassView]
    tiers: TierConfig | None
    tiers_path: Path | None
    tiers_error: str | None
    diffs_dir: Path
    transcripts_dir: Path


def _newest_verdict(
    state_dir: Path, task_class: str, hashes: set[str], digests: set[str]
) -> tuple[PromotionVerdict | None, str, int]:
    """The newest recommendation for the task class that matches the audit chain, its
    file, and how many newer ones were set aside.

    A recommendation file is not itself chained, so one is shown only when the chain head
    it was judged at is a record of this chain and every report it judged is recorded
    there: a hand-written "SUFFICIENT" never reaches the page.
    """
    ignored = 0
    for name, verdict in recommendations(state_dir):
        if verdict.task_class != task_class:
            continue
        if verdict.chain_head in hashes and set(verdict.report_digests) <= digests:
            return verdict, name, ignored
        ignored += 1
    return None, "", ignored


def _recompute(
    view: TaskClassView,
    chain: VerifyResult,
    bench_root: Path,
    tiers: TierConfig,
    known: Mapping[str, TaskClass],
) -> None:
    """Judge the task class's recorded evidence now, as ``promote-verdict`` would (read
    only: no recommendation is written), for the tier its newest recommendation asked for,
    else the tier above its current one. The reports and the chain check are the ones this
    build already read; the task class is one the caller has loaded (``known``), else its
    registration is read from the bench root (no case is loaded for it)."""
    from pytest_codegenie_eval.evidence.promotion import PromotionGate
    from pytest_codegenie_eval.evidence.verdicts import judge
    from pytest_codegenie_eval.taskclass.loader import load_registration, resolve_task_class_dir

    runs = [r for r in view.runs if r.is_evidence and r.report is not None]
    evidence = Evidence(
        tuple(r.report for r in runs if r.report), tuple(r.report_digest for r in runs)
    )
    try:
        tier = view.verdict.tier if view.verdict is not None else tiers.next_tier(view.current_tier)
        if tier is None:
            return  # already at the highest tier
        task_class = known.get(view.name) or load_registration(
            resolve_task_class_dir(bench_root, view.name)
        )
        view.verdict = judge(
            gate=PromotionGate(tiers),
            evidence=evidence,
            check=chain,
            task_class=task_class,
            tier=tier,
        )
    except CodegenieEvalError as exc:
        view.verdict_error = str(exc)
        return
    view.verdict_recomputed = True
    view.verdict_file = None


def _entry_of(view: TaskClassView, report: BenchRunReport) -> RunEntry | None:
    for run in view.runs:
        if run.report is not None and (run.report.run_id, run.report.created_at) == (
            report.run_id,
            report.created_at,
        ):
            return run
    return None


def _comparison(view: TaskClassView, refs: tuple[str, str] | None, state_dir: Path) -> None:
    """The two runs the compare page pairs: the ones asked for, else the newest two."""
    if refs is not None:
        from pytest_codegenie_eval.store.reports import resolve

        a, b = (resolve(ref, state_dir) for ref in refs)
        if a.task_class != view.name:
            return
        view.compare_a = _entry_of(view, a)
        view.compare_b = _entry_of(view, b)
        view.comparison = compare(a, b)
        return
    runs = [r for r in view.runs if r.is_evidence]
    if len(runs) >= 2:
        view.compare_a, view.compare_b = runs[-2], runs[-1]
        older, newer = view.compare_a.report, view.compare_b.report
        assert older is not None
        assert newer is not None
        view.comparison = compare(older, newer)


def collect(
    state_dir: Path,
    *,
    task_class: str | None = None,
    tiers_path: Path | None = None,
    compare_refs: tuple[str, str] | None = None,
    bench_root: Path | None = None,
    check: VerifyResult | None = None,
    known: Mapping[str, TaskClass] | None = None,
) -> SiteData:
    """Read the state directory (and the tier file, when there is one) into :class:`SiteData`
    (``check``: the chain's verification, when the caller has made it already; ``known``:
    task classes the caller has loaded, by name, so they are not read again).

    With ``bench_root`` and a tier file, each task class's verdict is judged afresh from
    the chain (as ``promote-verdict`` judges, writing nothing); otherwise the newest
    recommendation file that matches the chain is shown, and says so.

    Raises :class:`CodegenieEvalError` when the state directory does not exist or a
    ``compare_refs`` reference names no report.
    """
    if not state_dir.is_dir():
        raise CodegenieEvalError(f"state directory {state_dir} does not exist")
    chain = check or verify(state_dir)
    views: dict[str, TaskClassView] = {}
    hashes: set[str] = set()
    digests: set[str] = set()
    for record in records(state_dir):
        hashes.add(record.hash)
        digests.add(record.report_digest)
        name = record.task_class
        if record.kind == "repair" or (task_class is not None and name != task_class):
            continue
        view = views.setdefault(name, TaskClassView(name=name, slug=slug(name)))
        view.runs.append(RunEntry.of(read_recorded(state_dir, record)))
    if task_class is not None and task_class not in views:
        raise CodegenieEvalError(f"the audit chain in {state_dir} records no run of {task_class!r}")
    tiers: TierConfig | None = None
    tiers_error: str | None = None
    if tiers_path is not None and tiers_path.is_file():
        try:
            tiers = load_tier_config(tiers_path)
        except CodegenieEvalError as exc:
            tiers_error = str(exc)
    for view in views.values():
        view.verdict, view.verdict_file, view.verdicts_ignored = _newest_verdict(
            state_dir, view.name, hashes, digests
        )
        if tiers is not None:
            view.current_tier = tiers.current_tier(view.name)
            if bench_root is not None and bench_root.is_dir():
                _recompute(view, chain, bench_root, tiers, known or {})
        _comparison(view, compare_refs, state_dir)
    return SiteData(
        state_dir=state_dir,
        chain=chain,
        task_classes=[views[name] for name in sorted(views)],
        tiers=tiers,
        tiers_path=tiers_path,
        tiers_error=tiers_error,
        diffs_dir=StateDir(state_dir).diffs,
        transcripts_dir=StateDir(state_dir).transcripts,
    )


def agent_of(report: BenchRunReport) -> str:
    """Who a run measured, as the page's per-agent views group it: the run's label
    (``--codegenie-label``), else its SUT command, else ``"?"``."""
    return report.label or report.sut or "?"


def run_state(report: BenchRunReport) -> str:
    """A run's state in words: ``complete``, ``shard I/N`` or ``partial: <why>``."""
    if report.complete:
        return "complete"
    if report.incomplete_reason == "shard" and report.shard is not None:
        return f"shard {report.shard.label}"
    reason = {
        "cost_cap": "cost cap",
        "subset": "subset",
        "infrastructure": "infrastructure",
        "harness_write": "not all kept",
    }.get(report.incomplete_reason or "", "subset")
    return f"partial: {reason}"


def _round(value: float) -> float:
    return round(value, 6)


def index_payload(
    view: TaskClassView, compare_default: tuple[int, int] | None
) -> dict[str, object]:
    """Everything the task class's client-rendered pages (a run's cases, a case's history,
    any two runs compared) read, in one compact document: each run's summary and, per case
    (by index into ``cases``), ``[score, passed, passes, attempts, cost, duration, def]``
    where the score and ``passed`` are the case's as the report counts them
    (:func:`~pytest_codegenie_eval.evidence.aggregate.case_mean` and ``case_passed``) and
    ``def`` indexes ``definitions`` (the rubric and the case's digest: a case's history is
    over the runs of one definition). Linear in runs × cases."""
    from pytest_codegenie_eval.evidence.aggregate import attempts_by_case, case_mean, case_passed

    case_ids = sorted(
        {c.case_id for run in view.runs if run.report is not None for c in run.report.cases}
    )
    position = {case_id: index for index, case_id in enumerate(case_ids)}
    definitions: dict[str, int] = {}
    runs: list[dict[str, object]] = []
    for number, run in enumerate(view.runs, start=1):
        entry: dict[str, object] = {
            "i": number,
            "seq": run.seq,
            "kind": run.kind,
            "run_id": run.run_id,
            "recorded": run.created_at[:19],
            "verified": run.report_verified,
            "evidence": run.is_evidence,
            "report_path": run.report_path,
        }
        report = run.report
        if report is not None:
            cells: list[list[float | int] | None] = [None] * len(case_ids)
            for case_id, attempts in attempts_by_case(report.cases).items():
                first = attempts[0]
                if len(attempts) == 1:  # the common case, without the general path's cost
                    score, passed, passes = first.score, first.passed, int(first.passed)
                else:
                    score, passed = case_mean(attempts), case_passed(attempts)
                    passes = sum(1 for a in attempts if a.passed)
                key = f"{first.rubric_digest or report.rubric_digest}/{first.case_digest}"
                cells[position[case_id]] = [
                    score,  # unrounded: the comparison pairs on it
                    int(passed),
                    passes,
                    len(attempts),
                    _round(sum(a.cost_usd for a in attempts)),
                    _round(sum(a.duration_s for a in attempts)),
                    definitions.setdefault(key, len(definitions)),
                ]
            gateway = run.gateway
            entry.update(
                agent=agent_of(report),
                label=report.label,
                sut=report.sut,
                complete=report.complete,
                state=run_state(report),
                n=report.n,
                passed=report.passed_count,
                mean=report.mean,
                lb=report.lower_bound_95,
                method=report.bound.method,
                cost=report.total_cost_usd,
                repeats=report.repeats,
                scores=report.scores,
                pass_at_k=report.pass_at_k,
                pass_hat_k=report.pass_hat_k,
                gateway=None
                if gateway is None
                else {
                    "calls": gateway.calls,
                    "input": gateway.input_tokens,
                    "output": gateway.output_tokens,
                    "cost": gateway.cost_usd,
                },
                cells=cells,
            )
        runs.append(entry)
    from pytest_codegenie_eval.evidence import compare as paired
    from pytest_codegenie_eval.evidence import stats

    return {
        "task_class": view.name,
        # what the page's comparison computes with: the constants of evidence/compare.py
        # and evidence/stats.py, so the page and `codegenie-eval compare` cannot drift apart
        "exact": {"share": paired._ALPHA_SHARE, "rate": paired._ALPHA_RATE},
        "betting": {
            "confidence": paired.CONFIDENCE,
            "scales": list(stats.BETTING_SCALES),
            "log_weights": [float(w) for w in stats._LOG_WEIGHTS],
            "cap": stats.BETTING_CAP,
            "floor": stats._VARIANCE_FLOOR,
            "bisections": stats._BISECTIONS,
        },
        "cases": case_ids,
        "definitions": len(definitions),
        "runs": runs,
        "compare": list(compare_default) if compare_default is not None else None,
    }
