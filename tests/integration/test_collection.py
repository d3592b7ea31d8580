"""Collection of bench cases as pytest items (pytester)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import copy_stub, repin


def test_collect_only_lists_one_item_per_case_sorted_by_case_id(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    # directory order and case_id order disagree on purpose
    (stub_bench / "cases" / "alpha" / "case.toml").write_text(
        (stub_bench / "cases" / "alpha" / "case.toml").read_text().replace('"alpha"', '"zulu"', 1)
    )
    repin(stub_bench)
    result = pytester.runpytest("--codegenie-bench=stub", "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "bench/stub/cases/beta/case.toml::beta",
            "bench/stub/cases/gamma/case.toml::gamma",
            "bench/stub/cases/alpha/case.toml::zulu",
            "3 tests collected*",
        ]
    )


def test_plain_pytest_collects_no_bench_case(pytester: pytest.Pytester, stub_bench: Path) -> None:
    pytester.makepyfile(test_plain="def test_ok():\n    assert True\n")
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=1)


def test_bench_option_runs_the_bench_not_the_repository_tests(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    pytester.makepyfile(test_plain="def test_ok():\n    assert True\n")
    result = pytester.runpytest("--codegenie-bench=stub", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["3 tests collected*"])
    result.stdout.no_fnmatch_line("*test_plain*")


def test_node_id_selects_one_case_without_bench_option(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    result = pytester.runpytest("bench/stub/cases/beta/case.toml::beta", "-q")
    result.assert_outcomes(passed=1)


def test_k_selects_cases(pytester: pytest.Pytester, stub_bench: Path) -> None:
    result = pytester.runpytest("--codegenie-bench=stub", "-k", "alpha or gamma", "-q")
    result.assert_outcomes(passed=2, deselected=1)


def test_last_failed_reruns_only_the_failed_case(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    (stub_bench / "cases" / "beta" / "expected" / "answer.txt").write_text("999\n")
    repin(stub_bench)
    first = pytester.runpytest("--codegenie-bench=stub", "-q")
    first.assert_outcomes(passed=2, failed=1)
    again = pytester.runpytest("--codegenie-bench=stub", "--lf", "-q")
    again.assert_outcomes(failed=1)


def test_plugin_can_be_disabled(pytester: pytest.Pytester, stub_bench: Path) -> None:
    pytester.makepyfile(test_plain="def test_ok():\n    assert True\n")
    result = pytester.runpytest("-p", "no:codegenie_eval", ".", "-q")
    result.assert_outcomes(passed=1)
    unknown = pytester.runpytest("-p", "no:codegenie_eval", "--codegenie-bench=stub")
    assert unknown.ret == pytest.ExitCode.USAGE_ERROR


def test_unknown_task_class_is_a_usage_error_naming_what_exists(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    result = pytester.runpytest("--codegenie-bench=nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*task class 'nope' is not registered under *bench*available: stub*"]
    )


def test_missing_bench_root_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--codegenie-bench=stub", "--codegenie-bench-root=missing")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*bench directory *missing does not exist*"])


def test_ini_default_and_several_benches(pytester: pytest.Pytester, stub_bench: Path) -> None:
    copy_stub(pytester.path, "other")
    registration = pytester.path / "bench" / "other" / "registration.py"
    registration.write_text(registration.read_text().replace('"stub"', '"other"'))
    pytester.makeini("[pytest]\ncodegenie_bench = stub other\n")
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["bench/other/cases/alpha/case.toml::alpha", "6 tests collected*"])
    comma = pytester.runpytest("--codegenie-bench=stub,other", "--collect-only", "-q")
    comma.stdout.fnmatch_lines(["6 tests collected*"])


def test_custom_bench_root(pytester: pytest.Pytester) -> None:
    copy_stub(pytester.path / "elsewhere")
    result = pytester.runpytest(
        "--codegenie-bench=stub", "--codegenie-bench-root=elsewhere/bench", "--collect-only", "-q"
    )
    result.stdout.fnmatch_lines(["3 tests collected*"])


def test_collection_twice_in_one_process_does_not_raise(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    for _ in range(2):
        result = pytester.runpytest_inprocess("--codegenie-bench=stub", "--collect-only", "-q")
        result.stdout.fnmatch_lines(["3 tests collected*"])


def test_python_files_inside_case_inputs_are_not_collected(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    (stub_bench / "cases" / "alpha" / "input" / "test_inside.py").write_text(
        "def test_never():\n    raise AssertionError\n"
    )
    repin(stub_bench)
    result = pytester.runpytest("--codegenie-bench=stub", "-q")
    result.assert_outcomes(passed=3)


def test_plugin_loads_without_xdist(pytester: pytest.Pytester, stub_bench: Path) -> None:
    result = pytester.runpytest_subprocess("-p", "no:xdist", "--codegenie-bench=stub", "-q")
    result.assert_outcomes(passed=3)


def test_the_bench_root_as_a_path_collects_every_task_class(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    # issue 26: `pytest bench` collected nothing and exited 5, while `pytest bench/stub` works
    copy_stub(pytester.path, "other")
    registration = pytester.path / "bench" / "other" / "registration.py"
    registration.write_text(registration.read_text().replace('"stub"', '"other"'))
    result = pytester.runpytest("bench", "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "bench/other/cases/alpha/case.toml::alpha",
            "*bench/stub/cases/gamma*",
            "6 tests collected*",
        ]
    )
    # a directory that holds no task class activates nothing
    pytester.mkdir("plain")
    assert pytester.runpytest("plain", "-q").ret == pytest.ExitCode.NO_TESTS_COLLECTED
