"""Task class registration: ``@register_task_class`` and the registries it writes to."""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from pytest_codegenie_eval.errors import TaskClassAlreadyRegistered

T = TypeVar("T")

KNOWN_TIERS: tuple[str, ...] = ("bronze", "silver", "gold", "platinum")


SCORE_KINDS: tuple[str, ...] = ("graded", "pass_fail")


def floor_problems(floors: Mapping[Any, Any]) -> list[str]:
    """What is wrong with a ``min_cases_for_promotion`` mapping (tier name -> case count):
    the one rule the decorator, the loader and the fence apply."""
    problems = []
    for tier, count in floors.items():
        if not isinstance(tier, str) or tier not in KNOWN_TIERS:
            problems.append(f"unknown tier {tier!r} (known: {', '.join(KNOWN_TIERS)})")
        elif isinstance(count, bool) or not isinstance(count, int) or count < 0:
            problems.append(f"{tier!r}: {count!r} is not a non-negative int")
    return problems


__all__ = [
    "KNOWN_TIERS",
    "TaskClass",
    "TaskClassRegistry",
    "capture_registrations",
    "default_registry",
    "floor_problems",
    "register_task_class",
]


BENCH_MODULE_PREFIX = "_codegenie_bench_"
"""How the names of a task class's modules start when the harness imports them: the prefix,
the folder's name made safe, a 12-digit tag of its path, then the file's stem."""
_BENCH_MODULE = re.compile(re.escape(BENCH_MODULE_PREFIX) + r".*_[0-9a-f]{12}_(\w+)")


@dataclass(frozen=True, slots=True)
class TaskClass:
    """A registered task class: its name, promotion floors and where it lives on disk."""

    name: str
    qualname: str
    min_cases_for_promotion: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    baseline_sut: str | None = None
    directory: Path | None = None
    description: str = ""
    # what the rubric's scores are: "pass_fail" (every score 0 or 1; the gate's bound is
    # exact Clopper-Pearson) or "graded" (any score in [0, 1]; the betting bound)
    scores: str = "graded"

    @property
    def where(self) -> str:
        """Where the class is, for a message: ``<dir>/registration.py::Class`` for one loaded
        from a task class directory (whose module has a name private to the harness), else
        its qualified name."""
        module, _, rest = self.qualname.partition(".")
        found = _BENCH_MODULE.fullmatch(module)
        if self.directory is None or found is None or not rest:
            return self.qualname
        return f"{self.directory / (found.group(1) + '.py')}::{rest}"

    @property
    def baseline_sut_path(self) -> Path | None:
        if self.baseline_sut is None or self.directory is None:
            return None
        return self.directory / self.baseline_sut


class TaskClassRegistry:
    """Name → TaskClass. Registering a name twice from different classes is an error."""

    def __init__(self) -> None:
        self._by_name: dict[str, TaskClass] = {}

    def add(self, task_class: TaskClass) -> TaskClass:
        existing = self._by_name.get(task_class.name)
        if existing is not None:
            if existing == task_class:
                return existing
            raise TaskClassAlreadyRegistered(task_class.name, existing.where, task_class.where)
        self._by_name[task_class.name] = task_class
        return task_class

    def get(self, name: str) -> TaskClass | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self._by_name)


default_registry = TaskClassRegistry()

# While a bench's registration.py is imported by the loader, decorations are captured here
# instead of going to the process-wide default registry, so each pytest session (and each
# in-process pytester run) gets its own view of the benches it loaded.
_capture: list[list[TaskClass]] = []


@contextlib.contextmanager
def capture_registrations() -> Iterator[list[TaskClass]]:
    """Collect the task classes registered while the block runs (used by the loader)."""
    captured: list[TaskClass] = []
    _capture.append(captured)
    try:
        yield captured
    finally:
        _capture.pop()


def register_task_class(
    name: str,
    *,
    min_cases_for_promotion: Mapping[str, int] | None = None,
    baseline_sut: str | None = None,
    description: str = "",
    scores: str = "graded",
) -> Callable[[type[T]], type[T]]:
    """Class decorator declaring a task class; returns the class unchanged.

    ``baseline_sut`` (or a ``baseline_sut`` class attribute) names a script in the task
    class directory, run as ``python -I SCRIPT WORKSPACE`` when no other SUT is chosen.
    ``scores`` says what the rubric emits: ``"pass_fail"`` (0 or 1 only; any other score
    is ``rubric.malformed_output``) or ``"graded"`` (any score in [0, 1], the default). The
    gate's bound follows it, never the scores a run happened to produce.
    """
    if not isinstance(name, str) or not name:
        raise TypeError("register_task_class needs a non-empty string name")
    if scores not in SCORE_KINDS:
        raise TypeError(
            f"scores of {name!r} must be one of {', '.join(SCORE_KINDS)}, got {scores!r}"
        )
    floors = dict(min_cases_for_promotion or {})
    problems = floor_problems(floors)
    if problems:
        raise TypeError(f"min_cases_for_promotion of {name!r}: {'; '.join(problems)}")

    def decorate(cls: type[T]) -> type[T]:
        attr: Any = getattr(cls, "baseline_sut", None)
        script = baseline_sut if baseline_sut is not None else attr
        try:
            source = inspect.getsourcefile(cls)
        except TypeError:
            source = None
        task_class = TaskClass(
            name=name,
            qualname=f"{cls.__module__}.{cls.__qualname__}",
            min_cases_for_promotion=MappingProxyType(floors),
            baseline_sut=script if isinstance(script, str) else None,
            directory=Path(source).resolve().parent if source else None,
            description=description or (inspect.getdoc(cls) or ""),
            scores=scores,
        )
        if _capture:
            _capture[-1].append(task_class)
        else:
            default_registry.add(task_class)
        return cls

    return decorate
