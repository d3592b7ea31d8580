"""Issue 13: malformed input from a bench author or a hostile rubric is a typed error naming
what is wrong, bounded in time and memory, and it never takes the session down."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_codegenie_eval.errors import DigestsFileInvalid, TaskClassInvalid, TierConfigInvalid
from pytest_codegenie_eval.evidence.tiers import load_tier_config
from pytest_codegenie_eval.execution.rubric_runner import validate_rubric_output
from pytest_codegenie_eval.taskclass.contract import MAX_YAML_DEPTH, strict_yaml
from pytest_codegenie_eval.taskclass.digests import read_digests
from pytest_codegenie_eval.taskclass.loader import (
    LoadedTaskClass,
    load_failure_modes,
    load_task_class,
)
from tests.conftest import copy_stub

Runner = Callable[..., tuple[pytest.RunResult, dict[str, dict[str, Any]]]]

# --------------------------------------------------------------------------------------------
# rubric output: one strict JSON object, one rule for numbers


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> LoadedTaskClass:
    return load_task_class(copy_stub(tmp_path_factory.mktemp("stub")))


HIDDEN_BLOCK = (
    '{"score": 1.0, "failure_modes": [{"code": "answer.wrong", "detail": "wrong"}],'
    ' "failure_modes": []}'
)


@pytest.mark.parametrize(
    "text",
    [
        '{"score": 0, "score": 1}',
        HIDDEN_BLOCK,
        '{"score": 1, "breakdown": {"ANSWER_CORRECT": 0, "ANSWER_CORRECT": 1}}',
    ],
    ids=["score-twice", "failure-modes-twice", "breakdown-key-twice"],
)
def test_a_rubric_repeating_a_key_is_malformed(stub: LoadedTaskClass, text: str) -> None:
    # live: plain JSON keeps the last value, which passes the case
    naive = json.loads(text)
    assert naive["score"] == 1
    assert not naive.get("failure_modes")
    verdict = validate_rubric_output(text.encode(), case_id="alpha", task_class=stub)
    assert [fm.code for fm in verdict.failure_modes] == ["rubric.malformed_output"]
    assert "duplicate key" in verdict.failure_modes[0].detail
    assert verdict.score == 0.0


def test_a_stray_line_from_the_rubric_is_shown(stub: LoadedTaskClass) -> None:
    # issue 26: the error quoted the tail of stdout (the JSON), never the stray line
    text = 'checking alpha...\n{"score": 1.0}\n'
    verdict = validate_rubric_output(text.encode(), case_id="alpha", task_class=stub)
    (mode,) = verdict.failure_modes
    assert mode.code == "rubric.malformed_output"
    assert "1 line(s) besides the JSON object, first 'checking alpha...'" in mode.detail
    assert "diagnostics go to stderr" in mode.detail


@pytest.mark.parametrize(
    "text",
    [
        '{"score": NaN}',
        '{"score": Infinity}',
        '{"score": 1e309}',
        '{"score": -1e-320}',
        '{"score": true}',
        '{"score": "1"}',
        '{"score": 1, "breakdown": {"ANSWER_CORRECT": NaN}}',
    ],
)
def test_a_score_is_a_finite_json_number_in_the_unit_interval(
    stub: LoadedTaskClass, text: str
) -> None:
    verdict = validate_rubric_output(text.encode(), case_id="alpha", task_class=stub)
    assert "rubric.malformed_output" in [fm.code for fm in verdict.failure_modes], text
    assert verdict.score == 0.0


def test_negative_zero_is_normalised_to_zero(stub: LoadedTaskClass) -> None:
    text = b'{"score": -0.0, "breakdown": {"ANSWER_CORRECT": -0.0}}'
    verdict = validate_rubric_output(text, case_id="alpha", task_class=stub)
    assert verdict.failure_modes == ()
    # equal scores must give equal run ids, which hash score.hex()
    assert math.copysign(1.0, verdict.score) == 1.0
    assert verdict.score.hex() == (0.0).hex()
    assert math.copysign(1.0, verdict.breakdown["ANSWER_CORRECT"]) == 1.0


# --------------------------------------------------------------------------------------------
# YAML: deep nesting and aliases are refused, quickly


DEEP = "version: 1\nfailure_modes: " + "[" * 5000 + "]" * 5000 + "\n"
LAUGHS = (
    "version: 1\n"
    + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" if i else "l0: &l0 [lol]\n"
        for i in range(10)
    )
    + "failure_modes: {}\n"
)


def test_the_attacks_are_live_without_the_bound() -> None:
    with pytest.raises(RecursionError):
        yaml.compose(DEEP, Loader=yaml.SafeLoader)
    # the aliases share nodes: ten short lines hold 9**9 leaves for any walk over them
    data = yaml.safe_load(LAUGHS)
    assert data["l9"][8][8][8][8][8][8][8][8][8][0] == "lol"
    assert data["l9"][0] is data["l9"][1]


@pytest.mark.parametrize(
    ("text", "needle"),
    [(DEEP, f"nested deeper than {MAX_YAML_DEPTH} levels"), (LAUGHS, "alias *l0")],
    ids=["deep", "billion-laughs"],
)
def test_contract_yaml_refuses_deep_nesting_and_aliases(
    tmp_path: Path, text: str, needle: str
) -> None:
    started = time.monotonic()
    with pytest.raises(yaml.YAMLError, match=needle.replace("*", r"\*")):
        strict_yaml(text)
    (tmp_path / "failure_modes.yaml").write_text(text)
    with pytest.raises(TaskClassInvalid, match=r"failure_modes\.yaml") as excinfo:
        load_failure_modes(tmp_path)
    assert needle in str(excinfo.value)
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "digests.yaml").write_text(text.replace("version: 1\n", ""))
    with pytest.raises(DigestsFileInvalid, match=r"digests\.yaml"):
        read_digests(cases)
    (tmp_path / "tiers.yaml").write_text(text.replace("version: 1", "schema_version: 1"))
    with pytest.raises(TierConfigInvalid, match=r"tiers\.yaml"):
        load_tier_config(tmp_path / "tiers.yaml")
    assert time.monotonic() - started < 5


def test_the_fence_reports_them_as_violations(tmp_path: Path) -> None:
    from pytest_codegenie_eval.taskclass.fence import check_task_class

    tc = copy_stub(tmp_path)
    for text in (DEEP, LAUGHS):
        (tc / "failure_modes.yaml").write_text(text)
        rules = {v.rule for v in check_task_class(tc)}
        assert "failure-modes" in rules


# --------------------------------------------------------------------------------------------
# registration.py is bench-author code: imported in a child, it cannot end the session

HEADER = "from pytest_codegenie_eval import register_task_class\n"
CLASS = (
    '@register_task_class("stub", min_cases_for_promotion={"bronze": 2})\n'
    "class Stub:\n    baseline_sut = 'baseline_sut.py'\n"
)
HOSTILE_REGISTRATIONS = {
    "system-exit": (HEADER + "raise SystemExit(3)\n" + CLASS, "raised SystemExit(3)"),
    "clears-sys-modules": (
        HEADER + "import sys\n" + CLASS + "sys.modules.clear()\n",
        None,  # harmless in a child: the task class loads and runs
    ),
    "os-exit-0": (HEADER + "import os\nos._exit(0)\n" + CLASS, "ended the process (exit code 0)"),
    "sleeps": (HEADER + "import time\ntime.sleep(600)\n" + CLASS, "did not finish within 3 s"),
    "prints-too-much": (
        HEADER + "import sys\nsys.stdout.write('x' * (4 * 1024 * 1024))\n" + CLASS,
        "printed more than 1 MiB to standard output and was stopped",
    ),
    "kills-itself": (
        HEADER + "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n" + CLASS,
        "killed its interpreter (SIGKILL)",
    ),
    "raises": (HEADER + CLASS + "raise RuntimeError('half-written')\n", "RuntimeError"),
}


def _naive_import(path: Path) -> subprocess.CompletedProcess[str] | None:
    """What importing the module in the harness's own interpreter would do (None: hangs)."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('r', {str(path)!r})\n"
        "importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print('harness still running')\n"
    )
    try:
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=5, check=False
        )
    except subprocess.TimeoutExpired:
        return None


