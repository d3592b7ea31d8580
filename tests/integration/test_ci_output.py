"""CI-native output (issue 15): step summary, annotations, fail-on-partial."""

from __future__ import annotations

from pathlib import Path

import pytest

BASE = ("-p", "no:cacheprovider", "--codegenie-bench=stub", "--codegenie-no-cache")

HOSTILE = """\
import sys
print("::error title=forged::an injected annotation\\n::set-output name=x::y")
print("<script>alert(1)</script> | pipe")
sys.exit(1)
"""


def test_github_step_summary_and_annotations(
    pytester: pytest.Pytester, stub_bench: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = pytester.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    script = pytester.path / "hostile.py"
    script.write_text(HOSTILE)
    import sys

    result = pytester.runpytest_inprocess(*BASE, f"--codegenie-sut={sys.executable} {script}")
    result.assert_outcomes(failed=3)
    text = summary.read_text()
    assert "### codegenie eval: stub" in text
    assert "| 3 | 0 | 0.000 |" in text
    assert "| alpha | 1 | sut.exception" in text
    assert "<script>" not in text
    errors = [line for line in result.outlines if line.startswith("::error ")]
    assert len(errors) == 3
    assert errors[0].startswith("::error file=bench/stub/cases/alpha/case.toml,line=1,title=")
    # the SUT's output cannot start a workflow command of its own: newlines are escaped
    for line in result.outlines:
        if "forged" in line or "set-output" in line:
            assert not line.startswith(("::set-output", "::error title=forged"))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    off = pytester.runpytest_inprocess(*BASE, "--codegenie-github-annotations=off")
    assert not [line for line in off.outlines if line.startswith("::error ")]


def test_fail_on_partial_makes_a_subset_run_fail(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    plain = pytester.runpytest_inprocess(*BASE, "-k", "alpha")
    assert plain.ret == pytest.ExitCode.OK  # live: a partial run exits 0 under plain pytest
    plain.stdout.fnmatch_lines(["PARTIAL RUN of stub: a subset of cases; not complete evidence*"])
    strict = pytester.runpytest_inprocess(*BASE, "-k", "alpha", "--codegenie-fail-on-partial")
    strict.assert_outcomes(passed=1)
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    whole = pytester.runpytest_inprocess(*BASE, "--codegenie-fail-on-partial")
    assert whole.ret == pytest.ExitCode.OK


@pytest.mark.parametrize("mode", [[], ["-n", "2"]], ids=["no-xdist", "n2"])
def test_junitxml_names_cases_by_task_class_and_carries_the_aggregate(
    pytester: pytest.Pytester, stub_bench: Path, mode: list[str]
) -> None:
    import xml.etree.ElementTree as ET

    result = pytester.runpytest_subprocess(*BASE, *mode, "--junitxml=out.xml")
    result.assert_outcomes(passed=3)
    root = ET.parse(pytester.path / "out.xml").getroot()
    cases = root.findall(".//testcase")
    assert sorted((c.get("classname"), c.get("name")) for c in cases) == [
        ("stub", "alpha"),
        ("stub", "beta"),
        ("stub", "gamma"),
    ]
    props = {
        str(p.get("name")): str(p.get("value"))
        for p in root.findall("./testsuite/properties/property")
    }
    assert props["codegenie.stub.cases"] == "3"
    assert props["codegenie.stub.passed"] == "3"
    assert props["codegenie.stub.bound_method"] == "clopper-pearson"
    assert float(props["codegenie.stub.lower_bound_95"]) == pytest.approx(0.05 ** (1 / 3), abs=1e-6)
    assert len(props["codegenie.stub.run_id"]) == 64
    assert len(props["codegenie.stub.chain_head"]) == 64


def test_a_cached_result_says_where_and_for_how_much_it_was_measured(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    import json

    base = ("-p", "no:cacheprovider", "--codegenie-bench=stub")
    pytester.runpytest_inprocess(*base).assert_outcomes(passed=3)
    warm = pytester.runpytest_inprocess(*base, "--codegenie-jsonl=out.jsonl")
    warm.stdout.fnmatch_lines(["*cache hits 3/3*(cached results: measured earlier in 1 session*"])
    lines = [json.loads(x) for x in (pytester.path / "out.jsonl").read_text().splitlines()]
    case = next(x for x in lines if x["type"] == "case")
    assert case["cached"] is True
    assert case["cost_usd"] == 0.0
    assert set(case["cached_from"]) == {"run_scope", "cost_usd", "measured_at"}
    # ini codegenie_cache = off measures afresh
    pytester.makeini("[pytest]\ncodegenie_cache = off\n")
    fresh = pytester.runpytest_inprocess(*base)
    fresh.stdout.fnmatch_lines(["*cache hits 0/3*"])


def test_a_failure_detail_cannot_forge_a_workflow_command() -> None:
    from pytest_codegenie_eval.models import BenchRunReport, CaseResult, FailureMode
    from pytest_codegenie_eval.output.github import workflow_annotations

    forged = "boom\n::error title=forged::all good\n::add-mask::x"
    case = CaseResult(
        task_class="t",
        case_id="c",
        nodeid="bench/t/cases/c/case.toml::c",
        failure_modes=(FailureMode(code="sut.exception", severity="block", detail=forged),),
    )
    report = BenchRunReport(
        run_id="ab" * 32,
        task_class="t",
        created_at="2026-12-02T00:00:00+00:00",
        harness_version="0",
        cases=(case,),
    )
    # live: written as it comes, the detail starts commands of its own on new lines
    naive = f"::error title=c::{forged}".splitlines()
    assert any(line.startswith("::error title=forged") for line in naive)
    (line,) = workflow_annotations([report])
    assert "\n" not in line
    assert line.startswith("::error file=bench/t/cases/c/case.toml,line=1,title=codegenie t/c::")
    assert "%0A::error title=forged" in line


def test_a_shard_reads_as_a_shard_in_the_step_summary(
    pytester: pytest.Pytester, stub_bench: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = pytester.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    pytester.runpytest_inprocess(*BASE, "--codegenie-shard=1/3").assert_outcomes(passed=1)
    assert "| shard 1/3 (merge the shards for the run) |" in summary.read_text()
    assert "PARTIAL" not in summary.read_text()


@pytest.mark.parametrize("mode", [[], ["-n", "2"]], ids=["in-process", "xdist"])
def test_the_short_summary_says_why_in_one_line(
    pytester: pytest.Pytester,
    stub_bench: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: list[str],
) -> None:
    """The short test summary gives each failed case one line that leads with why (pytest
    prints a failure's whole text there on CI, and cuts it to the terminal elsewhere), and
    JUnit's failure message is that line."""
    import xml.etree.ElementTree as ET

    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest_subprocess(
        *BASE, *mode, "--codegenie-sut=noop", "-rf", "--junitxml=out.xml"
    )
    result.assert_outcomes(failed=3)
    summary = result.stdout.str().split("short test summary info")[1].splitlines()[1:]
    assert sorted(summary[:3]) == [
        f"FAILED bench/stub/cases/{case}/case.toml::{case} - score 0.000 < 1.000: answer.wrong"
        for case in ("alpha", "beta", "gamma")
    ]
    assert "breakdown:" not in summary[3]  # the full report is above, not repeated here
    failure = ET.parse(pytester.path / "out.xml").getroot().find(".//testcase/failure")
    assert failure is not None
    assert failure.get("message") == "score 0.000 < 1.000: answer.wrong"
    assert "breakdown:" in (failure.text or "")  # the whole report is still the body
