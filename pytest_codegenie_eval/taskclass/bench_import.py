"""Importing a task class's own Python (``registration.py``, ``breakdown_keys.py``) in a
child process, so that bench-author code can never take the session down.

A module that raises ``SystemExit``, clears ``sys.modules``, calls ``os._exit(0)`` or sleeps
forever would, imported in the harness, end or hang the pytest session without a report or
an audit record. Here it ends or hangs only the child: the import has a time limit, the child
writes what it found to a file after each module, and anything short of a complete file is a
:class:`~pytest_codegenie_eval.errors.TaskClassLoadError` naming the module at fault. The
harness only ever sees data (names, floors, key values), never a live bench object.
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pytest_codegenie_eval import defaults
from pytest_codegenie_eval.errors import TaskClassLoadError
from pytest_codegenie_eval.hashing import blake3_hex
from pytest_codegenie_eval.process import (
    ResourceLimits,
    allowlisted_environment,
    harness_import_root,
    run_process,
)
from pytest_codegenie_eval.registry import BENCH_MODULE_PREFIX, TaskClass
from pytest_codegenie_eval.taskclass.layout import BREAKDOWN_KEYS, REGISTRATION

DEFAULT_IMPORT_TIMEOUT_S = defaults.IMPORT_TIMEOUT_S
"""How long importing a task class's modules may take (``--codegenie-import-timeout``)."""

_MEMORY_BYTES = 2 * 1024**3

# Runs in the child: ``python -I -c CHILD OUT PACKAGE_PARENT MODULE_PREFIX REGISTRATION
# BREAKDOWN_KEYS``. It rewrites OUT after each module, so a child that dies in the second
# still leaves the first's result, and the parent knows which module to blame.
_CHILD = r"""
import enum, importlib.util, json, os, sys

out, parent, prefix, registration, breakdown = sys.argv[1:6]
sys.path.insert(0, parent)
from pytest_codegenie_eval.registry import capture_registrations

result = {}


def save():
    with open(out + ".part", "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    os.replace(out + ".part", out)


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError("cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def failure(exc):
    if isinstance(exc, SystemExit):
        return f"importing it raised SystemExit({exc.code!r})"
    return f"import failed: {type(exc).__name__}: {exc}"


result["started"] = "registration"
save()
modules = dict(sys.modules)  # restored after each module: one cannot break the next
try:
    with capture_registrations() as captured:
        load(registration, prefix + "registration")
    result["registered"] = [
        {
            "name": tc.name,
            "qualname": tc.qualname,
            "floors": dict(tc.min_cases_for_promotion),
            "baseline_sut": tc.baseline_sut,
            "description": tc.description,
            "scores": tc.scores,
        }
        for tc in captured
    ]
except BaseException as exc:
    result["registration_error"] = failure(exc)
sys.modules.clear()
sys.modules.update(modules)
result["started"] = "breakdown_keys"
save()
if os.path.isfile(breakdown):
    try:
        module = load(breakdown, prefix + "breakdown_keys")
        enum_cls = getattr(module, "BreakdownKey", None)
        if isinstance(enum_cls, type) and issubclass(enum_cls, enum.Enum):
            result["breakdown_keys"] = [[m.name, str(m.value)] for m in enum_cls]
        else:
            result["breakdown_error"] = "must define `class BreakdownKey(StrEnum)`"
    except BaseException as exc:
        result["breakdown_error"] = failure(exc)
result["started"] = "done"
save()
os._exit(0)  # no atexit handlers or finalisers of bench code run after the result
"""


@dataclass(frozen=True)
class ImportedModules:
    """What a task class's modules declare, as data."""

    registered: tuple[TaskClass, ...] | None  # None when registration.py failed
    registration_error: str | None
    breakdown_keys: tuple[tuple[str, str], ...] | None  # (member name, value)
    breakdown_error: str | None


_CACHE: dict[tuple[Path, str, str], ImportedModules] = {}