@pytest.mark.parametrize("name", sorted(HOSTILE_REGISTRATIONS))
def test_a_hostile_registration_fails_its_task_class_and_the_session_reports_it(
    run_fixture_bench: Runner, copy_task_class: Callable[[str], Path], name: str
) -> None:
    source, message = HOSTILE_REGISTRATIONS[name]
    stub = copy_task_class("stub")
    registration = stub / "registration.py"
    registration.write_text(source)
    naive = _naive_import(registration)
    if name not in ("clears-sys-modules", "prints-too-much"):
        # live: in the harness's interpreter the module ends or hangs the session
        assert naive is None or "harness still running" not in naive.stdout, naive
    result, cases = run_fixture_bench(
        "stub", "--codegenie-import-timeout=3", root=stub.parent, subprocess=True, timeout=60
    )
    if message is None:
        result.assert_outcomes(passed=3)
        return
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.assert_outcomes(failed=3)
    assert sorted(cases) == ["alpha", "beta", "gamma"]
    for case in cases.values():
        (mode,) = case["failure_modes"]
        assert mode["code"] == "harness.case_invalid"
        assert mode["detail"].startswith(f"{registration}: ")
        assert message in mode["detail"]
    result.stdout.fnmatch_lines(["*chain head:*"])  # the report and the record were written


