"""Session end: identical aggregates across xdist modes, the audit chain, verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_codegenie_eval.store.audit import verify
from tests.conftest import RunBench, newest_report, read_jsonl

TIERS = """# UNCALIBRATED thresholds for tests
schema_version: 1
uncalibrated: true
thresholds: {bronze: 0.3, silver: 0.8}
current_tiers: {stub: none}
"""


def _aggregate(path: Path) -> dict[str, object]:
    return next(line for line in read_jsonl(path) if line["type"] == "aggregate")


def test_aggregate_is_identical_with_and_without_xdist(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    # beta fails, so the bound comes from BCa, not the degenerate fallback
    (stub_bench / "cases" / "beta" / "expected" / "answer.txt").write_text("999\n")
    from tests.conftest import repin

    repin(stub_bench)
    seen: list[dict[str, object]] = []
    for mode in ([], ["-n", "0"], ["-n", "2"]):
        out = f"out{len(seen)}.jsonl"
        pytester.runpytest_subprocess(
            *mode, "--codegenie-bench=stub", "--codegenie-no-cache", f"--codegenie-jsonl={out}"
        ).assert_outcomes(passed=2, failed=1)
        agg = _aggregate(pytester.path / out)
        seen.append({k: v for k, v in agg.items() if k != "chain_head"})
    assert seen[0] == seen[1] == seen[2]
    assert seen[0]["bound_method"] == "clopper-pearson"  # the stub declares pass/fail
    assert isinstance(seen[0]["lower_bound_95"], float)


def test_three_runs_make_a_chain_of_three_that_verifies(
    run_bench_once: RunBench, pytester: pytest.Pytester
) -> None:
    for _ in range(3):
        run_bench_once().assert_outcomes(passed=3)
    state = pytester.path / ".codegenie" / "eval"
    result = verify(state)
    assert result.ok, result.problems
    assert result.records == 3
    assert result.verified_complete == 3
    records = [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines()]
    assert [r["seq"] for r in records] == [0, 1, 2]
    assert records[0]["prev_hash"] == "0" * 64
    assert records[1]["prev_hash"] == records[0]["hash"]


def test_a_tampered_chain_stops_the_next_run_before_any_sut(
    run_bench_once: RunBench, pytester: pytest.Pytester
) -> None:
    run_bench_once().assert_outcomes(passed=3)
    report = next((pytester.path / ".codegenie" / "eval" / "runs").glob("*.json"))
    report.write_text(report.read_text().replace('"passed_count": 3', '"passed_count": 9'))
    marker = pytester.path / "sut-ran.txt"
    agent = pytester.path / "agent.py"
    agent.write_text(f"open({str(marker)!r}, 'a').write('x')\n")
    import sys

    result = run_bench_once(f"--codegenie-sut={sys.executable} {agent}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*audit chain*does not verify; no case was started*"])
    assert not marker.exists()


def test_verdict_at_session_end_writes_a_recommendation(
    run_bench_once: RunBench, pytester: pytest.Pytester
) -> None:
    (pytester.path / "docs").mkdir()
    tiers = pytester.path / "docs" / "trust-tiers.yaml"
    tiers.write_text(TIERS)
    result = run_bench_once("--codegenie-verdict=silver")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*codegenie verdict stub → silver: evidence INSUFFICIENT*",
            "*lower_bound_95 0.37 < silver threshold 0.80*",
            "*recommendation: *recommendations*",
        ]
    )
    recs = list((pytester.path / ".codegenie" / "eval" / "recommendations").glob("*.json"))
    assert len(recs) == 1
    rec = json.loads(recs[0].read_text())
    assert rec["verdict"]["evidence_sufficient"] is False
    assert tiers.read_text() == TIERS
    bronze = run_bench_once("--codegenie-verdict=bronze")
    bronze.stdout.fnmatch_lines(["*codegenie verdict stub → bronze: evidence SUFFICIENT*"])


def test_unknown_verdict_tier_is_a_usage_error(
    run_bench_once: RunBench, pytester: pytest.Pytester
) -> None:
    (pytester.path / "docs").mkdir()
    (pytester.path / "docs" / "trust-tiers.yaml").write_text(TIERS)
    result = run_bench_once("--codegenie-verdict=diamond")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*diamond*"])


def test_strict_mode_aborts_on_a_digest_mismatch(
    run_bench_once: RunBench, stub_bench: Path
) -> None:
    (stub_bench / "cases" / "alpha" / "input" / "question.txt").write_text("tampered 5\n")
    lenient = run_bench_once()
    lenient.assert_outcomes(passed=2, failed=1)
    lenient.stdout.fnmatch_lines(["*harness.digest_mismatch*"])
    strict = run_bench_once("--codegenie-strict")
    assert strict.ret == pytest.ExitCode.USAGE_ERROR
    strict.stderr.fnmatch_lines(["*digest pins do not match; no case was started*"])


def test_worker_crash_counts_as_a_failed_case(pytester: pytest.Pytester, stub_bench: Path) -> None:
    pytester.makeconftest(
        """
        import os

        def pytest_codegenie_eval_run_sut(case, workspace, task_class, env):
            if case.case_id == "beta":
                os._exit(3)
            n = int((workspace / "question.txt").read_text().split()[-1])
            (workspace / "answer.txt").write_text(str(n + 1))
            return {}
        """
    )
    result = pytester.runpytest_subprocess(
        "-n", "2", "--codegenie-bench=stub", "--codegenie-jsonl=out.jsonl"
    )
    result.assert_outcomes(passed=2, failed=1)
    cases = {
        c["case_id"]: c for c in read_jsonl(pytester.path / "out.jsonl") if c["type"] == "case"
    }
    assert cases["beta"]["status"] == "crashed"
    assert cases["beta"]["failure_modes"][0]["code"] == "harness.worker_crashed"
    assert _aggregate(pytester.path / "out.jsonl")["n"] == 3


def test_unanswerable_verdict_fails_before_any_case_runs(
    run_bench_once: RunBench, pytester: pytest.Pytester
) -> None:
    result = run_bench_once("--codegenie-verdict=bronze")  # no docs/trust-tiers.yaml here
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--codegenie-verdict=bronze: *trust-tiers.yaml*does not exist*"])
    assert not (pytester.path / ".codegenie" / "eval" / "runs").exists()
    (pytester.path / "docs").mkdir()
    (pytester.path / "docs" / "trust-tiers.yaml").write_text(
        TIERS.replace("{bronze: 0.3, silver: 0.8}", "{bronze: 0.3, silver: 0.8, gold: 0.9}")
    )
    gold = run_bench_once("--codegenie-verdict=gold")
    assert gold.ret == pytest.ExitCode.USAGE_ERROR
    gold.stderr.fnmatch_lines(["*task class 'stub' declares floors for bronze, silver*"])


def test_the_reporter_is_a_plugin_that_unregisters_itself(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    seen: dict[str, object] = {}

    class Probe:
        @pytest.hookimpl(tryfirst=True)
        def pytest_sessionfinish(self, session: pytest.Session) -> None:
            seen["during"] = session.config.pluginmanager.get_plugin("codegenie_eval_reporter")

        @pytest.hookimpl(trylast=True)
        def pytest_unconfigure(self, config: pytest.Config) -> None:
            seen["after"] = config.pluginmanager.get_plugin("codegenie_eval_reporter")

    result = pytester.runpytest(
        "--codegenie-bench=stub", "-p", "no:cacheprovider", plugins=[Probe()]
    )
    result.assert_outcomes(passed=3)
    assert type(seen["during"]).__name__ == "EvalReporter"
    assert seen["after"] is None


def test_session_end_verifies_the_chain_once_for_every_verdict_and_the_page(
    run_bench_once: RunBench, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_codegenie_eval.evidence import verdicts
    from pytest_codegenie_eval.output.html import data
    from pytest_codegenie_eval.pytest_plugin import preflight
    from pytest_codegenie_eval.store import audit

    (pytester.path / "docs").mkdir()
    (pytester.path / "docs" / "trust-tiers.yaml").write_text(TIERS)
    calls: list[str] = []
    real = audit.verify

    def counting(*args: Any, **kwargs: Any) -> audit.VerifyResult:
        calls.append("verify")
        return real(*args, **kwargs)

    for module in (audit, verdicts, data, preflight):
        monkeypatch.setattr(module, "verify", counting)
    result = run_bench_once("--codegenie-verdict=bronze", "--codegenie-html=site")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*evidence SUFFICIENT*", "*results page: *site*"])
    # one before any case starts (preflight), one at session end for the verdict and the page
    assert len(calls) == 2


def test_the_page_at_session_end_judges_with_the_task_class_the_session_loaded(
    run_bench_once: RunBench, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_codegenie_eval.pytest_plugin import session
    from pytest_codegenie_eval.taskclass import loader

    (pytester.path / "docs").mkdir()
    (pytester.path / "docs" / "trust-tiers.yaml").write_text(TIERS)
    loads: list[str] = []
    real_load, real_registration = loader.load_task_class, loader.load_registration

    def counting_load(*args: Any, **kwargs: Any) -> Any:
        loads.append("task class")
        return real_load(*args, **kwargs)

    def counting_registration(*args: Any, **kwargs: Any) -> Any:
        loads.append("registration")
        return real_registration(*args, **kwargs)

    monkeypatch.setattr(session, "load_task_class", counting_load)
    monkeypatch.setattr(loader, "load_task_class", counting_load)
    monkeypatch.setattr(loader, "load_registration", counting_registration)
    run_bench_once("--codegenie-verdict=bronze").assert_outcomes(passed=3)
    without_page = list(loads)
    loads.clear()
    result = run_bench_once("--codegenie-verdict=bronze", "--codegenie-html=site")
    result.assert_outcomes(passed=3)
    assert "bronze" in (pytester.path / "site" / "index.html").read_text()
    # the page judges with the task class the session loaded: it reads nothing more
    assert loads == without_page
    assert loads.count("task class") == 1


def test_a_second_run_of_the_same_agent_is_pooled_with_the_first(
    run_bench_once: RunBench, pytester: pytest.Pytester
) -> None:
    (pytester.path / "docs").mkdir()
    (pytester.path / "docs" / "trust-tiers.yaml").write_text(TIERS)
    first = run_bench_once("--codegenie-verdict=bronze", "--codegenie-no-cache")
    first.assert_outcomes(passed=3)
    assert "pooled 2 runs" not in first.stdout.str()
    second = run_bench_once("--codegenie-verdict=bronze", "--codegenie-no-cache")
    second.stdout.fnmatch_lines(["*pooled 2 runs of this agent on this bench*"])
    # both runs may judge in the same second: read the file the second run names
    (line,) = [x for x in second.outlines if x.strip().startswith("recommendation: ")]
    verdict = json.loads(Path(line.split(": ", 1)[1]).read_text())["verdict"]
    assert verdict["pooled_runs"] == 2
    assert len(verdict["run_ids"]) == 2


def test_a_progress_line_says_how_far_the_run_is(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    # issue 26: a long run of a slow agent printed nothing but dots
    args = ("-p", "no:cacheprovider", "--codegenie-bench=stub", "--codegenie-no-cache")
    every = pytester.runpytest_inprocess(*args, "--codegenie-progress=0", "-q")
    every.stdout.fnmatch_lines(
        [
            "codegenie progress: 1/3 case attempt(s) done, 0 failed, * elapsed, 0.0000 USD "
            "spent, about * left",
            "codegenie progress: 3/3 case attempt(s) done, 0 failed, * elapsed, 0.0000 USD spent",
        ]
    )
    assert every.stdout.str().count("codegenie progress:") == 3
    quiet = pytester.runpytest_inprocess(*args, "--codegenie-progress=off")
    assert "codegenie progress:" not in quiet.stdout.str()
    bad = pytester.runpytest_inprocess(*args, "--codegenie-progress=soon")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR


def test_a_label_names_the_agent_in_the_report_not_in_the_run_id(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    # issue 26: the page's trend needs one series per agent, named by the user
    args = ("-p", "no:cacheprovider", "--codegenie-bench=stub", "--codegenie-no-cache")
    plain = pytester.runpytest_inprocess(*args)
    plain_report = newest_report(pytester.path)
    labelled = pytester.runpytest_inprocess(
        *args, "--codegenie-label=gpt-agent v2", "--codegenie-jsonl=out.jsonl"
    )
    labelled.stdout.fnmatch_lines(["*sut: baseline:baseline_sut.py  label: gpt-agent v2  run id:*"])
    report = newest_report(pytester.path)
    assert report["label"] == "gpt-agent v2"
    assert plain_report["label"] == ""
    assert report["run_id"] == plain_report["run_id"]  # the same measurement, named
    aggregate = [
        line for line in read_jsonl(pytester.path / "out.jsonl") if line["type"] == "aggregate"
    ]
    assert aggregate[0]["label"] == "gpt-agent v2"
    bad = pytester.runpytest_inprocess(*args, "--codegenie-label=a\x1b[31mred")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert plain.ret == pytest.ExitCode.OK
