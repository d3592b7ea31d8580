"""The system under test: which agent runs on a case, and how.

Four forms, resolved once per task class: the task class's deterministic ``baseline`` script,
the ``noop`` SUT (changes nothing), a command template (``"CMD {workspace}"``), and an
in-process agent behind the ``pytest_codegenie_eval_run_sut`` hook. Each has a digest that
changes whenever its code or command changes, so cached scores never outlive the agent.
"""

from __future__ import annotations

import inspect
import json
import os
import shlex
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import blake3

from pytest_codegenie_eval.errors import CodegenieEvalError
from pytest_codegenie_eval.models import BenchCase
from pytest_codegenie_eval.process import isolated_script, run_process, tail

SutKind = Literal["baseline", "noop", "command", "hook"]
RESULT_FILE = ".codegenie/sut-result.json"

HookRunner = Callable[[BenchCase, Path, Mapping[str, str]], Mapping[str, Any] | None]


class SutConfigError(CodegenieEvalError):
    """The SUT option cannot be used for a task class (e.g. no baseline script)."""


@dataclass(frozen=True)
class SutSpec:
    """A resolved SUT: what runs and its digest."""

    kind: SutKind
    display: str
    digest: str
    argv_template: tuple[str, ...] = ()


@dataclass(frozen=True)
class SutRun:
    """What the SUT did to one workspace."""

    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    duration_s: float
    cost_usd: float = 0.0
    error: str | None = None

    @property
    def stdout_tail(self) -> str:
        return tail(self.stdout)

    @property
    def stderr_tail(self) -> str:
        return tail(self.stderr)


def _digest(*parts: bytes) -> str:
    hasher = blake3.blake3(b"pytest-codegenie-eval sut v1\0")
    for part in parts:
        hasher.update(len(part).to_bytes(8, "little"))
        hasher.update(part)
    return str(hasher.hexdigest())


def _named_file(token: str, base: Path) -> Path | None:
    """The existing file a command-line token names (relative tokens against ``base``)."""
    if "{" in token:
        return None
    candidate = Path(token)
    if not candidate.is_absolute():
        candidate = base / candidate
    try:
        return candidate if candidate.is_file() else None
    except OSError:
        return None


def _referenced_file_bytes(tokens: tuple[str, ...], base: Path) -> list[bytes]:
    """Bytes of every token that names an existing file, so editing the agent's script
    changes the digest even when the command line does not."""
    found: list[bytes] = []
    for token in tokens:
        path = _named_file(token, base)
        if path is None:
            continue
        try:
            found.append(path.name.encode() + b"\0" + path.read_bytes())
        except OSError:
            continue
    return found


def resolve_sut(
    value: str | None,
    *,
    baseline_script: Path | None,
    rootdir: Path,
    hook_identity: str | None,
) -> SutSpec:
    """Turn the option value (or the hook, when no option is set) into a SutSpec."""
    if value is None and hook_identity is not None:
        return SutSpec(
            "hook", "hook:pytest_codegenie_eval_run_sut", _digest(b"hook", hook_identity.encode())
        )
    choice = (value or "baseline").strip()
    if choice == "noop":
        return SutSpec("noop", "noop", _digest(b"noop"))
    if choice == "baseline":
        if baseline_script is None or not baseline_script.is_file():
            raise SutConfigError(
                f"the task class declares no baseline SUT script ({baseline_script}); "
                "pass --codegenie-sut=noop or a command"
            )
        return SutSpec(
            "baseline",
            f"baseline:{baseline_script.name}",
            _digest(b"baseline", baseline_script.read_bytes()),
            tuple(isolated_script(baseline_script, "{workspace}")),
        )
    try:
        tokens = tuple(shlex.split(choice))
    except ValueError as exc:
        raise SutConfigError(f"--codegenie-sut {choice!r} is not a valid command: {exc}") from exc
    if not tokens:
        raise SutConfigError("--codegenie-sut is empty")
    files = _referenced_file_bytes(tokens, rootdir)
    # the command runs with the workspace as cwd, so a relative path to the agent's script
    # (as typed on the command line, relative to the rootdir) is made absolute here
    resolved = tuple(
        _absolute_if_file(token, rootdir) if i or "/" in token else token
        for i, token in enumerate(tokens)
    )
    return SutSpec("command", choice, _digest(b"command", choice.encode(), *files), resolved)