def _digest(path: Path) -> str:
    return blake3_hex(path.read_bytes()) if path.is_file() else ""


def module_prefix(directory: Path) -> str:
    """The name prefix of a task class's modules (``qualname`` starts with it)."""
    tag = blake3_hex(str(directory).encode())[:12]
    safe = "".join(c if c.isalnum() else "_" for c in directory.name)
    return f"{BENCH_MODULE_PREFIX}{safe}_{tag}_"


def import_modules(
    directory: Path, *, timeout_s: float = DEFAULT_IMPORT_TIMEOUT_S
) -> ImportedModules:
    """Import ``registration.py`` and ``breakdown_keys.py`` of *directory* in a child
    process (once per content per process) and return what they declare.

    Raises :class:`TaskClassLoadError` naming the module when the child does not finish:
    it exited from inside the module, was killed, or ran past *timeout_s*.
    """
    directory = directory.resolve()
    registration, breakdown = directory / REGISTRATION, directory / BREAKDOWN_KEYS
    key = (directory, _digest(registration), _digest(breakdown))
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    package_parent = harness_import_root()
    with tempfile.TemporaryDirectory(prefix="codegenie-import-") as tmp:
        out = Path(tmp) / "result.json"
        argv = [
            sys.executable,
            "-I",
            "-c",
            _CHILD,
            str(out),
            str(package_parent),
            module_prefix(directory),
            str(registration),
            str(breakdown),
        ]
        env = allowlisted_environment()
        run = run_process(
            argv,
            cwd=directory,
            env=env,
            timeout_s=timeout_s,
            limits=ResourceLimits(address_space_bytes=_MEMORY_BYTES),
            max_stdout=_MAX_PRINTED,
        )
        data = _read(out)
    stage = str(data.get("started", "registration"))
    if stage != "done":
        culprit = registration if stage == "registration" else breakdown
        if run.timed_out:
            why = f"importing it did not finish within {timeout_s:g} s"
        elif run.spawn_error:
            why = f"the import process could not start: {run.spawn_error}"
        elif run.stdout_truncated:
            why = (
                f"importing it printed more than {_MAX_PRINTED // (1024 * 1024)} MiB to "
                "standard output and was stopped; a task class module must not print"
            )
        elif run.returncode is not None and run.returncode < 0:
            why = (
                f"importing it killed its interpreter ({_signal_name(-run.returncode)}); a "
                "task class module must not exit, kill or replace its interpreter"
            )
        else:
            why = (
                f"importing it ended the process (exit code {run.returncode}); a task class "
                "module must not exit, kill or replace its interpreter"
            )
        raise TaskClassLoadError(culprit, why)
    result = ImportedModules(
        registered=_task_classes(data.get("registered"), directory),
        registration_error=_text(data.get("registration_error")),
        breakdown_keys=_keys(data.get("breakdown_keys")),
        breakdown_error=_text(data.get("breakdown_error")),
    )
    _CACHE[key] = result
    return result


_MAX_PRINTED = 1024 * 1024  # what an import may print before it is stopped


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _read(path: Path) -> Mapping[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _text(value: object) -> str | None:
    return str(value) if value is not None else None


def _task_classes(value: object, directory: Path) -> tuple[TaskClass, ...] | None:
    if not isinstance(value, list):
        return None
    found = []
    for item in value:
        floors = item.get("floors") or {}
        found.append(
            TaskClass(
                name=str(item["name"]),
                qualname=str(item["qualname"]),
                min_cases_for_promotion=MappingProxyType(dict(floors)),
                baseline_sut=item.get("baseline_sut"),
                directory=directory,
                description=str(item.get("description") or ""),
                scores=str(item.get("scores") or "graded"),
            )
        )
    return tuple(found)


def _keys(value: object) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(value, list):
        return None
    return tuple((str(name), str(val)) for name, val in value)


__all__ = ["DEFAULT_IMPORT_TIMEOUT_S", "ImportedModules", "import_modules", "module_prefix"]
