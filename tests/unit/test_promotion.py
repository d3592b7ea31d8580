"""The promotion gate: each condition alone, all together, monotonicity, read-only apply."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_codegenie_eval.errors import CodegenieEvalError, PromotionMustBeHumanAuthorized
from pytest_codegenie_eval.evidence.promotion import (
    REASON_MIXED_ISOLATION,
    EvidenceTaskClassMismatch,
    PromotionGate,
    UnknownTier,
    format_verdict,
)
from pytest_codegenie_eval.evidence.tiers import TierConfig, load_tier_config
from pytest_codegenie_eval.models import (
    BenchRunReport,
    CaseResult,
    FailureMode,
    IsolationClass,
    ModelUsage,
    PromotionVerdict,
)
from pytest_codegenie_eval.registry import TaskClass
from pytest_codegenie_eval.store.recommendations import (
    RECOMMENDATION_NOTE,
    recommendations,
    write_recommendation,
)

CONFIG = TierConfig(
    schema_version=1,
    uncalibrated=True,
    thresholds={"bronze": 0.70, "silver": 0.80, "gold": 0.90},
    current_tiers={"t": None},
)
TASK = TaskClass(name="t", qualname="x.T", min_cases_for_promotion={"bronze": 10, "silver": 25})
GATE = PromotionGate(CONFIG)

WARN = FailureMode(code="upgrade.major_bump", severity="warn")
BLOCK = FailureMode(code="vuln.still_present", severity="block")


def case(index: int, *failure_modes: FailureMode) -> CaseResult:
    return CaseResult(
        task_class="t",
        case_id=f"case-{index:03d}",
        score=1.0,
        passed=not any(fm.severity == "block" for fm in failure_modes),
        failure_modes=failure_modes,
        sut_isolation="bwrap",
    )


def report(
    *,
    run: int = 0,
    n: int = 12,
    passed_count: int = 12,
    lower_bound_95: float = 0.75,
    complete: bool = True,
    isolation_class: IsolationClass = "subprocess",
    cases: tuple[CaseResult, ...] | None = None,
) -> BenchRunReport:
    return BenchRunReport(
        run_id=f"{run:02x}" * 32,
        task_class="t",
        created_at="2026-11-24T22:00:00+00:00",
        harness_version="0.1.0",
        n=n,
        passed_count=passed_count,
        lower_bound_95=lower_bound_95,
        complete=complete,
        isolation_class=isolation_class,
        sut_isolation="bwrap",
        cases=cases if cases is not None else (case(0, WARN), case(1)),
    )


def evaluate(
    reports: list[BenchRunReport], *, chain_verified: bool = True, tier: str = "bronze"
) -> PromotionVerdict:
    return GATE.evaluate(
        task_class=TASK,
        tier=tier,
        reports=reports,
        chain_verified=chain_verified,
        chain_head="c" * 64,
        report_digests=[f"{i:064x}" for i in range(len(reports))],
    )


# --- each condition alone, then all together -----------------------------------------------


def baseline() -> tuple[list[BenchRunReport], bool]:
    """Two reports that are sufficient evidence for bronze (and only bronze)."""
    return [report(run=1), report(run=2)], True


def low_bound(reports: list[BenchRunReport], chain: bool) -> tuple[list[BenchRunReport], bool]:
    return [*reports[:-1], reports[-1].model_copy(update={"lower_bound_95": 0.62})], chain


def few_cases(reports: list[BenchRunReport], chain: bool) -> tuple[list[BenchRunReport], bool]:
    return [*reports[:-1], reports[-1].model_copy(update={"passed_count": 3})], chain


def block_failures(reports: list[BenchRunReport], chain: bool) -> tuple[list[BenchRunReport], bool]:
    # One block failure in the older report and one in the newest: the whole window counts.
    older = reports[0].model_copy(update={"cases": (case(0, BLOCK, WARN), case(1))})
    newest = reports[-1].model_copy(update={"cases": (case(0), case(1, BLOCK))})
    return [older, *reports[1:-1], newest], chain


def broken_chain(reports: list[BenchRunReport], chain: bool) -> tuple[list[BenchRunReport], bool]:
    return reports, False


def incomplete(reports: list[BenchRunReport], chain: bool) -> tuple[list[BenchRunReport], bool]:
    # The older report was cost-capped: the window as a whole is not complete evidence.
    capped = reports[0].model_copy(update={"complete": False, "incomplete_reason": "cost_cap"})
    return [capped, *reports[1:]], chain


def subset(reports: list[BenchRunReport], chain: bool) -> tuple[list[BenchRunReport], bool]:
    # The newest run selected only some cases (-k or node ids): partial evidence.
    part = reports[-1].model_copy(update={"complete": False, "incomplete_reason": "subset"})
    return [*reports[:-1], part], chain


def mixed_isolation(
    reports: list[BenchRunReport], chain: bool
) -> tuple[list[BenchRunReport], bool]:
    return [reports[0].model_copy(update={"isolation_class": "microvm"}), *reports[1:]], chain


Breaker = Callable[[list[BenchRunReport], bool], tuple[list[BenchRunReport], bool]]

CONDITIONS: list[tuple[str, Breaker, str]] = [
    ("lower-bound", low_bound, "lower_bound_95 0.62 < bronze threshold 0.70"),
    ("case-floor", few_cases, "case count below floor (3 < 10)"),
    ("block-failures", block_failures, "2 block-severity failure modes"),
    ("chain", broken_chain, "audit chain does not verify"),
    ("incomplete", incomplete, "report incomplete (cost cap)"),
    ("subset", subset, "report incomplete (subset of cases selected)"),
    ("isolation", mixed_isolation, "mixed isolation classes in evidence window"),
]


def test_baseline_is_sufficient() -> None:
    reports, chain = baseline()

    verdict = evaluate(reports, chain_verified=chain)

    assert verdict.evidence_sufficient is True
    assert verdict.reasons == ()
    assert verdict.task_class == "t"
    assert verdict.tier == "bronze"
    assert verdict.current_tier is None
    assert verdict.lower_bound_95 == 0.75
    assert verdict.threshold == 0.70
    assert verdict.passed_count == 12
    assert verdict.min_cases == 10
    assert verdict.block_failure_count == 0
    assert verdict.chain_verified is True
    assert verdict.chain_head == "c" * 64
    assert verdict.run_ids == ("01" * 32, "02" * 32)
    assert verdict.report_digests == (f"{0:064x}", f"{1:064x}")
    assert verdict.isolation_classes == ("subprocess",)
    assert verdict.uncalibrated is True


@pytest.mark.parametrize(
    ("breaker", "reason"),
    [pytest.param(breaker, reason, id=name) for name, breaker, reason in CONDITIONS],
)
def test_each_condition_alone_gives_exactly_its_reason(breaker: Breaker, reason: str) -> None:
    reports, chain = breaker(*baseline())

    verdict = evaluate(reports, chain_verified=chain)

    assert verdict.evidence_sufficient is False
    assert verdict.reasons == (reason,)


def test_all_conditions_together_give_all_reasons_in_order() -> None:
    reports, chain = baseline()
    for _, breaker, _ in CONDITIONS:
        reports, chain = breaker(reports, chain)

    verdict = evaluate(reports, chain_verified=chain)

    # a cost-capped and a subset report together are named once, by the cost cap
    expected = tuple(reason for name, _, reason in CONDITIONS if name != "subset")
    assert verdict.evidence_sufficient is False
    assert verdict.reasons == expected
    assert verdict.block_failure_count == 2
    assert verdict.isolation_classes == ("microvm", "subprocess")


@pytest.mark.parametrize(
    "update",
    [{"sut_network": "host"}, {"sut_isolation": "env-only"}, {"rubric_isolation": "env-only"}],
    ids=["network", "sut-sandbox", "rubric-sandbox"],
)
def test_a_window_pooling_runs_isolated_differently_is_not_evidence(
    update: dict[str, str],
) -> None:
    alike = {"sut_network": "none", "rubric_isolation": "bwrap"}
    reports = [report(run=1).model_copy(update=alike), report(run=2).model_copy(update=alike)]
    assert evaluate(reports).evidence_sufficient  # live: alike, the window is evidence

    changed = reports[0].model_copy(update={**alike, **update})
    verdict = evaluate([changed, reports[1]], tier="bronze")
    assert REASON_MIXED_ISOLATION in verdict.reasons


def test_thresholds_are_inclusive() -> None:
    exact = report(lower_bound_95=0.70, passed_count=10)

    assert evaluate([exact]).evidence_sufficient is True


def test_close_values_get_enough_digits_to_differ() -> None:
    verdict = evaluate([report(lower_bound_95=0.699)])

    assert verdict.reasons == ("lower_bound_95 0.699 < bronze threshold 0.700",)


def test_single_block_failure_reads_singular() -> None:
    verdict = evaluate([report(cases=(case(0, BLOCK),))])

    assert verdict.reasons == ("1 block-severity failure mode",)


def test_aggregate_block_count_is_trusted_when_cases_are_absent() -> None:
    aggregate_only = report(cases=()).model_copy(update={"block_failure_count": 3})

    verdict = evaluate([aggregate_only])

    assert verdict.reasons == ("3 block-severity failure modes",)


def test_warn_and_info_failure_modes_do_not_block() -> None:
    info = FailureMode(code="note", severity="info")

    assert evaluate([report(cases=(case(0, WARN, info), case(1, info)))]).evidence_sufficient


def test_floor_is_against_passed_cases_not_all_cases() -> None:
    verdict = evaluate([report(n=40, passed_count=9)])

    assert verdict.reasons == ("case count below floor (9 < 10)",)


def test_only_the_newest_report_is_judged_for_bound_and_floor() -> None:
    old_weak = report(run=1, lower_bound_95=0.1, passed_count=1)

    assert evaluate([old_weak, report(run=2)]).evidence_sufficient is True
    assert evaluate([report(run=2), old_weak]).reasons == (
        "lower_bound_95 0.10 < bronze threshold 0.70",
        "case count below floor (1 < 10)",
    )


def test_no_reports_is_insufficient() -> None:
    verdict = evaluate([], chain_verified=False)

    assert verdict.evidence_sufficient is False
    assert verdict.reasons == ("no run reports in evidence window", "audit chain does not verify")
    assert verdict.lower_bound_95 is None
    assert verdict.run_ids == ()


def test_silver_uses_its_own_threshold_and_floor() -> None:
    verdict = evaluate([report(lower_bound_95=0.75, passed_count=12)], tier="silver")

    assert verdict.reasons == (
        "lower_bound_95 0.75 < silver threshold 0.80",
        "case count below floor (12 < 25)",
    )


def test_current_tier_comes_from_config() -> None:
    config = CONFIG.model_copy(update={"current_tiers": {"t": "bronze"}})

    verdict = PromotionGate(config).evaluate(
        task_class=TASK, tier="silver", reports=[report()], chain_verified=True
    )

    assert verdict.current_tier == "bronze"


def test_evaluate_is_deterministic() -> None:
    reports, chain = block_failures(*baseline())

    assert evaluate(reports, chain_verified=chain) == evaluate(reports, chain_verified=chain)


# --- unknown tiers and foreign evidence -----------------------------------------------------


def test_tier_without_threshold_is_unknown() -> None:
    with pytest.raises(UnknownTier) as excinfo:
        evaluate([report()], tier="platinum")

    message = str(excinfo.value)
    assert "'platinum'" in message
    assert "'t'" in message
    assert "declared: bronze, silver, gold" in message
    assert isinstance(excinfo.value, CodegenieEvalError)
    assert isinstance(excinfo.value, ValueError)


def test_tier_without_floor_in_task_class_is_unknown() -> None:
    with pytest.raises(UnknownTier) as excinfo:
        evaluate([report()], tier="gold")

    message = str(excinfo.value)
    assert "'gold'" in message
    assert "'t'" in message
    assert "x.T" in message
    assert "min_cases_for_promotion" in message
    assert "declared: bronze, silver" in message


def test_unknown_tier_is_raised_even_without_reports() -> None:
    with pytest.raises(UnknownTier):
        evaluate([], tier="diamond")


def test_report_of_another_task_class_is_a_caller_error() -> None:
    foreign = report().model_copy(update={"task_class": "other"})

    with pytest.raises(EvidenceTaskClassMismatch, match="'other'"):
        evaluate([foreign])


def test_evidence_window_takes_the_newest_reports_of_the_task_class() -> None:
    config = CONFIG.model_copy(update={"evidence_window": 2})
    r1, r2, r3 = report(run=1), report(run=2), report(run=3)
    foreign = report(run=4).model_copy(update={"task_class": "other"})

    window = PromotionGate(config).evidence_window([r1, r2, foreign, r3], task_class="t")

    assert window == (r2, r3)
    assert GATE.evidence_window([r1, r2, r3], task_class="t") == (r3,)


# --- highest sufficient tier and recommendations -------------------------------------------


def test_highest_sufficient_tier() -> None:
    def highest(r: BenchRunReport) -> str | None:
        return GATE.highest_sufficient_tier(task_class=TASK, reports=[r], chain_verified=True)

    assert highest(report(lower_bound_95=0.5)) is None
    assert highest(report(lower_bound_95=0.75, passed_count=30)) == "bronze"
    assert highest(report(lower_bound_95=0.85, passed_count=30)) == "silver"
    # gold's threshold is met, but the task class declares no gold floor: not earnable.
    assert highest(report(lower_bound_95=0.95, passed_count=30)) == "silver"
    assert highest(report(lower_bound_95=0.85, passed_count=12)) == "bronze"
    assert (
        GATE.highest_sufficient_tier(
            task_class=TASK, reports=[report(lower_bound_95=0.95)], chain_verified=False
        )
        is None
    )


def test_recommendation_unasked_only_for_the_tier_above_a_held_one() -> None:
    # issue 26: a verdict is printed and a file written when asked, or when the evidence for
    # the next tier of a task class that holds a tier becomes sufficient
    strong = [report(lower_bound_95=0.85, passed_count=30)]
    held_bronze = PromotionGate(CONFIG.model_copy(update={"current_tiers": {"t": "bronze"}}))
    held_silver = PromotionGate(CONFIG.model_copy(update={"current_tiers": {"t": "silver"}}))

    # no tier held: nothing unasked, however strong the evidence
    assert GATE.recommendation(task_class=TASK, reports=strong, chain_verified=True) is None
    above = held_bronze.recommendation(task_class=TASK, reports=strong, chain_verified=True)
    assert above is not None
    assert above.tier == "silver"
    assert above.current_tier == "bronze"
    assert above.evidence_sufficient
    # silver is held and the evidence does not reach gold
    assert held_silver.recommendation(task_class=TASK, reports=strong, chain_verified=True) is None
    unverified = held_bronze.recommendation(task_class=TASK, reports=strong, chain_verified=False)
    assert unverified is None


# --- read-only ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "breaker", [None, broken_chain, low_bound], ids=["sufficient", "chain", "bound"]
)
def test_apply_always_refuses(breaker: Breaker | None) -> None:
    reports, chain = baseline()
    if breaker is not None:
        reports, chain = breaker(reports, chain)
    verdict = evaluate(reports, chain_verified=chain)

    with pytest.raises(PromotionMustBeHumanAuthorized) as excinfo:
        GATE.apply(verdict)

    assert excinfo.value.task_class == "t"
    assert excinfo.value.tier == "bronze"
    assert "docs/trust-tiers.yaml" in str(excinfo.value)


def test_format_verdict() -> None:
    sufficient = evaluate(baseline()[0])
    reports, chain = few_cases(*broken_chain(*baseline()))
    insufficient = evaluate(reports, chain_verified=chain)

    assert format_verdict(sufficient) == "codegenie verdict t → bronze: evidence SUFFICIENT"
    assert format_verdict(insufficient).splitlines() == [
        "codegenie verdict t → bronze: evidence INSUFFICIENT",
        "  - case count below floor (3 < 10)",
        "  - audit chain does not verify",
    ]


def test_write_recommendation(tmp_path: Path) -> None:
    repo_config = Path(__file__).resolve().parents[2] / "docs" / "trust-tiers.yaml"
    config_bytes = repo_config.read_bytes()
    local_config = tmp_path / "docs" / "trust-tiers.yaml"
    local_config.parent.mkdir()
    local_config.write_bytes(config_bytes)
    gate = PromotionGate(load_tier_config(local_config))
    verdict = gate.evaluate(
        task_class=TaskClass(
            name="vuln-remediation", qualname="x.V", min_cases_for_promotion={"bronze": 10}
        ),
        tier="bronze",
        reports=[report().model_copy(update={"task_class": "vuln-remediation"})],
        chain_verified=True,
    )
    state_dir = tmp_path / ".codegenie" / "eval"
    now = datetime(2026, 11, 24, 23, 5, 1, tzinfo=timezone(timedelta(hours=1)))

    first = write_recommendation(verdict, state_dir, now=now)
    second = write_recommendation(verdict, state_dir, now=now)
    third = write_recommendation(verdict, state_dir, now=now)

    directory = state_dir / "recommendations"
    assert first == directory / "20261124T220501Z-vuln-remediation-bronze.json"
    assert second == directory / "20261124T220501Z-vuln-remediation-bronze-2.json"
    assert third == directory / "20261124T220501Z-vuln-remediation-bronze-3.json"
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        p.name for p in (first, second, third)
    )  # no temporary file left behind
    payload: dict[str, Any] = json.loads(first.read_text(encoding="utf-8"))
    assert payload == {
        "schema_version": 1,
        "kind": "promotion-recommendation",
        "created_at": "2026-11-24T22:05:01+00:00",
        "verdict": verdict.model_dump(mode="json"),
        "note": RECOMMENDATION_NOTE,
    }
    assert payload["note"] == (
        "read-only: current_tiers is never changed by the harness; "
        "a human must edit docs/trust-tiers.yaml"
    )
    assert PromotionVerdict.model_validate(payload["verdict"]) == verdict
    # The harness never edits the tier file, even when recommending a promotion.
    assert local_config.read_bytes() == config_bytes
    assert repo_config.read_bytes() == config_bytes


def test_recommendations_read_newest_first_within_one_second(tmp_path: Path) -> None:
    # "x-2.json" sorts before "x.json" by name; the reader must still see it as newer
    now = datetime(2026, 11, 24, 22, 5, 1, tzinfo=UTC)
    written = [
        write_recommendation(
            evaluate([report()]).model_copy(update={"reasons": (f"run {i}",)}), tmp_path, now=now
        )
        for i in range(11)
    ]
    read = list(recommendations(tmp_path))
    assert [name for name, _ in read] == [p.name for p in reversed(written)]
    assert read[0][1].reasons == ("run 10",)


def test_concurrent_recommendations_never_overwrite_each_other(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    now = datetime(2026, 11, 24, 22, 5, 1, tzinfo=UTC)
    verdicts = [evaluate([report()]).model_copy(update={"reasons": (str(i),)}) for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(lambda v: write_recommendation(v, tmp_path, now=now), verdicts))
    assert len(set(paths)) == 24
    kept = sorted(v.reasons[0] for _, v in recommendations(tmp_path))
    assert kept == sorted(str(i) for i in range(24))
    assert sorted(p.name for p in (tmp_path / "recommendations").iterdir()) == sorted(
        p.name for p in paths
    )  # no temporary file left behind


def test_write_recommendation_defaults_to_now_in_utc(tmp_path: Path) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    path = write_recommendation(evaluate([report()]), tmp_path)
    after = datetime.now(UTC)

    created = datetime.fromisoformat(json.loads(path.read_text(encoding="utf-8"))["created_at"])
    assert before <= created <= after
    assert path.name.endswith("Z-t-bronze.json")


def test_write_recommendation_rejects_naive_time(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        write_recommendation(evaluate([report()]), tmp_path, now=datetime(2026, 11, 24))


def test_write_recommendation_sanitizes_names(tmp_path: Path) -> None:
    verdict = evaluate([report()]).model_copy(update={"task_class": "../evil/x"})

    path = write_recommendation(verdict, tmp_path, now=datetime(2026, 1, 2, tzinfo=UTC))

    assert path.parent == tmp_path / "recommendations"
    assert path.name == "20260102T000000Z-evil_x-bronze.json"


# --- property: worsening evidence never helps -----------------------------------------------

ISOLATION: tuple[IsolationClass, IsolationClass] = ("subprocess", "microvm")


@st.composite
def windows(draw: st.DrawFn) -> tuple[list[BenchRunReport], bool]:
    size = draw(st.integers(min_value=1, max_value=3))
    reports = []
    for run in range(size):
        blocks = draw(st.integers(min_value=0, max_value=2))
        reports.append(
            report(
                run=run,
                passed_count=draw(st.integers(min_value=0, max_value=40)),
                lower_bound_95=draw(st.floats(min_value=0.0, max_value=1.0)),
                complete=draw(st.booleans()),
                isolation_class=draw(st.sampled_from(ISOLATION)),
                cases=(*(case(i, BLOCK) for i in range(blocks)), case(9, WARN)),
            )
        )
    return reports, draw(st.booleans())


def _worsen(
    data: st.DataObject, reports: list[BenchRunReport], chain: bool
) -> tuple[list[BenchRunReport], bool]:
    dimension = data.draw(
        st.sampled_from(["bound", "floor", "block", "chain", "complete", "isolation"])
    )
    index = data.draw(st.integers(min_value=0, max_value=len(reports) - 1))
    target = reports[index]
    update: dict[str, Any]
    if dimension == "chain":
        return reports, False
    if dimension == "bound":
        update = {
            "lower_bound_95": data.draw(st.floats(min_value=0.0, max_value=target.lower_bound_95))
        }
    elif dimension == "floor":
        update = {"passed_count": data.draw(st.integers(0, target.passed_count))}
    elif dimension == "block":
        update = {"cases": (*target.cases, case(50, BLOCK))}
    elif dimension == "complete":
        update = {"complete": False}
    else:
        # Flipping a report's isolation class could *unmix* a mixed window, so only a
        # uniform window of two or more reports is made mixed; otherwise nothing changes.
        if len({r.isolation_class for r in reports}) == 1 and len(reports) > 1:
            flipped = ISOLATION[1 - ISOLATION.index(target.isolation_class)]
            update = {"isolation_class": flipped}
        else:
            update = {}
    return [*reports[:index], target.model_copy(update=update), *reports[index + 1 :]], chain


@given(window=windows(), data=st.data())
def test_worsening_one_dimension_never_makes_evidence_sufficient(
    window: tuple[list[BenchRunReport], bool], data: st.DataObject
) -> None:
    reports, chain = window
    for tier in ("bronze", "silver"):
        before = evaluate(reports, chain_verified=chain, tier=tier)
        worse_reports, worse_chain = _worsen(data, reports, chain)
        after = evaluate(worse_reports, chain_verified=worse_chain, tier=tier)

        if not before.evidence_sufficient:
            assert not after.evidence_sufficient
        assert len(after.reasons) >= len(before.reasons)
        assert after.evidence_sufficient == (after.reasons == ())


# --- SUT isolation --------------------------------------------------------------------------


def _isolated(isolation: str, *ids: int) -> tuple[CaseResult, ...]:
    return tuple(case(i).model_copy(update={"sut_isolation": isolation}) for i in ids)


def test_cases_below_the_required_sut_isolation_are_named() -> None:
    cases = (*_isolated("bwrap", 0), *_isolated("env-only", 1, 2), *_isolated("in-process", 3))
    verdict = evaluate([report(cases=cases)])
    assert verdict.evidence_sufficient is False
    assert verdict.reasons == (
        "SUT isolation below bwrap required for bronze: case-001 (env-only), "
        "case-002 (env-only), case-003 (in-process)",
    )


def test_many_weak_cases_are_counted_not_all_listed() -> None:
    verdict = evaluate([report(cases=_isolated("env-only", *range(15)))])
    (reason,) = verdict.reasons
    assert reason.endswith("case-009 (env-only) and 5 more")


def test_a_tier_file_may_accept_in_process_evidence_explicitly() -> None:
    lenient = PromotionGate(
        CONFIG.model_copy(update={"required_sut_isolation": {"bronze": "in-process"}})
    )
    verdict = lenient.evaluate(
        task_class=TASK,
        tier="bronze",
        reports=[report(cases=_isolated("in-process", 0, 1))],
        chain_verified=True,
    )
    assert verdict.evidence_sufficient is True


def test_a_trimmed_report_is_judged_by_its_recorded_isolation() -> None:
    trimmed = report(cases=()).model_copy(update={"sut_isolation": "mixed"})
    (reason,) = evaluate([trimmed]).reasons
    assert "(mixed, cases not listed)" in reason


def test_a_report_handed_to_the_gate_as_the_evidence_must_be_complete() -> None:
    from pytest_codegenie_eval.errors import IncompleteReportForPromotion

    whole = report(run=1)
    verdict = GATE.evaluate_report(whole, task_class=TASK, tier="bronze", chain_verified=True)
    assert verdict == GATE.evaluate(
        task_class=TASK, tier="bronze", reports=[whole], chain_verified=True
    )
    partial = whole.model_copy(update={"complete": False, "incomplete_reason": "cost_cap"})
    with pytest.raises(IncompleteReportForPromotion, match="incomplete \\(cost_cap\\)") as err:
        GATE.evaluate_report(partial, task_class=TASK, tier="bronze", chain_verified=True)
    assert (err.value.run_id, err.value.task_class) == (partial.run_id, "t")
    assert isinstance(err.value, CodegenieEvalError)
    # judging a recorded window names the same report in the reasons instead
    assert not evaluate([partial]).evidence_sufficient


# --- metered cost ---------------------------------------------------------------------------


def _metered(*ids: int, transcript: bool = True) -> tuple[CaseResult, ...]:
    usage = ModelUsage(calls=1, cost_usd=0.01, transcript_digest="d" * 64 if transcript else "")
    return tuple(
        case(i).model_copy(update={"cost_source": "gateway", "model_usage": usage}) for i in ids
    )


def test_a_tier_may_require_metered_cost_and_names_the_cases_without_it() -> None:
    strict = PromotionGate(CONFIG.model_copy(update={"requires_metered_cost": ["bronze"]}))
    cases = (*_metered(0, 1), *_metered(2, transcript=False), case(3))
    verdict = strict.evaluate(
        task_class=TASK, tier="bronze", reports=[report(cases=cases)], chain_verified=True
    )
    assert verdict.evidence_sufficient is False
    assert verdict.reasons == (
        "bronze requires cost metered by the model gateway and a kept transcript "
        "(requires_metered_cost); cases without: case-002, case-003",
    )
    # the same evidence, fully metered, suffices; and a tier that does not ask is not asked
    metered = strict.evaluate(
        task_class=TASK,
        tier="bronze",
        reports=[report(cases=_metered(0, 1, 2, 3))],
        chain_verified=True,
    )
    assert metered.evidence_sufficient is True
    assert evaluate([report(cases=cases)]).evidence_sufficient is True


def test_requires_metered_cost_names_only_configured_tiers() -> None:
    with pytest.raises(ValueError, match=r"requires_metered_cost\[0\].*'platinum'"):
        TierConfig.model_validate({**CONFIG.model_dump(), "requires_metered_cost": ["platinum"]})


def test_a_run_with_upstream_failures_is_not_evidence_and_says_why() -> None:
    hit = report().model_copy(
        update={
            "complete": False,
            "incomplete_reason": "infrastructure",
            "infrastructure_failures": 2,
        }
    )
    verdict = evaluate([hit])
    assert verdict.evidence_sufficient is False
    assert any("failed upstream" in reason for reason in verdict.reasons)


# --- pooled re-runs -------------------------------------------------------------------------


def _run(scores: list[float], *, sut: str = "s" * 64) -> BenchRunReport:
    from pytest_codegenie_eval.evidence.aggregate import build_report

    results = [
        CaseResult(
            task_class="t",
            case_id=f"case-{i:03d}",
            score=score,
            passed=score >= 1.0,
            sut_isolation="bwrap",
            sut_digest=sut,
            rubric_digest="r" * 64,
            case_digest=f"{i:064x}",
        )
        for i, score in enumerate(scores)
    ]
    return build_report("t", results, harness_version="0", scores="pass_fail")


def test_a_rerun_adds_attempts_instead_of_a_lottery_ticket() -> None:
    """Issue 24, item 6: the gate judged only the newest run, so re-running a stochastic
    agent until one run cleared was free. Earlier complete runs of the same agent on the same
    bench are pooled: each run's attempts are further attempts of each case."""
    unlucky = _run([1.0] * 10 + [0.0, 0.0])
    lucky = _run([1.0] * 12)
    alone = GATE.evaluate(task_class=TASK, tier="bronze", reports=[lucky], chain_verified=True)
    pooled = GATE.evaluate(
        task_class=TASK,
        tier="bronze",
        reports=[lucky],
        chain_verified=True,
        pooled=[unlucky],
        pooled_digests=["a" * 64],
        report_digests=["b" * 64],
    )
    assert alone.pooled_runs == 1
    assert pooled.pooled_runs == 2
    assert pooled.run_ids == (unlucky.run_id, lucky.run_id)
    assert pooled.report_digests == ("a" * 64, "b" * 64)
    assert pooled.passed_count == 10  # a case passes when all of its attempts did
    assert pooled.lower_bound_95 is not None
    assert alone.lower_bound_95 is not None
    assert pooled.lower_bound_95 < alone.lower_bound_95
    assert "pooled 2 runs of this agent on this bench" in format_verdict(pooled)


def test_runs_of_another_agent_or_bench_are_not_pooled() -> None:
    lucky = _run([1.0] * 12)
    other_agent = _run([0.0] * 12, sut="o" * 64)
    verdict = GATE.evaluate(
        task_class=TASK, tier="bronze", reports=[lucky], chain_verified=True, pooled=[other_agent]
    )
    assert verdict.pooled_runs == 1
    assert verdict.run_ids == (lucky.run_id,)
