"""pytest-codegenie-eval: score coding agents on per-task-class benches inside pytest.

The public API is the nine names of ``__all__``; they are imported lazily so that a rubric
subprocess importing :mod:`pytest_codegenie_eval.rubric` does not pay for pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
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

_WHERE = {
    "BenchCase": "models",
    "BenchRunReport": "models",
    "BenchScore": "models",
    "FailureMode": "models",
    "PromotionVerdict": "models",
    "PromotionGate": "evidence.promotion",
    "Rubric": "rubric",
    "TaskClass": "registry",
    "register_task_class": "registry",
}

if TYPE_CHECKING:
    from pytest_codegenie_eval.evidence.promotion import PromotionGate
    from pytest_codegenie_eval.models import (
        BenchCase,
        BenchRunReport,
        BenchScore,
        FailureMode,
        PromotionVerdict,
    )
    from pytest_codegenie_eval.registry import TaskClass, register_task_class
    from pytest_codegenie_eval.rubric import Rubric


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_codegenie_eval' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pytest_codegenie_eval.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