def test_a_hanging_breakdown_keys_module_is_named(
    run_fixture_bench: Runner, copy_task_class: Callable[[str], Path]
) -> None:
    stub = copy_task_class("stub")
    keys = stub / "breakdown_keys.py"
    keys.write_text("import time\ntime.sleep(600)\n" + keys.read_text())
    result, cases = run_fixture_bench(
        "stub", "--codegenie-import-timeout=2", root=stub.parent, subprocess=True, timeout=60
    )
    result.assert_outcomes(failed=3)
    for case in cases.values():
        assert case["failure_modes"][0]["detail"].startswith(f"{keys}: importing it did not")


def test_the_import_timeout_must_be_positive(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--codegenie-bench=stub", "--codegenie-import-timeout=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--codegenie-import-timeout must be a positive number*"])


# --------------------------------------------------------------------------------------------
# a run that could not write its report or its JSONL never exits 0


def test_a_state_directory_that_cannot_be_written_stops_the_run_before_any_case(
    pytester: pytest.Pytester, copy_task_class: Callable[[str], Path]
) -> None:
    stub = copy_task_class("stub")
    blocked = pytester.path / "state-is-a-file"
    blocked.write_text("not a directory\n")
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--codegenie-bench=stub",
        f"--codegenie-bench-root={stub.parent}",
        f"--codegenie-state-dir={blocked}",
        "--codegenie-no-cache",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*state directory*cannot be written*no case was started*"])


def test_a_report_that_cannot_be_written_at_session_end_fails_a_passing_run(
    pytester: pytest.Pytester,
    copy_task_class: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import errno

    from pytest_codegenie_eval.pytest_plugin import session_end

    def disk_full(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(session_end, "write_run_record", disk_full)
    stub = copy_task_class("stub")
    result = pytester.runpytest_inprocess(
        "-p",
        "no:cacheprovider",
        "--codegenie-bench=stub",
        f"--codegenie-bench-root={stub.parent}",
        f"--codegenie-state-dir={pytester.path / 'state'}",
        "--codegenie-no-cache",
    )
    result.assert_outcomes(passed=3)  # live: every case passed
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*REPORT NOT RECORDED: could not write the run report*space*"])


def test_an_unwritable_jsonl_target_fails_a_passing_run(
    pytester: pytest.Pytester, copy_task_class: Callable[[str], Path]
) -> None:
    stub = copy_task_class("stub")
    (pytester.path / "a-file").write_text("x\n")
    target = pytester.path / "a-file" / "out.jsonl"
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--codegenie-bench=stub",
        f"--codegenie-bench-root={stub.parent}",
        f"--codegenie-state-dir={pytester.path / 'state'}",
        f"--codegenie-jsonl={target}",
    )
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*WRITE ERROR: could not write --codegenie-jsonl*"])


def test_a_pass_fail_rubric_that_scores_in_between_is_malformed(stub: LoadedTaskClass) -> None:
    # a pass/fail task class's bound is exact Clopper-Pearson on 0/1 scores: a rubric that
    # emits 0.99 would otherwise move the run onto another method
    from dataclasses import replace

    pass_fail = replace(stub, task_class=replace(stub.task_class, scores="pass_fail"))
    graded_stub = replace(stub, task_class=replace(stub.task_class, scores="graded"))
    half = validate_rubric_output(b'{"score": 0.99}', case_id="alpha", task_class=pass_fail)
    assert [fm.code for fm in half.failure_modes] == ["rubric.malformed_output"]
    assert "declares pass/fail scores" in half.failure_modes[0].detail
    assert half.score == 0.0
    whole = validate_rubric_output(b'{"score": 1}', case_id="alpha", task_class=pass_fail)
    assert whole.failure_modes == ()
    # the graded task class takes the same score as it is
    graded = validate_rubric_output(b'{"score": 0.99}', case_id="alpha", task_class=graded_stub)
    assert graded.failure_modes == ()
    assert graded.score == 0.99
