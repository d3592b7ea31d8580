"""Hooks that conftest.py files and plugins may implement (added in ``pytest_addhooks``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # pydantic is not loaded for a run that selects no bench
    from pytest_codegenie_eval.models import BenchCase


@pytest.hookspec(firstresult=True)
def pytest_codegenie_eval_run_sut(
    case: BenchCase, workspace: Path, task_class: str, env: Mapping[str, str]
) -> Mapping[str, Any] | None:
    """Run an in-process agent on ``workspace`` (a copy of the case's ``input/``).

    Edit the workspace in place and return a mapping (``{"cost_usd": 0.12}``; optional keys
    ``exit_code``, ``stdout``, ``stderr``) or ``None`` to let the next implementation run;
    when every implementation returns ``None`` the agent is taken to have exited 0 without
    reporting a cost (a ``.codegenie/sut-result.json`` it wrote is still read). ``env``
    holds the canary and the invocation tag, which are also set in ``os.environ`` while the
    hook runs. An exception is recorded as the case's ``sut.exception`` failure mode. The
    hook is used only when no ``--codegenie-sut`` option or ``codegenie_sut`` ini value is
    given.
    """
    raise NotImplementedError  # pragma: no cover - specification only


@pytest.hookspec(firstresult=True)
def pytest_codegenie_eval_sut_digest(task_class: str) -> str | None:
    """Return a string identifying the version of your in-process agent.

    It goes into the SUT digest (and so the cache key), next to the digest of the source
    files that implement ``pytest_codegenie_eval_run_sut``. Return e.g. a model name and a
    prompt version so that changing them invalidates cached scores.
    """
    raise NotImplementedError  # pragma: no cover - specification only
