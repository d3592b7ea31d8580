"""A harness write that fails (a full or read-only disk) never rewrites a measured result
(issue 25, item 4): the passes stand, what could not be kept is recorded apart, the report
is not complete evidence, and the session exits non-zero.

A file where the cache or the ledger directory goes makes every write into it fail as a
full disk would, for a root harness too (root ignores file modes, not file types)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

BASE = ("-p", "no:cacheprovider", "--codegenie-bench=stub")


def _blocked(pytester: pytest.Pytester, name: str) -> Path:
    state = pytester.path / ".codegenie" / "eval"
    state.mkdir(parents=True, exist_ok=True)
    (state / name).write_text("not a directory: every write below it fails\n")
    return state


def _only_report(state: Path) -> dict[str, object]:
    (path,) = (state / "runs").glob("*.json")
    data: dict[str, object] = json.loads(path.read_text())
    return data


@pytest.mark.parametrize(
    ("blocked", "args", "lost"),
    [
        ("cache", (), "the result was not cached"),
        ("ledger", ("--codegenie-max-cost-usd=10", "--codegenie-no-cache"), "the cost ledger"),
    ],
)
def test_a_failed_write_keeps_the_measured_passes_and_fails_the_session(
    pytester: pytest.Pytester,
    stub_bench: Path,
    blocked: str,
    args: tuple[str, ...],
    lost: str,
) -> None:
    state = _blocked(pytester, blocked)
    result = pytester.runpytest_inprocess(*BASE, *args)
    # the agent's passes stand (they were harness.internal_error failures before)
    result.assert_outcomes(passed=3)
    assert "harness.internal_error" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "PARTIAL RUN of stub: the harness could not keep part of what it measured*",
            "stub: 3 cases, 3 passed*PARTIAL (3 attempt(s) not fully kept)",
            f"*NOT KEPT: {lost}*",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # a run that lost anything fails
    report = _only_report(state)
    assert report["complete"] is False
    assert report["incomplete_reason"] == "harness_write"
    assert report["harness_write_failures"] == 3
    cases = report["cases"]
    assert isinstance(cases, list)
    assert all(c["passed"] and c["score"] == 1.0 for c in cases)
    assert all(any(lost in e for e in c["harness_errors"]) for c in cases)
