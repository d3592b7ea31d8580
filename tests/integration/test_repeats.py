"""--codegenie-repeat=K: K items per case, the case as the unit of evidence (issue 14)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pytest_codegenie_eval.evidence.stats import lower_bound_95, seed_from_bench
from tests.conftest import newest_report, read_jsonl

# answers right on the first attempt only: the flaky agent a single run would overrate
FLAKY = """\
import os, sys
from pathlib import Path
ws = Path(sys.argv[1])
n = int((ws / "question.txt").read_text().split()[-1])
attempt = int(os.environ["CODEGENIE_REPEAT"])
(ws / "answer.txt").write_text(f"{n + 1 if attempt == 1 else n}\\n")
"""


def _flaky(pytester: pytest.Pytester) -> str:
    script = pytester.path / "flaky.py"
    script.write_text(FLAKY)
    return f"--codegenie-sut={sys.executable} {script} {{workspace}}"


def test_each_case_runs_k_times_as_k_items(pytester: pytest.Pytester, stub_bench: Path) -> None:
    collected = pytester.runpytest_inprocess(
        "--codegenie-bench=stub", "--codegenie-repeat=3", "--co", "-q"
    )
    ids = [line for line in collected.outlines if "::" in line]
    assert len(ids) == 9
    assert "bench/stub/cases/alpha/case.toml::alpha[r1]" in ids
    assert "bench/stub/cases/gamma/case.toml::gamma[r3]" in ids


def test_a_flaky_agent_is_judged_by_its_cases_not_its_attempts(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    result = pytester.runpytest_inprocess(
        "-p",
        "no:cacheprovider",
        "--codegenie-bench=stub",
        "--codegenie-repeat=3",
        _flaky(pytester),
        "--codegenie-jsonl=out.jsonl",
    )
    result.assert_outcomes(passed=3, failed=6)
    report = newest_report(pytester.path)
    assert report["repeats"] == 3
    assert report["n"] == 3  # cases, not attempts
    assert len(report["cases"]) == 9
    assert report["passed_count"] == 0  # no case passed all of its attempts
    assert report["pass_at_1"] == pytest.approx(1 / 3)
    assert report["pass_at_k"] == 1.0  # every case passed at least once
    assert report["pass_hat_k"] == 0.0
    assert report["mean"] == pytest.approx(1 / 3)
    # the bound is over the three per-case means, never over the nine attempts
    means = [r["mean"] for r in report["case_repeats"]]
    assert means == pytest.approx([1 / 3] * 3)
    # the betting order's seed comes from the bench: task class, cases, repeat count
    seed = seed_from_bench("stub", ["alpha", "beta", "gamma"], 3)
    assert report["bound"]["seed"] == seed
    expected = lower_bound_95(means, seed=seed)
    assert report["lower_bound_95"] == expected.value
    assert [r["scores"] for r in report["case_repeats"]] == [[1.0, 0.0, 0.0]] * 3
    lines = read_jsonl(pytester.path / "out.jsonl")
    attempts = [(line["case_id"], line["repeat"]) for line in lines if line["type"] == "case"]
    assert attempts == [(c, r) for c in ("alpha", "beta", "gamma") for r in (1, 2, 3)]
    (agg,) = [line for line in lines if line["type"] == "aggregate"]
    assert agg["pass_hat_k"] == 0.0
    result.stdout.fnmatch_lines(["*repeats: 3 per case (9 attempts); a case passes when all 3 do*"])


def test_each_attempt_has_its_own_cache_entry_and_k_1_keeps_old_ids(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    once = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--codegenie-bench=stub")
    once.assert_outcomes(passed=3)
    single = newest_report(pytester.path)
    assert single["repeats"] == 1
    assert single["cases"][0]["repeat"] == 1
    assert single["case_repeats"] == []
    assert single["pass_hat_k"] is None
    again = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--codegenie-bench=stub", "--codegenie-repeat=2"
    )
    again.assert_outcomes(passed=6)
    # attempt 1 is the single attempt of the earlier run: cached; attempt 2 is new
    again.stdout.fnmatch_lines(["*cache hits 3/6*"])
    third = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--codegenie-bench=stub", "--codegenie-repeat=2"
    )
    third.stdout.fnmatch_lines(["*cache hits 6/6*"])


def test_selecting_one_attempt_is_partial_evidence(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--codegenie-bench=stub", "--codegenie-repeat=2", "-k", "r1"
    )
    result.assert_outcomes(passed=3)
    report = newest_report(pytester.path)
    assert report["complete"] is False
    assert report["incomplete_reason"] == "subset"


def test_the_repeat_count_is_validated(pytester: pytest.Pytester, stub_bench: Path) -> None:
    for bad in ("0", "two", "-1"):
        result = pytester.runpytest_inprocess("--codegenie-bench=stub", f"--codegenie-repeat={bad}")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["*--codegenie-repeat must be a whole number*"])


def test_repeats_survive_xdist(pytester: pytest.Pytester, stub_bench: Path) -> None:
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-n",
        "2",
        "--codegenie-bench=stub",
        "--codegenie-repeat=3",
        _flaky(pytester),
    )
    result.assert_outcomes(passed=3, failed=6)
    report = newest_report(pytester.path)
    assert sorted((c["case_id"], c["repeat"]) for c in report["cases"]) == [
        (c, r) for c in ("alpha", "beta", "gamma") for r in (1, 2, 3)
    ]
    assert report["passed_count"] == 0
    assert report["complete"] is True


def test_a_worker_crash_in_one_attempt_fails_that_attempt_only(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    pytester.makeconftest(
        """
        import os

        def pytest_codegenie_eval_run_sut(case, workspace, task_class, env):
            if case.case_id == "beta" and env["CODEGENIE_REPEAT"] == "2":
                os._exit(3)
            n = int((workspace / "question.txt").read_text().split()[-1])
            (workspace / "answer.txt").write_text(str(n + 1))
            return {}
        """
    )
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-n",
        "2",
        "--codegenie-bench=stub",
        "--codegenie-repeat=2",
        "--codegenie-jsonl=out.jsonl",
    )
    result.assert_outcomes(passed=5, failed=1)
    attempts = {
        (c["case_id"], c["repeat"]): c
        for c in read_jsonl(pytester.path / "out.jsonl")
        if c["type"] == "case"
    }
    assert len(attempts) == 6  # nothing lost
    assert attempts[("beta", 2)]["status"] == "crashed"
    assert attempts[("beta", 2)]["failure_modes"][0]["code"] == "harness.worker_crashed"
    assert attempts[("beta", 1)]["passed"] is True
    report = newest_report(pytester.path)
    assert report["passed_count"] == 2  # beta did not pass both attempts
    assert report["complete"] is True
