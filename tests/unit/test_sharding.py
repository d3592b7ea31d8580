"""Shard assignment and merging, without pytest runs: the merged report of any split equals
the report one machine builds from the same results (issue 15)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_codegenie_eval.errors import ShardMergeError
from pytest_codegenie_eval.evidence.aggregate import build_report
from pytest_codegenie_eval.evidence.sharding import ShardSource, merge_group, merge_shards
from pytest_codegenie_eval.evidence.shards import parse_shard, shard_case_ids, shard_of
from pytest_codegenie_eval.models import (
    BenchRunReport,
    CaseResult,
    FailureMode,
    ShardCase,
    ShardInfo,
)

VERSION = "0.0.test"


def _result(case_id: str, score: float, repeat: int = 1, **extra: object) -> CaseResult:
    passed = score >= 1.0
    return CaseResult(
        task_class="tc",
        case_id=case_id,
        nodeid=f"bench/tc/cases/{case_id}/case.toml::{case_id}",
        score=score,
        passed=passed,
        failure_modes=() if passed else (FailureMode(code="x.wrong", severity="warn"),),
        case_digest="d" + case_id,
        sut_digest="sut",
        rubric_digest="rub",
        repeat=repeat,
        **extra,  # type: ignore[arg-type]
    )


def _case_list(results: list[CaseResult]) -> tuple[ShardCase, ...]:
    ids = sorted({r.case_id for r in results})
    return tuple(ShardCase(case_id=c, case_digest="d" + c) for c in ids)


def _shards(results: list[CaseResult], count: int, *, repeats: int = 1) -> list[ShardSource]:
    """The shard reports ``count`` jobs would write for ``results`` (every case ran)."""
    cases = _case_list(results)
    sources = []
    for index in range(1, count + 1):
        info = ShardInfo(index=index, count=count, rubric_digest="rub", cases=cases)
        mine = [r for r in results if r.case_id in shard_case_ids(info)]
        report = build_report("tc", mine, harness_version=VERSION, repeats=repeats, shard=info)
        sources.append(ShardSource(Path(f"shard-{index}.json"), report, "0" * 64, None))
    return sources


_AGGREGATE = (
    "run_id",
    "complete",
    "incomplete_reason",
    "cases_total",
    "n",
    "passed_count",
    "mean",
    "stddev",
    "lower_bound_95",
    "bound",
    "block_failure_count",
    "repeats",
    "pass_at_1",
    "pass_at_k",
    "pass_hat_k",
    "within_case_variance",
    "clustered_standard_error",
    "case_repeats",
    "cases",
    "sut_digest",
    "rubric_digest",
)


def _same_run(merged: BenchRunReport, single: BenchRunReport) -> None:
    for name in _AGGREGATE:
        assert getattr(merged, name) == getattr(single, name), name


# ------------------------------------------------------------------ assignment


def test_parse_shard_accepts_i_of_n_and_refuses_the_rest() -> None:
    assert parse_shard("2/3").label == "2/3"
    assert parse_shard(" 1 / 1 ").index == 1
    for bad in ("0/3", "4/3", "3", "a/b", "1/0", "-1/3", "1/1001", ""):
        with pytest.raises(ValueError, match="I/N"):
            parse_shard(bad)


def test_a_case_keeps_its_shard_when_cases_are_added() -> None:
    before = {f"case-{i}": shard_of(f"case-{i}", 4) for i in range(200)}
    after = {f"case-{i}": shard_of(f"case-{i}", 4) for i in range(400)}
    assert all(after[c] == s for c, s in before.items())
    sizes = [sum(1 for s in after.values() if s == k) for k in range(1, 5)]
    assert min(sizes) > 60  # 100 expected each; a hash, not a count, decides


# ------------------------------------------------------------------ merge == single run

case_ids = st.lists(
    st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), min_size=1, max_size=25, unique=True
)
scores = st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0])


@settings(max_examples=60, deadline=None)
@given(ids=case_ids, data=st.data(), count=st.integers(1, 6), repeats=st.integers(1, 3))
def test_merged_shards_equal_the_single_machine_report(
    ids: list[str], data: st.DataObject, count: int, repeats: int
) -> None:
    results = [
        _result(case_id, data.draw(scores), repeat)
        for case_id in ids
        for repeat in range(1, repeats + 1)
    ]
    single = build_report("tc", results, harness_version=VERSION, repeats=repeats)
    shards = _shards(results, count, repeats=repeats)
    assert all(s.report.incomplete_reason == "shard" for s in shards)
    merged = merge_group(list(reversed(shards)))
    _same_run(merged, single)
    assert merged.complete
    assert merged.shard is None
    assert [m.index for m in merged.merged_from] == list(range(1, count + 1))


# ------------------------------------------------------------------ refusals


@pytest.fixture
def three() -> list[ShardSource]:
    results = [_result(f"c{i}", 1.0 if i % 3 else 0.0) for i in range(12)]
    shards = _shards(results, 3)
    assert all(s.report.cases for s in shards)  # every shard holds cases
    return shards


def _with(source: ShardSource, **update: object) -> ShardSource:
    report = BenchRunReport.model_validate({**source.report.model_dump(), **update})
    return ShardSource(Path(f"changed-{source.path}"), report, source.digest, None)


def test_a_missing_shard_is_named(three: list[ShardSource]) -> None:
    with pytest.raises(ShardMergeError, match=r"tc: shard\(s\) 2/3 missing"):
        merge_group([three[0], three[2]])


def test_a_duplicated_shard_names_both_files(three: list[ShardSource]) -> None:
    again = ShardSource(Path("again.json"), three[1].report, three[1].digest, None)
    with pytest.raises(
        ShardMergeError, match=r"again\.json: duplicates shard 2/3 .* shard-2\.json"
    ):
        merge_group([*three, again])


def test_a_shard_of_a_different_bench_is_refused(three: list[ShardSource]) -> None:
    info = three[2].shard
    cases = tuple(
        ShardCase(case_id=c.case_id, case_digest="e" * 64 if c.case_id == "c5" else c.case_digest)
        for c in info.cases
    )
    odd = _with(three[2], shard={**info.model_dump(), "cases": cases})
    with pytest.raises(ShardMergeError, match=r"ran a different bench .* case c5 has digest"):
        merge_group([three[0], three[1], odd])
    fewer = _with(three[2], shard={**info.model_dump(), "cases": info.cases[:-1]})
    with pytest.raises(ShardMergeError, match="different bench"):
        merge_group([three[0], three[1], fewer])


@pytest.mark.parametrize(
    ("field", "value", "what"),
    [
        ("sut_digest", "other-sut", "different SUT"),
        ("harness_version", "9.9", "different harness version"),
        ("repeats", 2, "different repeats"),
    ],
)
def test_a_shard_of_another_sut_or_harness_is_refused(
    three: list[ShardSource], field: str, value: object, what: str
) -> None:
    odd = _with(three[1], **{field: value})
    with pytest.raises(ShardMergeError, match=what) as err:
        merge_group([three[0], odd, three[2]])
    assert err.value.path == odd.path


def test_a_partial_shard_is_refused(three: list[ShardSource]) -> None:
    for reason, why in (("cost_cap", "cost cap"), ("subset", "not every case")):
        odd = _with(three[0], incomplete_reason=reason)
        with pytest.raises(ShardMergeError, match=f"shard 1/3 of tc is partial: .*{why}"):
            merge_group([odd, three[1], three[2]])


def test_a_case_in_the_wrong_shard_is_refused(three: list[ShardSource]) -> None:
    stolen = three[1].report.cases[0]
    moved = _with(three[0], cases=(*three[0].report.cases, stolen))
    with pytest.raises(
        ShardMergeError, match=f"holds case {stolen.case_id}, which belongs to shard 2/3"
    ):
        merge_group([moved, three[1], three[2]])


def test_a_result_scored_against_other_case_bytes_is_refused(three: list[ShardSource]) -> None:
    first = three[0].report.cases[0]
    forged = first.model_copy(update={"case_digest": "f" * 64})
    odd = _with(three[0], cases=(forged, *three[0].report.cases[1:]))
    with pytest.raises(ShardMergeError, match=f"case {first.case_id} was scored with digest"):
        merge_group([odd, three[1], three[2]])


def test_merge_groups_by_task_class_and_refuses_non_shards(three: list[ShardSource]) -> None:
    assert [r.task_class for r in merge_shards(three)] == ["tc"]
    with pytest.raises(ShardMergeError, match="no shard reports of task class 'other'"):
        merge_shards(three, task_class="other")
