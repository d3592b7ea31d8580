"""Running cases end to end: SUT forms, readable failures, reports, JSONL, cost cap.

Every test here runs in the three modes of the ``run_bench`` fixture (no xdist, -n 0, -n 2).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import RunBench, read_jsonl, repin


def _aggregate(path: Path) -> dict[str, object]:
    lines = read_jsonl(path)
    agg = [line for line in lines if line["type"] == "aggregate"]
    assert len(agg) == 1
    return agg[0]


def test_baseline_passes_and_writes_the_evidence(
    run_bench: RunBench, pytester: pytest.Pytester
) -> None:
    result = run_bench("--codegenie-jsonl=out.jsonl")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*codegenie eval summary*",
            "stub: 3 cases, 3 passed, mean 1.000, stddev 0.000, "
            "lower_bound_95 0.368 (clopper-pearson)*",
            "*report: *.codegenie/eval/runs/*-stub.json",
            "*chain head: *",
        ]
    )
    lines = read_jsonl(pytester.path / "out.jsonl")
    assert [line["case_id"] for line in lines if line["type"] == "case"] == [
        "alpha",
        "beta",
        "gamma",
    ]
    agg = _aggregate(pytester.path / "out.jsonl")
    assert agg["n"] == 3
    assert agg["passed_count"] == 3
    assert agg["complete"] is True
    assert agg["bound_method"] == "clopper-pearson"
    assert set(agg) == {
        "type", "task_class", "run_id", "n", "passed_count", "mean", "stddev",
        "lower_bound_95", "bound_method", "total_cost_usd", "complete", "chain_head",
    }  # fmt: skip
    runs = list((pytester.path / ".codegenie" / "eval" / "runs").glob("*.json"))
    assert len(runs) == 1
    report = json.loads(runs[0].read_text())
    assert report["run_id"] == agg["run_id"]
    assert [c["case_id"] for c in report["cases"]] == ["alpha", "beta", "gamma"]
    from pytest_codegenie_eval.execution.rubric_runner import rubric_isolation

    assert report["rubric_isolation"] == rubric_isolation()
    result.stdout.fnmatch_lines([f"*rubric isolation: subprocess ({report['rubric_isolation']})"])


def test_noop_sut_fails_every_case_readably(run_bench: RunBench) -> None:
    result = run_bench("--codegenie-sut=noop")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            "codegenie case stub/alpha: score 0.000 vs threshold 1.000",
            "breakdown:",
            "  ANSWER_CORRECT  0.000",
            "failure modes:",
            "  [block] answer.wrong: got ''",
            "SUT exit code: 0",
        ]
    )


def test_command_sut_gets_workspace_and_case_id(
    run_bench: RunBench, pytester: pytest.Pytester
) -> None:
    agent = pytester.path / "agent.py"
    agent.write_text(
        "import os, sys, pathlib\n"
        "ws = pathlib.Path(sys.argv[1])\n"
        "assert ws == pathlib.Path.cwd(), (ws, pathlib.Path.cwd())\n"
        "assert (ws / '.codegenie' / 'task.md').read_text().startswith('Write the answer')\n"
        "assert os.environ['CODEGENIE_BENCH_INVOCATION_TAG'].endswith('/stub/' + sys.argv[2])\n"
        "assert os.environ['CODEGENIE_CANARY'].startswith('CODEGENIE-CANARY-')\n"
        "assert not (ws / 'expected').exists()\n"
        "n = int((ws / 'question.txt').read_text().split()[-1])\n"
        "(ws / 'answer.txt').write_text(str(n + 1))\n"
        "print('agent done for', sys.argv[2])\n"
    )
    result = run_bench(f"--codegenie-sut={sys.executable} {agent} {{workspace}} {{case_id}}")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([f"*sut: {sys.executable} {agent} {{workspace}} {{case_id}}*"])


def test_hook_sut_from_conftest_with_cost(run_bench: RunBench, pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import os

        def pytest_codegenie_eval_run_sut(case, workspace, task_class, env):
            assert env["CODEGENIE_CANARY"] == os.environ["CODEGENIE_CANARY"]
            tag = env["CODEGENIE_BENCH_INVOCATION_TAG"]
            assert tag == os.environ["CODEGENIE_BENCH_INVOCATION_TAG"]
            n = int((workspace / "question.txt").read_text().split()[-1])
            (workspace / "answer.txt").write_text(str(n + 1))
            return {"cost_usd": 0.25}
        """
    )
    result = run_bench("--codegenie-jsonl=out.jsonl")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*cost 0.7500 USD*", "*sut: hook:pytest_codegenie_eval_run_sut*"])
    assert _aggregate(pytester.path / "out.jsonl")["total_cost_usd"] == pytest.approx(0.75)