def _absolute_if_file(token: str, base: Path) -> str:
    if token.startswith("-") or Path(token).is_absolute():
        return token
    path = _named_file(token, base)
    # absolute, not resolved: a venv's python is a symlink that must stay one
    return os.path.abspath(path) if path is not None else token


def hook_identity(functions: list[Callable[..., Any]], extra: str | None) -> str | None:
    """Source-derived identity of the hook implementations (None when there are none)."""
    if not functions:
        return None
    parts = []
    for fn in functions:
        parts.append(f"{fn.__module__}.{fn.__qualname__}")
        try:
            source = inspect.getsourcefile(fn)
            if source:
                parts.append(blake3.blake3(Path(source).read_bytes()).hexdigest())
        except (OSError, TypeError):
            parts.append("nosource")
    if extra:
        parts.append(extra)
    return "\n".join(parts)


def _read_cost(workspace: Path) -> tuple[float, str | None]:
    path = workspace / RESULT_FILE
    if not path.is_file():
        return 0.0, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        cost = float(data.get("cost_usd", 0.0)) if isinstance(data, dict) else 0.0
    except (ValueError, TypeError, OSError) as exc:
        return 0.0, f"{RESULT_FILE} is not valid JSON with a numeric cost_usd: {exc}"
    if not cost >= 0.0:
        return 0.0, f"{RESULT_FILE} reports a negative or non-finite cost_usd"
    return cost, None


def run_sut(
    spec: SutSpec,
    *,
    case: BenchCase,
    workspace: Path,
    env: Mapping[str, str],
    hook: HookRunner | None = None,
) -> SutRun:
    """Run the SUT on the workspace under the case's timeout; never raises for its behaviour."""
    if spec.kind == "noop":
        return SutRun(0, "", "", False, 0.0)
    if spec.kind == "hook":
        if hook is None:  # pragma: no cover - resolve_sut only picks hook when one exists
            raise SutConfigError("hook SUT selected but no implementation is registered")
        return _run_hook(hook, case=case, workspace=workspace, env=env)
    argv = [
        token.replace("{workspace}", str(workspace)).replace("{case_id}", case.case_id)
        for token in spec.argv_template
    ]
    result = run_process(
        argv,
        cwd=workspace,
        env=env,
        timeout_s=case.sut_timeout_s,
        max_stdout=8 * 1024 * 1024,
        max_stderr=256 * 1024,
    )
    cost, cost_error = _read_cost(workspace)
    error = result.spawn_error or cost_error
    if result.stdout_truncated:
        error = "SUT stdout exceeded 8 MiB and the SUT was stopped"
    return SutRun(
        exit_code=result.returncode,
        stdout=result.stdout.decode("utf-8", errors="replace"),
        stderr=result.stderr.decode("utf-8", errors="replace"),
        timed_out=result.timed_out,
        duration_s=result.duration_s,
        cost_usd=cost,
        error=error,
    )


def _run_hook(
    hook: HookRunner, *, case: BenchCase, workspace: Path, env: Mapping[str, str]
) -> SutRun:
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = hook(case, workspace, env)
        except BaseException as exc:
            outcome["error"] = f"{type(exc).__name__}: {exc}"

    started = time.monotonic()
    # a daemon thread: an in-process agent cannot be killed, but it can be abandoned
    thread = threading.Thread(target=target, name=f"codegenie-sut-{case.case_id}", daemon=True)
    thread.start()
    thread.join(case.sut_timeout_s)
    duration = time.monotonic() - started
    if thread.is_alive():
        return SutRun(None, "", "", True, duration)
    if "error" in outcome:
        return SutRun(1, "", str(outcome["error"]), False, duration, error=str(outcome["error"]))
    value = outcome.get("value") or {}
    if not isinstance(value, Mapping):
        message = f"the SUT hook returned {type(value).__name__}, expected a mapping or None"
        return SutRun(1, "", message, False, duration, error=message)
    file_cost, cost_error = _read_cost(workspace)
    try:
        cost = float(value.get("cost_usd", file_cost))
    except (TypeError, ValueError):
        cost, cost_error = 0.0, "the SUT hook returned a non-numeric cost_usd"
    exit_code = value.get("exit_code", 0)
    return SutRun(
        exit_code=exit_code if isinstance(exit_code, int) else 1,
        stdout=str(value.get("stdout", "")),
        stderr=str(value.get("stderr", "")),
        timed_out=False,
        duration_s=duration,
        cost_usd=max(cost, 0.0),
        error=cost_error,
    )
