"""Issue 13: malformed input from a bench author or a hostile rubric is a typed error naming
what is wrong, bounded in time and memory, and it never takes the session down."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import yaml

from pytest_codegenie_eval.contract import MAX_YAML_DEPTH, strict_yaml
from pytest_codegenie_eval.digests import read_digests
from pytest_codegenie_eval.errors import DigestsFileInvalid, TaskClassInvalid, TierConfigInvalid
from pytest_codegenie_eval.execution import validate_rubric_output
from pytest_codegenie_eval.loader import LoadedTaskClass, load_failure_modes, load_task_class
from pytest_codegenie_eval.tiers import load_tier_config
from tests.conftest import copy_stub

# --------------------------------------------------------------------------------------------
# rubric output: one strict JSON object, one rule for numbers


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> LoadedTaskClass:
    return load_task_class(copy_stub(tmp_path_factory.mktemp("stub")))


HIDDEN_BLOCK = (
    '{"score": 1.0, "failure_modes": [{"code": "answer.wrong", "detail": "wrong"}],'
    ' "failure_modes": []}'
)


@pytest.mark.parametrize(
    "text",
    [
        '{"score": 0, "score": 1}',
        HIDDEN_BLOCK,
        '{"score": 1, "breakdown": {"ANSWER_CORRECT": 0, "ANSWER_CORRECT": 1}}',
    ],
    ids=["score-twice", "failure-modes-twice", "breakdown-key-twice"],
)
def test_a_rubric_repeating_a_key_is_malformed(stub: LoadedTaskClass, text: str) -> None:
    # live: plain JSON keeps the last value, which passes the case
    naive = json.loads(text)
    assert naive["score"] == 1
    assert not naive.get("failure_modes")
    verdict = validate_rubric_output(text.encode(), case_id="alpha", task_class=stub)
    assert [fm.code for fm in verdict.failure_modes] == ["rubric.malformed_output"]
    assert "duplicate key" in verdict.failure_modes[0].detail
    assert verdict.score == 0.0


@pytest.mark.parametrize(
    "text",
    [
        '{"score": NaN}',
        '{"score": Infinity}',
        '{"score": 1e309}',
        '{"score": -1e-320}',
        '{"score": true}',
        '{"score": "1"}',
        '{"score": 1, "breakdown": {"ANSWER_CORRECT": NaN}}',
    ],
)
def test_a_score_is_a_finite_json_number_in_the_unit_interval(
    stub: LoadedTaskClass, text: str
) -> None:
    verdict = validate_rubric_output(text.encode(), case_id="alpha", task_class=stub)
    assert "rubric.malformed_output" in [fm.code for fm in verdict.failure_modes], text
    assert verdict.score == 0.0


def test_negative_zero_is_normalised_to_zero(stub: LoadedTaskClass) -> None:
    text = b'{"score": -0.0, "breakdown": {"ANSWER_CORRECT": -0.0}}'
    verdict = validate_rubric_output(text, case_id="alpha", task_class=stub)
    assert verdict.failure_modes == ()
    # equal scores must give equal run ids, which hash score.hex()
    assert math.copysign(1.0, verdict.score) == 1.0
    assert verdict.score.hex() == (0.0).hex()
    assert math.copysign(1.0, verdict.breakdown["ANSWER_CORRECT"]) == 1.0


# --------------------------------------------------------------------------------------------
# YAML: deep nesting and aliases are refused, quickly


DEEP = "version: 1\nfailure_modes: " + "[" * 5000 + "]" * 5000 + "\n"
LAUGHS = (
    "version: 1\n"
    + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" if i else "l0: &l0 [lol]\n"
        for i in range(10)
    )
    + "failure_modes: {}\n"
)


def test_the_attacks_are_live_without_the_bound() -> None:
    with pytest.raises(RecursionError):
        yaml.compose(DEEP, Loader=yaml.SafeLoader)
    # the aliases share nodes: ten short lines hold 9**9 leaves for any walk over them
    data = yaml.safe_load(LAUGHS)
    assert data["l9"][8][8][8][8][8][8][8][8][8][0] == "lol"
    assert data["l9"][0] is data["l9"][1]


@pytest.mark.parametrize(
    ("text", "needle"),
    [(DEEP, f"nested deeper than {MAX_YAML_DEPTH} levels"), (LAUGHS, "alias *l0")],
    ids=["deep", "billion-laughs"],
)
def test_contract_yaml_refuses_deep_nesting_and_aliases(
    tmp_path: Path, text: str, needle: str
) -> None:
    started = time.monotonic()
    with pytest.raises(yaml.YAMLError, match=needle.replace("*", r"\*")):
        strict_yaml(text)
    (tmp_path / "failure_modes.yaml").write_text(text)
    with pytest.raises(TaskClassInvalid, match=r"failure_modes\.yaml") as excinfo:
        load_failure_modes(tmp_path)
    assert needle in str(excinfo.value)
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "digests.yaml").write_text(text.replace("version: 1\n", ""))
    with pytest.raises(DigestsFileInvalid, match=r"digests\.yaml"):
        read_digests(cases)
    (tmp_path / "tiers.yaml").write_text(text.replace("version: 1", "schema_version: 1"))
    with pytest.raises(TierConfigInvalid, match=r"tiers\.yaml"):
        load_tier_config(tmp_path / "tiers.yaml")
    assert time.monotonic() - started < 5


def test_the_fence_reports_them_as_violations(tmp_path: Path) -> None:
    from pytest_codegenie_eval.fence import check_task_class

    tc = copy_stub(tmp_path)
    for text in (DEEP, LAUGHS):
        (tc / "failure_modes.yaml").write_text(text)
        rules = {v.rule for v in check_task_class(tc)}
        assert "failure-modes" in rules
