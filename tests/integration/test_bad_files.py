"""One bad bench file fails its case or its task class with a typed error naming the file;
the session goes on, records every other task class, and exits non-zero (issue 25, item 1).
The fence reports the same file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import copy_stub

Breaker = Callable[[Path], Path]


def _deep_case_toml(stub: Path) -> Path:
    path = stub / "cases" / "alpha" / "case.toml"
    path.write_text(path.read_text() + "deep = " + "[" * 600 + "]" * 600 + "\n")
    return path


def _bom_case_toml(stub: Path) -> Path:
    path = stub / "cases" / "alpha" / "case.toml"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    return path


def _case_toml_directory(stub: Path) -> Path:
    path = stub / "cases" / "beta" / "case.toml"
    path.unlink()
    path.mkdir()
    return path


def _task_md_not_utf8(stub: Path) -> Path:
    path = stub / "task.md"
    path.write_bytes(b"\xff\xfe not UTF-8\n")
    return path


def _digests_directory(stub: Path) -> Path:
    path = stub / "cases" / "digests.yaml"
    path.unlink()
    path.mkdir()
    return path


BREAKERS: dict[str, tuple[Breaker, str]] = {
    "deep case.toml": (_deep_case_toml, "nests arrays or tables too deeply"),
    "case.toml with a byte-order mark": (_bom_case_toml, "byte-order mark"),
    "case.toml is a directory": (_case_toml_directory, "is a directory, not a file"),
    "task.md not UTF-8": (_task_md_not_utf8, "not UTF-8"),
    "digests.yaml is a directory": (_digests_directory, "is a directory, not a file"),
}


@pytest.fixture
def two_task_classes(pytester: pytest.Pytester) -> Path:
    """``stub`` (to be broken) and ``other`` (healthy) under ``bench/``."""
    stub = copy_stub(pytester.path)
    other = copy_stub(pytester.path, "other")
    registration = other / "registration.py"
    registration.write_text(registration.read_text().replace('"stub"', '"other"'))
    return stub


@pytest.mark.parametrize("breakage", list(BREAKERS))
def test_a_bad_file_fails_its_cases_and_the_session_records_the_rest(
    pytester: pytest.Pytester, two_task_classes: Path, breakage: str
) -> None:
    breaker, message = BREAKERS[breakage]
    broken = breaker(two_task_classes)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--codegenie-bench=stub,other")
    out = result.stdout.str()
    assert "INTERNALERROR" not in out
    assert "errors during collection" not in out
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    # the broken file is named with what is wrong with it, in a failing item
    assert f"{broken}: {message}" in out or (str(broken) in out and message in out)
    # the healthy task class ran and was recorded
    result.stdout.fnmatch_lines(["other: 3 cases, 3 passed*"])
    runs = sorted(p.name for p in (pytester.path / ".codegenie" / "eval" / "runs").iterdir())
    assert any(name.endswith("-other.json") for name in runs)
    assert any(name.endswith("-stub.json") for name in runs)


@pytest.mark.parametrize(
    "breakage",
    ["deep case.toml", "case.toml with a byte-order mark", "task.md not UTF-8"],
)
def test_the_fence_reports_the_same_file(
    pytester: pytest.Pytester, two_task_classes: Path, breakage: str
) -> None:
    breaker, message = BREAKERS[breakage]
    broken = breaker(two_task_classes)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--codegenie-fence")
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out
    assert result.ret != pytest.ExitCode.OK
    relative = broken.relative_to(pytester.path / "bench").as_posix()
    assert any(relative in line and message in line for line in out.splitlines()), out


def test_the_fence_says_a_digests_directory_is_not_a_file(
    pytester: pytest.Pytester, two_task_classes: Path
) -> None:
    _digests_directory(two_task_classes)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--codegenie-fence")
    result.stdout.fnmatch_lines(
        ["*stub/cases/digests.yaml: [[]directory-contract[]] is not a file*"]
    )
