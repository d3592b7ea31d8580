"""Static guards: no self-reported fields, no LLM SDK in the harness, light rubric side."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

import pytest_codegenie_eval
from pytest_codegenie_eval import models
from pytest_codegenie_eval.taskclass.loader import load_breakdown_keys

PACKAGE = Path(pytest_codegenie_eval.__file__).parent
REPO = PACKAGE.parent
BANNED_SUBSTRINGS = ("confidence", "llm", "self_reported", "model_says")
LLM_SDKS = ("anthropic", "openai", "langchain", "langgraph", "transformers")


def _model_classes() -> list[type[BaseModel]]:
    return [
        obj
        for obj in vars(models).values()
        if isinstance(obj, type)
        and issubclass(obj, BaseModel)
        and obj.__module__ == models.__name__
    ]


@pytest.mark.parametrize("model", _model_classes(), ids=lambda m: m.__name__)
def test_no_model_field_name_is_self_reported(model: type[BaseModel]) -> None:
    for name in model.model_fields:
        assert not any(bad in name.lower() for bad in BANNED_SUBSTRINGS), (model, name)


def _task_class_dirs() -> list[Path]:
    dirs = sorted(p for p in (REPO / "bench").glob("*") if (p / "breakdown_keys.py").is_file())
    return [*dirs, REPO / "tests" / "fixtures" / "bench" / "stub"]


@pytest.mark.parametrize("directory", _task_class_dirs(), ids=lambda p: p.name)
def test_no_breakdown_key_is_self_reported(directory: Path) -> None:
    keys = load_breakdown_keys(directory)
    assert keys
    for key in keys:
        assert not any(bad in key.lower() for bad in BANNED_SUBSTRINGS), (directory, key)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value.split(".")[0])
    return found


@pytest.mark.parametrize(
    "module", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.relative_to(PACKAGE).as_posix()
)
def test_no_module_imports_an_llm_sdk(module: Path) -> None:
    assert not (_imports(module) & set(LLM_SDKS)), module


def test_the_guard_itself_sees_an_sdk_import(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text("import json\nfrom openai import OpenAI\nimport importlib\n"
                      "importlib.import_module('anthropic.types')\n")  # fmt: skip
    assert _imports(sample) & set(LLM_SDKS) == {"openai", "anthropic"}


def test_rubric_helper_does_not_import_pydantic() -> None:
    code = (
        "import sys\n"
        "import pytest_codegenie_eval.rubric\n"
        "heavy = sorted(m for m in ('pydantic', 'numpy', 'scipy', 'pytest', 'yaml', 'blake3') "
        "if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


def test_public_api_is_nine_names() -> None:
    assert sorted(pytest_codegenie_eval.__all__) == [
        "BenchCase",
        "BenchRunReport",
        "BenchScore",
        "FailureMode",
        "PromotionGate",
        "PromotionVerdict",
        "Rubric",
        "TaskClass",
        "register_task_class",
    ]
    for name in pytest_codegenie_eval.__all__:
        assert getattr(pytest_codegenie_eval, name) is not None


def test_runner_never_imports_a_rubric_module(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import copy_stub

    bench = copy_stub(pytester.path)
    rubric = (bench / "rubric.py").resolve()
    result = pytester.runpytest_inprocess("--codegenie-bench=stub", "-q")
    result.assert_outcomes(passed=3)
    loaded = {
        Path(file).resolve()
        for m in list(sys.modules.values())
        if (file := getattr(m, "__file__", None))
    }
    assert rubric not in loaded
