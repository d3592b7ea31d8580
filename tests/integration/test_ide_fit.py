"""Plain pytest and IDE habits (issue 15): a named test runs what it names, and only that."""

from __future__ import annotations

from pathlib import Path

import pytest

INI = """
[pytest]
testpaths = unit_tests bench
codegenie_bench = stub
"""
HOOK_CONFTEST = """
def pytest_codegenie_eval_run_sut(case, workspace, task_class, env):
    raise AssertionError("never called: the plugin is disabled")
"""


@pytest.fixture
def project(pytester: pytest.Pytester, stub_bench: Path) -> pytest.Pytester:
    pytester.makeini(INI)
    tests = pytester.mkdir("unit_tests")  # not "tests": that package name is this repo's
    (tests / "test_unit.py").write_text("def test_unit():\n    assert True\n")
    return pytester


def test_a_node_id_runs_only_what_it_names_even_with_an_ini_bench(
    project: pytest.Pytester,
) -> None:
    result = project.runpytest_inprocess(
        "-p", "no:cacheprovider", "unit_tests/test_unit.py::test_unit"
    )
    result.assert_outcomes(passed=1)  # live before: 4 (the unit test and three agent runs)
    assert "codegenie eval summary" not in result.stdout.str()
    assert not (project.path / ".codegenie").exists()  # nothing ran, nothing was written


def test_a_plain_run_with_an_ini_bench_collects_the_testpaths_too(
    project: pytest.Pytester,
) -> None:
    result = project.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)  # live before: 3 (the user's tests were skipped)
    result.stdout.fnmatch_lines(["*stub: 3 cases, 3 passed*"])


def test_the_command_line_bench_still_runs_the_bench_alone(project: pytest.Pytester) -> None:
    result = project.runpytest_inprocess("-p", "no:cacheprovider", "--codegenie-bench=stub")
    result.assert_outcomes(passed=3)


def test_a_named_case_runs_without_the_ini_bench(project: pytest.Pytester) -> None:
    result = project.runpytest_inprocess(
        "-p", "no:cacheprovider", "bench/stub/cases/beta/case.toml::beta"
    )
    result.assert_outcomes(passed=1)


def test_a_disabled_plugin_skips_a_conftest_hook_cleanly(project: pytest.Pytester) -> None:
    project.makeconftest(HOOK_CONFTEST)
    # live: without the specifications pytest refuses the conftest and runs nothing
    bare = project.runpytest_subprocess(
        "-p", "no:codegenie_eval", "-p", "no:codegenie_eval_hooks", "-p", "no:cacheprovider"
    )
    assert "unknown hook 'pytest_codegenie_eval_run_sut'" in bare.stdout.str() + bare.stderr.str()
    result = project.runpytest_subprocess("-p", "no:codegenie_eval", "-p", "no:cacheprovider")
    assert "unknown hook" not in result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=1)


def _noop(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--codegenie-bench=stub", "--codegenie-sut=noop", *args
    )


def test_tb_short_and_line_shorten_the_case_report(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    long = _noop(pytester).stdout.str()
    assert "SUT exit code" in long
    short = _noop(pytester, "--tb=short").stdout.str()
    assert "[block] answer.wrong" in short
    assert "SUT exit code" not in short
    assert "breakdown:" not in short
    line = _noop(pytester, "--tb=line")
    line.stdout.fnmatch_lines(
        ["*codegenie case stub/alpha: score 0.000 vs threshold 1.000*; [[]block[]] answer.wrong*"]
    )
    assert "breakdown:" not in line.stdout.str()


def test_a_single_case_reads_in_the_singular(pytester: pytest.Pytester, stub_bench: Path) -> None:
    result = _noop(pytester, "-x")
    result.stdout.fnmatch_lines(["stub: 1 case, 0 passed*PARTIAL (subset: 1 of 3 cases selected)*"])


def test_kept_workspaces_are_named_in_the_summary(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    result = pytester.runpytest_inprocess(
        "-p",
        "no:cacheprovider",
        "--codegenie-bench=stub",
        "--codegenie-keep-workspaces",
        "--codegenie-no-cache",
    )
    result.assert_outcomes(passed=3)
    line = next(ln for ln in result.outlines if ln.startswith("workspaces kept in: "))
    kept = Path(line.removeprefix("workspaces kept in: ").split("/<task class>")[0])
    assert (kept / "stub" / "beta" / "workspace" / "answer.txt").read_text().strip() == "3"


def test_jsonl_to_stdout_is_contiguous_parseable_lines_under_q(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    import json

    result = pytester.runpytest_subprocess(
        "-q", "-p", "no:cacheprovider", "-n", "2", "--codegenie-bench=stub", "--codegenie-jsonl=-"
    )
    result.assert_outcomes(passed=3)
    lines = result.outlines
    first = next(i for i, line in enumerate(lines) if line.startswith("{"))
    block = lines[first : first + 4]
    records = [json.loads(line) for line in block]  # each JSON line stands alone
    assert [r["type"] for r in records] == ["case", "case", "case", "aggregate"]
    assert not lines[first + 4].startswith("{")
