"""`--codegenie-gate=TIER`: the exit status follows the verdict, not single cases; and a
verdict is printed (and a recommendation written) only when asked, or when the tier above a
held one becomes sufficient (issue 26)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import repin

BASE = ("-p", "no:cacheprovider", "--codegenie-bench=stub", "--codegenie-no-cache")


def _tiers(root: Path, bronze: float, current: str = "none") -> None:
    (root / "docs").mkdir(exist_ok=True)
    (root / "docs" / "trust-tiers.yaml").write_text(
        "# UNCALIBRATED thresholds for tests\nschema_version: 1\nuncalibrated: true\n"
        f"thresholds: {{bronze: {bronze}, silver: 0.8}}\ncurrent_tiers: {{stub: {current}}}\n"
    )


def _fail_beta(stub: Path) -> None:
    """beta fails, with a warn-severity mode only (a block mode alone keeps any tier away)."""
    (stub / "cases" / "beta" / "expected" / "answer.txt").write_text("999\n")
    repin(stub)
    modes = stub / "failure_modes.yaml"
    modes.write_text(
        modes.read_text().replace("answer.wrong: {severity: block", "answer.wrong: {severity: warn")
    )


def test_sufficient_evidence_passes_the_gate_though_a_case_failed(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    _tiers(pytester.path, bronze=0.1)
    _fail_beta(stub_bench)
    plain = pytester.runpytest_inprocess(*BASE, "--codegenie-state-dir=plain")
    assert plain.ret == pytest.ExitCode.TESTS_FAILED  # live: without the gate a case decides
    gated = pytester.runpytest_inprocess(*BASE, "--codegenie-gate=bronze", "--junitxml=j.xml")
    gated.assert_outcomes(passed=2, failed=1)  # the case is still a failure
    assert gated.ret == pytest.ExitCode.OK
    gated.stdout.fnmatch_lines(["codegenie gate bronze: evidence SUFFICIENT -> exit 0"])
    assert 'failures="1"' in (pytester.path / "j.xml").read_text()


def test_a_block_failure_keeps_the_gate_shut(pytester: pytest.Pytester, stub_bench: Path) -> None:
    _tiers(pytester.path, bronze=0.1)
    (stub_bench / "cases" / "beta" / "expected" / "answer.txt").write_text("999\n")
    repin(stub_bench)
    result = pytester.runpytest_inprocess(*BASE, "--codegenie-gate=bronze")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*1 block-severity failure mode*", "*gate bronze*exit 1"])


def test_insufficient_evidence_fails_the_gate_with_its_reasons(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    _tiers(pytester.path, bronze=0.5)
    result = pytester.runpytest_inprocess(*BASE, "--codegenie-gate=bronze")
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # every case passed, the bound did not
    result.stdout.fnmatch_lines(
        [
            "*codegenie verdict stub → bronze: evidence INSUFFICIENT*",
            "*lower_bound_95 0.37 < bronze threshold 0.50*",
            "codegenie gate bronze: evidence INSUFFICIENT -> exit 1",
        ]
    )


def test_the_gate_and_a_different_verdict_tier_are_a_usage_error(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    _tiers(pytester.path, bronze=0.1)
    result = pytester.runpytest_inprocess(
        *BASE, "--codegenie-gate=bronze", "--codegenie-verdict=silver"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_a_plain_run_of_a_task_class_without_a_tier_prints_no_verdict(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    _tiers(pytester.path, bronze=0.1)
    result = pytester.runpytest_inprocess(*BASE)
    result.assert_outcomes(passed=3)
    assert "codegenie verdict" not in result.stdout.str()
    assert not (pytester.path / ".codegenie" / "eval" / "recommendations").exists()


def test_the_tier_above_a_held_one_is_recommended_unasked(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    (pytester.path / "docs").mkdir()
    (pytester.path / "docs" / "trust-tiers.yaml").write_text(
        "# UNCALIBRATED thresholds for tests\nschema_version: 1\nuncalibrated: true\n"
        "thresholds: {bronze: 0.1, silver: 0.2}\ncurrent_tiers: {stub: bronze}\n"
    )
    result = pytester.runpytest_inprocess(*BASE)
    result.stdout.fnmatch_lines(["*codegenie verdict stub → silver: evidence SUFFICIENT*"])
    assert list((pytester.path / ".codegenie" / "eval" / "recommendations").glob("*silver*"))
