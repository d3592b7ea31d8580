"""The on-disk layout of a task class: its file names, and the one parser of case paths.

::

    <bench root>/<task class>/registration.py, breakdown_keys.py, failure_modes.yaml,
                              rubric.py, task.md, baseline_sut.py, tests/
                              cases/digests.yaml
                              cases/<case dir>/case.toml, input/, expected/

Every module of the harness that names these files takes the names from here, except
``rubric.py``, which rubrics import inside their jail and which stays below every layer (it
spells out ``expected/`` itself). Standard library only, so the plugin can use it before
deciding whether a run uses a bench at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

REGISTRATION = "registration.py"
BREAKDOWN_KEYS = "breakdown_keys.py"
FAILURE_MODES = "failure_modes.yaml"
RUBRIC = "rubric.py"
TASK_MD = "task.md"
CASES = "cases"
CASE_TOML = "case.toml"
DIGESTS_FILE = "digests.yaml"
NOT_CASE_DIRS = frozenset({"__pycache__", DIGESTS_FILE})
"""Directories under ``cases/`` that are never cases (``digests.yaml/`` is a broken pin
file, reported as such, not a case)."""


def is_task_class_dir(directory: Path) -> bool:
    """A task class directory is one that holds a ``registration.py``."""
    return (directory / REGISTRATION).is_file()


def is_bench_root(directory: Path) -> bool:
    """A bench root is a directory holding at least one task class directory."""
    try:
        return directory.is_dir() and any(
            is_task_class_dir(child) for child in directory.iterdir() if child.is_dir()
        )
    except OSError:
        return False


def task_class_dir_above(path: Path) -> Path | None:
    """The task class directory ``path`` is in (or is), if any."""
    for candidate in (path, *path.parents):
        if is_task_class_dir(candidate):
            return candidate
    return None


@dataclass(frozen=True)
class CasePath:
    """Where a path sits under a task class's ``cases/`` directory."""

    task_class_dir: Path
    depth: int  # 0: cases/ itself, 1: cases/<case dir>, 2: an entry of a case dir, ...

    @property
    def is_case_toml_slot(self) -> bool:
        """Whether the path is where a case's ``case.toml`` would be (depth 2)."""
        return self.depth == 2


def locate(path: Path) -> CasePath | None:
    """The task class and depth of ``path`` under the first ``cases/`` that belongs to a
    task class (a ``cases`` folder inside a case's ``input/`` is data, not another one)."""
    parts = path.parts
    for index, part in enumerate(parts):
        if part == CASES and is_task_class_dir(Path(*parts[:index])):
            return CasePath(Path(*parts[:index]), len(parts) - index - 1)
    return None


def task_class_dir_of_case(case_toml: Path) -> Path | None:
    """``<tc>/cases/<dir>/case.toml`` -> ``<tc>`` when that directory is a task class."""
    if case_toml.name != CASE_TOML or case_toml.parent.parent.name != CASES:
        return None
    tc_dir = case_toml.parent.parent.parent
    return tc_dir if is_task_class_dir(tc_dir) else None


_REPEAT = re.compile(r"^(?P<case>.+)\[r(?P<repeat>[1-9][0-9]*)\]$")


def item_name(case_id: str, repeat: int, repeats: int) -> str:
    """The pytest item name of one attempt: ``<case_id>``, or ``<case_id>[r<i>]`` when the
    session repeats each case (``--codegenie-repeat``), so ``-k``, ``--lf`` and node ids
    address single attempts."""
    return case_id if repeats == 1 else f"{case_id}[r{repeat}]"


def split_item_name(name: str) -> tuple[str, int]:
    """``<case_id>[r<i>]`` -> ``(case_id, i)``; a plain name is attempt 1."""
    match = _REPEAT.match(name)
    return (match["case"], int(match["repeat"])) if match else (name, 1)


def attempt_from_nodeid(nodeid: str) -> tuple[str, str, int] | None:
    """``…/<tc>/cases/<dir>/case.toml::<case_id>[r<i>]`` -> ``(tc, case_id, i)``."""
    path, sep, name = nodeid.partition("::")
    parts = PurePosixPath(path).parts
    if not sep or len(parts) < 4 or parts[-3] != CASES or parts[-1] != CASE_TOML:
        return None
    case_id, repeat = split_item_name(name)
    return parts[-4], case_id, repeat


def case_from_nodeid(nodeid: str) -> tuple[str, str] | None:
    """``…/<tc>/cases/<dir>/case.toml::<case_id>`` -> ``(tc, case_id)`` (any attempt)."""
    attempt = attempt_from_nodeid(nodeid)
    return None if attempt is None else attempt[:2]
