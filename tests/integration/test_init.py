"""`codegenie-eval init` (issue 15): a new project starts from something green."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_codegenie_eval.cli import main as cli
from pytest_codegenie_eval.evidence.tiers import load_tier_config
from pytest_codegenie_eval.taskclass.fence import check_bench_root
from tests.conftest import run_cli


def test_init_writes_a_tier_file_and_a_skeleton_that_passes_the_fence_and_runs(
    pytester: pytest.Pytester,
) -> None:
    out = run_cli(pytester.path, "init", "--task-class", "answer-file")
    assert out.returncode == cli.EXIT_OK, out.stderr
    tiers = load_tier_config(pytester.path / "docs" / "trust-tiers.yaml")
    assert tiers.uncalibrated is True
    assert check_bench_root(pytester.path / "bench") == []
    ok = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--codegenie-bench=answer-file")
    ok.assert_outcomes(passed=3)
    noop = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--codegenie-bench=answer-file", "--codegenie-sut=noop"
    )
    noop.assert_outcomes(failed=3)
    noop.stdout.fnmatch_lines(["*[[]block[]] answer.missing*"])
    # never overwrites: the task class is refused, the tier file kept
    again = run_cli(pytester.path, "init", "--task-class", "answer-file")
    assert again.returncode == cli.EXIT_GENERIC
    assert "never overwrites" in again.stderr
    assert "kept" in again.stdout
    bad = run_cli(pytester.path, "init", "--task-class", "../escape")
    assert bad.returncode == cli.EXIT_GENERIC


def test_a_verdict_without_a_tier_file_names_the_command_that_writes_one(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    result = pytester.runpytest_inprocess("--codegenie-bench=stub", "--codegenie-verdict=bronze")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*create one with `codegenie-eval init`*"])
