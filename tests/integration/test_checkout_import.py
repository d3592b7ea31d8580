"""The rubric child and the task-class import child import the very package the pytest
controller imported: a checkout run by pytest, not whatever copy is installed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import pytest_codegenie_eval
from tests.conftest import copy_stub, newest_report

PACKAGE = Path(pytest_codegenie_eval.__file__).parent

_RUBRIC = """\
import pytest_codegenie_eval
from pytest_codegenie_eval.rubric import serve

def score(case, out):
    return {"score": 1.0, "breakdown": {},
            "failure_modes": [{"code": "answer.extra_files",
                               "detail": pytest_codegenie_eval.__file__}]}

if __name__ == "__main__":
    serve(score)
"""

_REGISTRATION_PROBE = """
import pytest_codegenie_eval, pathlib
pathlib.Path({out!r}).write_text(pytest_codegenie_eval.__file__)
"""


@pytest.mark.parametrize("rubric_sandbox", ["bwrap", "none"])
def test_a_checkout_on_the_path_is_the_package_every_child_imports(
    pytester: pytest.Pytester,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    rubric_sandbox: str,
) -> None:
    checkout = tmp_path_factory.mktemp("checkout")
    checkout.chmod(0o755)
    copy = checkout / "pytest_codegenie_eval"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    bench = copy_stub(pytester.path)
    (bench / "rubric.py").write_text(_RUBRIC)
    seen_by_import_child = pytester.path / "import-child.txt"
    registration = bench / "registration.py"
    registration.write_text(
        registration.read_text() + _REGISTRATION_PROBE.format(out=str(seen_by_import_child))
    )
    monkeypatch.setenv("PYTHONPATH", str(checkout))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--codegenie-bench=stub", "-k", "alpha",
        f"--codegenie-rubric-sandbox={rubric_sandbox}",
    )  # fmt: skip
    (case,) = newest_report(pytester.path)["cases"]
    details = [fm["detail"] for fm in case["failure_modes"] if fm["code"] == "answer.extra_files"]
    assert details == [str(copy / "__init__.py")], result.stdout.str()[-3000:]
    assert seen_by_import_child.read_text() == str(copy / "__init__.py")
    assert json.dumps(str(PACKAGE)) not in json.dumps(case)
