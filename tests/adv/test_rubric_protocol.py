"""Hostile rubric outputs: every protocol violation is a typed block failure on its own case,
and the run goes on (docs/bench-authoring.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

Runner = Callable[..., tuple[pytest.RunResult, dict[str, dict[str, Any]]]]
BENCH = "adversarial-task-class"

# case_id -> (the one failure code, a fragment its detail must contain)
HOSTILE: dict[str, tuple[str, str]] = {
    "garbage": ("rubric.malformed_output", "not one JSON object"),
    "empty": ("rubric.malformed_output", "<empty>"),
    "huge-stdout": ("rubric.malformed_output", "stdout exceeded 1048576 bytes"),
    "two-objects": ("rubric.malformed_output", "Extra data"),
    "json-array": ("rubric.malformed_output", "stdout is JSON but not an object"),
    "exit-nonzero": ("rubric.malformed_output", "exit code 3; stderr: rubric: giving up"),
    "score-too-high": ("rubric.malformed_output", "score: Input should be less than or equal"),
    "score-nan": ("rubric.malformed_output", "score: Input should be a finite number"),
    "breakdown-out-of-range": ("rubric.malformed_output", "breakdown 'BEHAVED'=7.0 not in"),
    "wrong-case-id": ("rubric.malformed_output", "scored case 'someone-else'"),
    "unknown-breakdown-key": (
        "rubric.unknown_breakdown_key",
        "'EXFILTRATED_KEYS' is not a BreakdownKey",
    ),
    "unknown-failure-code": (
        "rubric.unknown_failure_mode",
        "'adv.not_in_taxonomy' is not in failure_modes.yaml",
    ),
}
# stderr-flood writes 20 MiB to stderr: tolerated (only a tail is kept), scoring unaffected
WELL_BEHAVED = ("ok", "stderr-flood", "sut-target")


def test_hostile_rubric_outputs_fail_only_their_own_case(
    run_fixture_bench: Runner, subtests: pytest.Subtests
) -> None:
    # every role that leaves no process behind, in one session (one run keeps the suite fast)
    result, cases = run_fixture_bench(
        BENCH, "-k", "not sleep-past-timeout and not orphan-child", "-rA"
    )
    # + severity-downgrade fails; + env-probe passes; nothing errors or crashes the session
    result.assert_outcomes(failed=len(HOSTILE) + 1, passed=len(WELL_BEHAVED) + 1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED

    for case_id, (code, fragment) in HOSTILE.items():
        with subtests.test(msg="hostile output is a block failure", case=case_id):
            case = cases[case_id]
            assert case["passed"] is False
            assert case["score"] == 0.0, "a broken rubric's claimed score must not count"
            assert [fm["code"] for fm in case["failure_modes"]] == [code]
            (mode,) = case["failure_modes"]
            assert mode["severity"] == "block"
            assert fragment in mode["detail"]
            result.stdout.fnmatch_lines(
                [
                    f"codegenie case {BENCH}/{case_id}: score 0.000 vs threshold 1.000",
                    f"*[[]block[]] {code}: *{fragment}*",
                ]
            )

    with subtests.test(msg="an unknown breakdown key is dropped from the breakdown"):
        assert cases["unknown-breakdown-key"]["breakdown"] == {"BEHAVED": 1.0}

    with subtests.test(msg="the rubric cannot downgrade a blocking failure mode"):
        case = cases["severity-downgrade"]
        # the rubric claimed severity "info" for a code the taxonomy marks "block"
        assert case["failure_modes"] == [
            {"code": "adv.blocking", "severity": "block", "detail": "please ignore"}
        ]
        assert case["score"] == 1.0
        assert case["passed"] is False
        result.stdout.fnmatch_lines(["*[[]block[]] adv.blocking: please ignore"])

    for case_id in WELL_BEHAVED:
        with subtests.test(msg="well-behaved cases still pass next to hostile ones", case=case_id):
            assert cases[case_id]["passed"] is True
            assert cases[case_id]["failure_modes"] == []
            assert cases[case_id]["score"] == 1.0
            result.stdout.fnmatch_lines([f"PASSED *{case_id}/case.toml::{case_id}"])
