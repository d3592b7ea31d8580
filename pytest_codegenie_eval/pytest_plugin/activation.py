"""Whether a pytest run uses the plugin at all, decided without importing anything heavy.

The plugin is installed in environments where most pytest runs (an IDE re-running one unit
test, a project's own suite) select no bench. Those runs must not pay for pydantic, numpy,
scipy or the run machinery: :func:`is_active` answers from the options and the paths on
the command line alone, and only an active run builds a :class:`~.session.BenchSession`.
This module imports the standard library and pytest only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_codegenie_eval.taskclass.layout import is_bench_root, task_class_dir_above

if TYPE_CHECKING:
    from pytest_codegenie_eval.pytest_plugin.session import BenchSession  # noqa: F401 (the key's type)

SESSION_KEY = pytest.StashKey["BenchSession"]()
RUN_SCOPE_INPUT = "codegenie_run_scope"


def names_test_paths(config: pytest.Config) -> bool:
    """Whether the command line names paths or node ids (an IDE's "run this test")."""
    return config.args_source == pytest.Config.ArgsSource.ARGS


def bench_from_command_line(config: pytest.Config) -> bool:
    return bool(config.getoption("codegenie_bench", None))


def bench_names(config: pytest.Config) -> list[str]:
    """The task class names of ``--codegenie-bench``, in order, or else the ini default
    ``codegenie_bench``, which applies only to a run that names no test paths: a node id on
    the command line runs what it names and only that, as in any pytest suite, so clicking
    "run this test" in an IDE never starts an agent (docs/bench-authoring.md)."""
    raw = config.getoption("codegenie_bench", None) or []
    if not raw and not names_test_paths(config):
        raw = config.getini("codegenie_bench") or []
    names: list[str] = []
    for value in raw:
        for name in str(value).split(","):
            name = name.strip()
            if name and name not in names:
                names.append(name)
    return names


def explicit_targets(config: pytest.Config) -> tuple[Path, ...]:
    """The paths named on the command line (node ids cut at ``::``), resolved."""
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return ()
    found = []
    for arg in config.args:
        path = Path(arg.split("::", 1)[0])
        if not path.is_absolute():
            path = config.invocation_params.dir / path
        found.append(path.resolve())
    return tuple(found)


def is_active(config: pytest.Config) -> bool:
    """A bench is selected, the fence is asked for, or a path on the command line lies in
    a task class (an IDE running one case without ``--codegenie-bench``) or is a bench root
    (``pytest bench`` runs every task class under it)."""
    if bench_names(config) or config.getoption("codegenie_fence", False):
        return True
    return any(
        task_class_dir_above(target) is not None or is_bench_root(target)
        for target in explicit_targets(config)
    )