def test_cost_cap_stops_new_cases_and_marks_the_run_partial(
    run_bench: RunBench, pytester: pytest.Pytester
) -> None:
    agent = pytester.path / "costly.py"
    agent.write_text(
        "import json, pathlib, sys\n"
        "ws = pathlib.Path(sys.argv[1])\n"
        "(ws / '.codegenie' / 'sut-result.json').write_text(json.dumps({'cost_usd': 1.0}))\n"
    )
    result = run_bench(
        f"--codegenie-sut={sys.executable} {agent} {{workspace}}",
        "--codegenie-max-cost-usd=0.5",
        "--codegenie-jsonl=out.jsonl",
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped", 0) >= 1
    assert outcomes.get("skipped", 0) + outcomes.get("failed", 0) == 3
    result.stdout.fnmatch_lines(["*PARTIAL (* skipped: cost cap)*", "*run id: partial:*"])
    agg = _aggregate(pytester.path / "out.jsonl")
    assert agg["complete"] is False
    assert str(agg["run_id"]).startswith("partial:")
    statuses = [c["status"] for c in read_jsonl(pytester.path / "out.jsonl") if c["type"] == "case"]
    assert "skipped_cost_cap" in statuses


def test_junitxml_carries_score_and_breakdown(
    run_bench: RunBench, pytester: pytest.Pytester
) -> None:
    run_bench("--junitxml=junit.xml").assert_outcomes(passed=3)
    xml = (pytester.path / "junit.xml").read_text()
    assert 'name="codegenie_score" value="1.000000"' in xml
    assert "ANSWER_CORRECT" in xml


def test_broken_case_fails_only_its_item(run_bench: RunBench, stub_bench: Path) -> None:
    (stub_bench / "cases" / "beta" / "case.toml").write_text('case_id = "beta"\ntitle = 3\n')
    repin(stub_bench)
    result = run_bench()
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*harness.case_invalid*beta*case.toml*"])


def test_a_subset_of_cases_is_partial_evidence(
    run_bench: RunBench, pytester: pytest.Pytester
) -> None:
    result = run_bench("-k", "alpha", "--codegenie-jsonl=out.jsonl")
    assert result.parseoutcomes()["passed"] == 1  # xdist does not report deselections
    result.stdout.fnmatch_lines(["*PARTIAL (subset: 1 of 3 cases selected)*", "*run id: partial:*"])
    assert _aggregate(pytester.path / "out.jsonl")["complete"] is False


def test_jsonl_to_stdout_starts_on_its_own_line(run_bench: RunBench) -> None:
    result = run_bench("--codegenie-jsonl=-", "-q")
    lines = [line for line in result.stdout.lines if line.startswith("{")]
    assert [json.loads(line)["type"] for line in lines] == ["case", "case", "case", "aggregate"]


def test_rubric_and_baseline_can_import_modules_beside_them(
    run_bench: RunBench, stub_bench: Path
) -> None:
    (stub_bench / "answers.py").write_text("def plus_one(n: int) -> int:\n    return n + 1\n")
    baseline = stub_bench / "baseline_sut.py"
    baseline.write_text(
        baseline.read_text()
        .replace("import sys\n", "import sys\n\nfrom answers import plus_one\n")
        .replace('f"{n + 1}\\n"', 'f"{plus_one(n)}\\n"')
    )
    rubric = stub_bench / "rubric.py"
    rubric.write_text(
        rubric.read_text().replace(
            "import serve\n", "import serve\n\nimport answers  # noqa: F401\n"
        )
    )
    result = run_bench()
    result.assert_outcomes(passed=3)
