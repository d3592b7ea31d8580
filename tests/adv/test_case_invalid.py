"""Broken bench inputs fail their own item with an error naming the file and the field/key;
the healthy cases of the same task class still run (docs/bench-authoring.md,
pytest_plugin/items.py).

Every bench here is built in tmp_path from the stub fixture: broken fixtures are never
committed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_codegenie_eval.taskclass.digests import write_digests

Runner = Callable[..., tuple[pytest.RunResult, dict[str, dict[str, Any]]]]
HEALTHY = ("alpha", "beta", "gamma")
GHOST_PIN = "ab" * 32


def _case_toml(case_id: str, extra: str = "", metadata: str = 'kind = "stub"') -> str:
    return (
        f'case_id = "{case_id}"\n'
        f'title = "adversarial {case_id}"\n'
        'curation_class = "held-out"\n'
        'cassette_canary_pin = "00112233445566ff"\n'
        "sut_timeout_s = 30\n"
        "rubric_timeout_s = 30\n"
        f"{extra}\n"
        f"[metadata]\n{metadata}\n"
    )


def _literal(text: str) -> str:
    """text as an fnmatch pattern matching itself ([ and ] are pattern syntax)."""
    return "".join(f"[{c}]" if c in "[]*?" else c for c in text)


def _add_case(cases: Path, name: str, toml: str | bytes | None) -> Path:
    """A case directory copied from alpha (input/ and expected/) with the given case.toml."""
    target = cases / name
    shutil.copytree(cases / "alpha", target)
    path = target / "case.toml"
    if toml is None:
        path.unlink()
    elif isinstance(toml, bytes):
        path.write_bytes(toml)
    else:
        path.write_text(toml, encoding="utf-8")
    return target


@pytest.fixture
def broken_bench(copy_task_class: Callable[[str], Path], tmp_path: Path) -> Path:
    """The stub task class plus one broken case per way a case can be broken."""
    stub = copy_task_class("stub")
    cases = stub / "cases"
    _add_case(cases, "empty", "")
    _add_case(cases, "whitespace-only", "\n   \n\t\n")
    _add_case(cases, "wrong-types", _case_toml("wrong-types").replace("= 30", '= "fast"', 1))
    _add_case(cases, "unknown-key", _case_toml("unknown-key", extra='colour = "red"'))
    _add_case(cases, "non-string-metadata", _case_toml("non-string-metadata", metadata="n = 1"))
    _add_case(cases, "unsafe-case-id", _case_toml("../../outside"))
    _add_case(cases, "missing-title", _case_toml("missing-title").replace("title = ", "# "))
    _add_case(cases, "bad-toml", _case_toml("bad-toml") + "this is = = not toml\n")
    _add_case(
        cases, "non-utf8", _case_toml("non-utf8").encode().replace(b"adversarial", b"\xff\xfe")
    )
    _add_case(cases, "no-case-toml", None)
    _add_case(cases, "duplicate", _case_toml("beta"))  # "beta" is taken by cases/beta
    _add_case(cases, "symlink-file", _case_toml("symlink-file"))
    _add_case(cases, "symlink-dir", _case_toml("symlink-dir"))
    write_digests(cases)
    # after pinning: a case with no pin, a pin with no case, links that leave their case
    _add_case(cases, "unpinned", _case_toml("unpinned"))
    with (cases / "digests.yaml").open("a", encoding="utf-8") as fh:
        fh.write(f"ghost: {GHOST_PIN}\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("the answer key\n")
    (cases / "symlink-file" / "input" / "peek.txt").symlink_to(outside / "secret.txt")
    (cases / "symlink-dir" / "input" / "peek").symlink_to(outside, target_is_directory=True)
    return stub


def test_each_broken_case_fails_alone_with_file_and_field_named(
    run_fixture_bench: Runner, broken_bench: Path, subtests: pytest.Subtests
) -> None:
    cases_dir = broken_bench / "cases"
    # item name -> (failure code, fragments the detail must contain, in order)
    expected: dict[str, tuple[str, list[str]]] = {
        "empty": ("harness.case_invalid", [f"{cases_dir}/empty/case.toml: is empty"]),
        "whitespace-only": (
            "harness.case_invalid",
            [f"{cases_dir}/whitespace-only/case.toml: is empty"],
        ),
        "wrong-types": (
            "harness.case_invalid",
            [f"{cases_dir}/wrong-types/case.toml [sut_timeout_s]: ", "'fast'"],
        ),
        "unknown-key": (
            "harness.case_invalid",
            [f"{cases_dir}/unknown-key/case.toml [colour]: ", "unknown key 'colour'"],
        ),
        "non-string-metadata": (
            "harness.case_invalid",
            [f"{cases_dir}/non-string-metadata/case.toml [metadata.n]: "],
        ),
        "unsafe-case-id": (
            "harness.case_invalid",
            [f"{cases_dir}/unsafe-case-id/case.toml [case_id]: ", "'../../outside'"],
        ),
        "missing-title": (
            "harness.case_invalid",
            [f"{cases_dir}/missing-title/case.toml [title]: ", "missing required key 'title'"],
        ),
        "bad-toml": (
            "harness.case_invalid",
            [f"{cases_dir}/bad-toml/case.toml: not valid TOML", "line 10"],
        ),
        "non-utf8": (
            "harness.case_invalid",
            [f"{cases_dir}/non-utf8/case.toml: not UTF-8 (byte 30: invalid start byte)"],
        ),
        "no-case-toml": (
            "harness.case_invalid",
            [f"{cases_dir}/no-case-toml/case.toml: missing"],
        ),
        "duplicate": (
            "harness.case_invalid",
            [f"case_id 'beta' of {cases_dir}/duplicate is already used by {cases_dir}/beta"],
        ),
        "symlink-file": (
            "harness.case_invalid",
            [
                f"{cases_dir}/symlink-file/input/peek.txt: symlink leaves the case directory",
                str(broken_bench.parent.parent / "outside" / "secret.txt"),
            ],
        ),
        "symlink-dir": (
            "harness.case_invalid",
            [f"{cases_dir}/symlink-dir/input/peek: symlink leaves the case directory"],
        ),
        "unpinned": (
            "harness.digest_mismatch",
            [f"{cases_dir}/unpinned: content digest ", "does not match digests.yaml (not pinned)"],
        ),
        "ghost": (
            "harness.case_invalid",
            [f"{cases_dir}/digests.yaml: pins case directory 'ghost', which does not exist"],
        ),
    }
    result, cases = run_fixture_bench("stub", "--codegenie-sut=baseline", root=broken_bench.parent)
    result.assert_outcomes(passed=len(HEALTHY), failed=len(expected))
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # failed items, not a crashed session
    for name in HEALTHY:
        with subtests.test(msg="healthy case still runs and passes", case=name):
            assert cases[name]["passed"] is True
            assert cases[name]["status"] == "scored"
    for name, (code, fragments) in expected.items():
        with subtests.test(msg="broken case fails alone, naming file and field", case=name):
            case = cases[name]
            assert case["status"] == "load_error"
            assert case["passed"] is False
            (mode,) = case["failure_modes"]
            assert (mode["code"], mode["severity"]) == (code, "block")
            position = 0
            for fragment in fragments:
                found = mode["detail"].find(fragment, position)
                assert found >= 0, f"{fragment!r} not in {mode['detail']!r}"
                position = found + len(fragment)
            result.stdout.fnmatch_lines([f"*[[]block[]] {code}: *{_literal(fragments[0])}*"])


def test_poisoned_case_is_digest_mismatch_and_never_runs(
    run_fixture_bench: Runner, copy_task_class: Callable[[str], Path]
) -> None:
    stub = copy_task_class("stub")
    # the answer key is edited after pinning (e.g. to make a failing agent pass)
    (stub / "cases" / "beta" / "expected" / "answer.txt").write_text("poisoned\n")
    result, cases = run_fixture_bench("stub", root=stub.parent)
    result.assert_outcomes(passed=2, failed=1)
    beta = cases["beta"]
    assert [fm["code"] for fm in beta["failure_modes"]] == ["harness.digest_mismatch"]
    assert beta["status"] == "load_error"  # neither the SUT nor the rubric ran
    detail = beta["failure_modes"][0]["detail"]
    assert detail.startswith(f"{stub / 'cases' / 'beta'}: content digest ")
    assert "does not match digests.yaml (" in detail
    result.stdout.fnmatch_lines(["*[[]block[]] harness.digest_mismatch: *beta: content digest*"])
    assert cases["alpha"]["passed"] is True
    assert cases["gamma"]["passed"] is True


def test_poisoned_case_under_strict_starts_no_case(
    run_fixture_bench: Runner, copy_task_class: Callable[[str], Path]
) -> None:
    stub = copy_task_class("stub")
    (stub / "cases" / "beta" / "input" / "question.txt").write_text("What is 1 + 1\n")
    result, cases = run_fixture_bench("stub", "--codegenie-strict", root=stub.parent)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert cases == {}
    result.stderr.fnmatch_lines(
        ["*--codegenie-strict: digest pins do not match; no case was started*", "*beta*"]
    )


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        pytest.param(
            'version: 1\nfailure_modes:\n  answer.wrong: {severity: block, description: "x\n',
            "not valid YAML",
            id="unparseable",
        ),
        pytest.param(
            "version: 1\nfailure_modes:\n  answer.wrong: {severity: fatal, description: x}\n",
            "[failure_modes.answer.wrong].severity must be block, warn or info, got 'fatal'",
            id="bad-severity",
        ),
        pytest.param(
            "version: 1\nfailure_modes:\n  sut.timeout: {severity: info, description: x}\n",
            "[failure_modes.sut.timeout] the prefixes",
            id="reserved-code",
        ),
        pytest.param(
            "version: 2\nfailure_modes: {}\n",
            "[version] must be 1, got 2",
            id="bad-version",
        ),
        pytest.param("- just\n- a list\n", "must be a mapping", id="not-a-mapping"),
    ],
)
def test_malformed_failure_modes_yaml_fails_every_case_naming_the_file(
    run_fixture_bench: Runner, copy_task_class: Callable[[str], Path], yaml_text: str, message: str
) -> None:
    stub = copy_task_class("stub")
    taxonomy = stub / "failure_modes.yaml"
    taxonomy.write_text(yaml_text, encoding="utf-8")
    result, cases = run_fixture_bench("stub", root=stub.parent)
    result.assert_outcomes(failed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert sorted(cases) == ["alpha", "beta", "gamma"]
    for case in cases.values():
        (mode,) = case["failure_modes"]
        assert mode["code"] == "harness.case_invalid"
        assert mode["detail"].startswith(f"{taxonomy}: ")
        assert message in mode["detail"]
    pattern = f"*[[]block[]] harness.case_invalid: {taxonomy}: *"
    result.stdout.fnmatch_lines([pattern] * 3)
