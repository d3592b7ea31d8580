"""The system under test: which agent runs on a case, and how.

Four forms, resolved once per task class: the task class's deterministic ``baseline`` script,
the ``noop`` SUT (changes nothing), a command template (``"CMD {workspace}"``), and an
in-process agent behind the ``pytest_codegenie_eval_run_sut`` hook. Each has a digest that
changes whenever its code or command changes, so cached scores never outlive the agent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import os
import re
import shlex
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from unittest import mock

from pytest_codegenie_eval import defaults
from pytest_codegenie_eval.errors import CodegenieEvalError
from pytest_codegenie_eval.execution.canary import CANARY_ENV
from pytest_codegenie_eval.execution.isolation.cgroups import ChildCgroups
from pytest_codegenie_eval.execution.isolation.jailuser import (
    JailUser,
    default_jail_user,
    give_to,
    hand_over,
    unreadable_for,
)
from pytest_codegenie_eval.execution.isolation.sandbox import (
    SANDBOX_HOME,
    SANDBOX_TMP,
    SCRATCH_MOUNTS,
    Jail,
    NetworkMode,
    SandboxMode,
    bwrap_status,
    interpreter_bin,
    program_mounts,
    python_prefixes,
    ro_sources_that_exist,
    sandbox_path,
)
from pytest_codegenie_eval.hashing import blake3_hex, hash_parts
from pytest_codegenie_eval.process import (
    ProcessResult,
    ResourceLimits,
    allowlisted_environment,
    isolated_script,
    run_process,
    tail,
)
from pytest_codegenie_eval.store.cost_ledger import TAG_ENV
from pytest_codegenie_eval.taskclass.layout import CASES

if TYPE_CHECKING:
    from pytest_codegenie_eval.execution.gateway.access import GatewayAccess
    from pytest_codegenie_eval.models import BenchCase, Isolation

SutKind = Literal["baseline", "noop", "command", "hook"]
RESULT_FILE = ".codegenie/sut-result.json"
MAX_RESULT_FILE_BYTES = 64 * 1024
MiB = 1024 * 1024

HookRunner = Callable[["BenchCase", Path, Mapping[str, str]], Mapping[str, Any] | None]


class SutConfigError(CodegenieEvalError):
    """The SUT option cannot be used for a task class (e.g. no baseline script)."""


@dataclass(frozen=True)
class SutLimits:
    """Resource limits of a subprocess SUT (the wall timeout is the case's sut_timeout_s)."""

    memory_mb: int = defaults.SUT_MEMORY_MB
    max_procs: int = defaults.SUT_MAX_PROCS
    max_file_mb: int = defaults.SUT_MAX_FILE_MB
    max_workspace_mb: int = defaults.SUT_MAX_WORKSPACE_MB
    max_files: int = defaults.SUT_MAX_FILES

    @property
    def max_workspace_bytes(self) -> int:
        return self.max_workspace_mb * MiB


@dataclass(frozen=True)
class SutPolicy:
    """How subprocess SUTs are confined: sandbox, network, what else they may see."""

    sandbox: SandboxMode = "bwrap"
    network: NetworkMode = "none"
    ro_paths: tuple[Path, ...] = ()
    env_names: tuple[str, ...] = ()
    limits: SutLimits = field(default_factory=SutLimits)
    # the host user every jail runs as: ``nobody`` for a root harness, None (the harness's
    # own uid) otherwise; only tests showing the attack set None for a root harness
    jail_user: JailUser | None = field(default_factory=default_jail_user)
    # only tests showing the attack turn the read-only /proc/sys off
    readonly_proc: bool = True

    def isolation(self, spec: SutSpec) -> Isolation:
        """The isolation a run of ``spec`` really gets on this machine."""
        if spec.kind == "hook":
            return "in-process"
        if self.sandbox == "bwrap" and bwrap_status(self.jail_user).usable:
            return "bwrap"
        return "env-only"

    def jail_uid(self, spec: SutSpec) -> int | None:
        """The host uid the SUT runs as (its jail's, or the harness's own without one)."""
        if self.isolation(spec) == "bwrap" and self.jail_user is not None:
            return self.jail_user.uid
        return os.geteuid()

    def effective_network(self, spec: SutSpec) -> NetworkMode:
        """``none`` only where a sandbox enforces it: env-only and in-process SUTs share the
        harness's network whatever was asked."""
        return self.network if self.isolation(spec) == "bwrap" else "host"

    def describe(self, spec: SutSpec) -> str:
        """Everything about the confinement that can change a result (part of the cache key)."""
        limits = self.limits
        return json.dumps(
            {
                "isolation": self.isolation(spec),
                "network": self.effective_network(spec),
                "ro": sorted(str(p) for p in self.ro_paths),
                "env": sorted(self.env_names),
                "limits": [
                    limits.memory_mb,
                    limits.max_procs,
                    limits.max_file_mb,
                    limits.max_workspace_mb,
                    limits.max_files,
                ],
                "uid": self.jail_uid(spec),
            },
            sort_keys=True,
        )


@dataclass(frozen=True)
class SutSpec:
    """A resolved SUT: what runs, its digest, and the files its command needs to see."""

    kind: SutKind
    display: str
    digest: str
    argv_template: tuple[str, ...] = ()
    mounts: tuple[Path, ...] = ()


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
    isolation: Isolation = "in-process"
    network: NetworkMode = "host"
    workspace_overflow: str | None = None
    memory_exceeded: str | None = None
    jail_uid: int | None = None  # the host uid the SUT ran as
    # how --codegenie-sut-max-memory-mb was enforced: "cgroup" (all processes together) or
    # "per-process" (an address-space rlimit on each, where no cgroup could be made)
    memory_limit: Literal["cgroup", "per-process", ""] = ""

    @property
    def stdout_tail(self) -> str:
        return tail(self.stdout)

    @property
    def stderr_tail(self) -> str:
        return tail(self.stderr)


def _digest(*parts: bytes) -> str:
    return hash_parts(parts, domain=b"pytest-codegenie-eval sut v1\0")


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
            tuple(baseline_mounts(baseline_script)),
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
    return SutSpec(
        "command",
        choice,
        _digest(b"command", choice.encode(), *files),
        resolved,
        tuple(command_mounts(resolved)),
    )


def refuse_guarded_mounts(
    spec: SutSpec, guarded: tuple[Path, ...], *, rootdir: Path | None = None
) -> None:
    """Refuse a SUT whose sandbox would show it a guarded tree (a task class's ``cases/``,
    the state directory): a file the command names inside one, or any mount (the Python
    prefix included) that holds one. A mount holding the rootdir is refused too: a venv
    created at the repository root would otherwise bring the whole repository along."""
    trees = [g.resolve() for g in guarded]
    holders = [*trees, rootdir.resolve()] if rootdir is not None else trees
    for mount in (*spec.mounts, *python_prefixes()) if spec.kind != "hook" else ():
        real = mount.resolve()
        for tree in trees:
            if real == tree or real.is_relative_to(tree):
                raise SutConfigError(
                    f"--codegenie-sut names {mount}, which lies under {tree}: the SUT must "
                    "never see the cases or the state directory"
                )
        for held in holders:
            if held.is_relative_to(real):
                raise SutConfigError(
                    f"the SUT's sandbox would mount {mount}, which holds {held}: the SUT must "
                    "never see the rootdir, the cases or the state directory (a virtualenv "
                    "created at the repository root does this; create it in a subfolder)"
                )


def refuse_unreadable_mounts(spec: SutSpec, user: JailUser | None) -> None:
    """Refuse a SUT whose files its sandbox's user could not read (a root harness starts
    every sandbox as an unprivileged user)."""
    if user is None or spec.kind == "hook":
        return
    found = unreadable_for(user, spec.mounts, limit=2_000)
    if found is not None:
        raise SutConfigError(
            f"the SUT's sandbox runs as {user.name} (uid {user.uid}), which cannot read "
            f"{found}; make it readable by that user or name another with "
            "--codegenie-sandbox-user"
        )


# Never bound for a baseline SUT, although they sit beside its script: the answer keys and
# the bench author's tests.
_NOT_FOR_THE_BASELINE = frozenset({CASES, "tests", "__pycache__"})


def baseline_mounts(script: Path) -> list[Path]:
    """The baseline script and the helper modules beside it (``*.py`` files and packages),
    never the task class's ``cases/``."""
    script = Path(os.path.abspath(script))
    mounts = [script]
    for entry in sorted(script.parent.iterdir()):
        if entry.name in _NOT_FOR_THE_BASELINE or entry.name.startswith("."):
            continue
        if entry.is_symlink():
            continue  # a link could lead anywhere, cases/ included
        if (entry.is_file() and entry.suffix == ".py") or (
            entry.is_dir() and (entry / "__init__.py").is_file()
        ):
            mounts.append(entry)
    return mounts


def command_mounts(tokens: tuple[str, ...]) -> list[Path]:
    """What a command SUT needs to see: every token that names an existing file (that file,
    never its folder) and the program, looked up on ``PATH`` as the sandbox will."""
    mounts: list[Path] = []
    for i, token in enumerate(tokens):
        if "{" in token:
            continue
        if i == 0 and "/" not in token:
            found = _which_in_sandbox(token)
            if found is not None:
                mounts += program_mounts(found)
            continue
        path = Path(token)
        if path.is_absolute() and path.is_file():
            mounts += program_mounts(path) if os.access(path, os.X_OK) else [path]
    return mounts


def _which_in_sandbox(program: str) -> Path | None:
    visible = python_prefixes()
    found = shutil.which(program, path=sandbox_path([interpreter_bin()], visible))
    if found is None:
        found = shutil.which(program)
    return Path(os.path.abspath(found)) if found else None


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
                parts.append(blake3_hex(Path(source).read_bytes()))
        except (OSError, TypeError):
            parts.append("nosource")
    if extra:
        parts.append(extra)
    return "\n".join(parts)


def _read_cost(workspace: Path) -> tuple[float, str | None]:
    path = workspace / RESULT_FILE
    try:
        # never through a link the SUT planted, never more than a small file's worth
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return 0.0, None
    except OSError as exc:
        return 0.0, f"{RESULT_FILE} cannot be read (a symlink or not a file?): {exc}"
    try:
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return 0.0, f"{RESULT_FILE} is not a regular file"
            raw = handle.read(MAX_RESULT_FILE_BYTES + 1)
        if len(raw) > MAX_RESULT_FILE_BYTES:
            return 0.0, f"{RESULT_FILE} is larger than {MAX_RESULT_FILE_BYTES} bytes"
        data = json.loads(raw.decode("utf-8"))
        cost = float(data.get("cost_usd", 0.0)) if isinstance(data, dict) else 0.0
    except (ValueError, TypeError, OSError) as exc:
        return 0.0, f"{RESULT_FILE} is not valid JSON with a numeric cost_usd: {exc}"
    if not cost >= 0.0 or cost == float("inf"):
        return 0.0, f"{RESULT_FILE} reports a negative or non-finite cost_usd"
    return cost, None


def workspace_usage(
    root: Path, stop_above: int | None = None, max_entries: int | None = None
) -> tuple[int, int]:
    """Bytes and entries under ``root``, counted from ``lstat`` (no file is read, no link
    followed); stops counting once ``stop_above`` bytes or ``max_entries`` entries are
    passed, so the walk is never longer than the limits it checks."""
    total = entries = 0
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as listing:
                for entry in listing:
                    entries += 1
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += info.st_size
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    if stop_above is not None and total > stop_above:
                        return total, entries
                    if max_entries is not None and entries > max_entries:
                        return total, entries
        except OSError:
            continue
    return total, entries


def jail_scratch_usage(bwrap_pid: int) -> tuple[int, int]:
    """Bytes and files in a running jail's private tmpfs mounts (``/tmp``, ``HOME``,
    ``/dev/shm``) together, read from the filesystems' own counters through the jail's root
    (``/proc/<pid>/root``); ``(0, 0)`` where the jail cannot be found or read."""
    try:
        with open(f"/proc/{bwrap_pid}/task/{bwrap_pid}/children", "rb") as handle:
            children = handle.read().split()
    except OSError:
        return 0, 0
    used = files = 0
    for child in children[:1]:
        for mount in SCRATCH_MOUNTS:
            try:
                info = os.statvfs(f"/proc/{int(child)}/root{mount}")
            except (OSError, ValueError):
                continue
            used += (info.f_blocks - info.f_bfree) * info.f_frsize
            files += max(info.f_files - info.f_ffree - 1, 0)  # the mount's own root
    return used, files


class _Watch:
    """What stops a running SUT: its workspace, or its scratch space, past a limit (asked
    again once the SUT has ended, with no jail left, for the workspace alone)."""

    def __init__(self, workspace: Path, limits: SutLimits, jailed: bool) -> None:
        self.workspace = workspace
        self.limits = limits
        self.jailed = jailed
        self.pid: int | None = None

    def started(self, pid: int) -> None:
        self.pid = pid

    def __call__(self) -> str | None:
        limits = self.limits
        cap = limits.max_workspace_bytes
        used, entries = workspace_usage(self.workspace, cap, limits.max_files)
        if used > cap:
            return _overflow_message(used, limits)
        scratch, scratch_files = (0, 0)
        if self.jailed and self.pid is not None:
            scratch, scratch_files = jail_scratch_usage(self.pid)
        if scratch > cap:
            return (
                f"the SUT's private /tmp, HOME and /dev/shm grew to {scratch / MiB:.1f} MiB "
                f"together, past the {limits.max_workspace_mb} MiB limit "
                "(--codegenie-sut-max-workspace-mb)"
            )
        if entries + scratch_files > limits.max_files:
            where = "the workspace" + (" and its scratch space" if scratch_files else "")
            return f"{where} held more than {limits.max_files} files (--codegenie-sut-max-files)"
        return None


def _overflow_message(used: int, limits: SutLimits) -> str:
    return (
        f"the workspace grew to {used / MiB:.1f} MiB, past the "
        f"{limits.max_workspace_mb} MiB limit (--codegenie-sut-max-workspace-mb)"
    )


def sut_environment(
    contract: Mapping[str, str],
    policy: SutPolicy,
    *,
    home: str,
    tmpdir: str,
    path: str | None,
    cwd: Path,
) -> dict[str, str]:
    """The SUT's whole environment: the allowlist, the contract variables, and only the
    variables the user named with ``--codegenie-sut-env``; ``HOME``, ``TMPDIR`` and ``PWD``
    (its working directory, as a shell would export it, and as bubblewrap sets it after
    entering it: the same value either way, so no helper has to unset it)."""
    env = allowlisted_environment()
    for name in policy.env_names:
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(contract)
    env["HOME"] = home
    env["TMPDIR"] = tmpdir
    env["PWD"] = str(cwd)
    if path is not None:
        env["PATH"] = path
    return env


def _limits(
    policy: SutPolicy, case: BenchCase, *, nproc: bool, address_space: bool
) -> ResourceLimits:
    limits = policy.limits
    return ResourceLimits(
        cpu_seconds=int(case.sut_timeout_s) + 2,
        address_space_bytes=limits.memory_mb * MiB if address_space else None,
        file_size_bytes=limits.max_file_mb * MiB,
        processes=limits.max_procs if nproc else None,
    )


@contextlib.contextmanager
def _child_cgroups(policy: SutPolicy) -> Iterator[ChildCgroups]:
    cgroups = ChildCgroups.shared(policy.limits.max_procs, policy.limits.memory_mb * MiB)
    try:
        yield cgroups
    finally:
        cgroups.drain()


def _memory_message(limits: SutLimits, kills: int) -> str:
    return (
        f"the SUT's processes together needed more than {limits.memory_mb} MiB "
        f"(--codegenie-sut-max-memory-mb); the kernel killed {kills} of them"
    )


# bubblewrap runs the SUT's program itself: where it cannot, it says why and exits 1. That is
# the shell's 127 (not found) or 126 (found, not executable), as an unjailed SUT's is.
_EXEC_FAILED = re.compile(
    rb"bwrap: execvp [^\n]*: (No such file or directory|Permission denied)\n?"
)


def _exec_failure_status(result: ProcessResult) -> ProcessResult:
    """``result`` with the shell's exit status for a program bubblewrap could not start."""
    found = _EXEC_FAILED.fullmatch(result.stderr)
    if result.returncode != 1 or found is None or result.stdout:
        return result
    status = 127 if found.group(1) == b"No such file or directory" else 126
    return dataclasses.replace(result, returncode=status)


# The contract variables an in-process (hook) SUT also finds in ``os.environ`` while it runs
# (docs/sut-contract.md). Only a hook's: ``os.environ`` is the harness's, shared by every
# thread of it (attempts run side by side with local:N and on Dask workers), and a
# subprocess SUT has them in its own environment.
_HOOK_OS_ENVIRON = (CANARY_ENV, TAG_ENV)


def run_sut(
    spec: SutSpec,
    *,
    case: BenchCase,
    workspace: Path,
    env: Mapping[str, str],
    policy: SutPolicy | None = None,
    run_dir: Path | None = None,
    extra_ro: tuple[Path, ...] = (),
    hook: HookRunner | None = None,
    gateway: GatewayAccess | None = None,
    after: tuple[float, Callable[[], None]] | None = None,
) -> SutRun:
    """Run the SUT on the workspace under the case's timeout; never raises for its behaviour.

    ``env`` holds the contract's ``CODEGENIE_*`` variables. A subprocess SUT gets them,
    the allowlist and the variables ``policy`` names, and nothing else of the harness's
    environment; inside bubblewrap where the policy asks for it and the machine allows it,
    as the policy's jail user when the harness is root (the workspace is handed to it).
    With ``gateway`` the SUT reaches models only through the attempt's gateway: its key
    variables hold the attempt's token, its URL variables point at the gateway, and a jailed
    SUT runs behind the forwarder that offers the gateway's socket inside the jail.
    ``after`` goes to :func:`run_process` (a callback once the SUT has run a while).
    """
    policy = policy or SutPolicy()
    isolation = policy.isolation(spec)
    network = policy.effective_network(spec)
    if spec.kind == "noop":
        return SutRun(0, "", "", False, 0.0, isolation=isolation, network=network)
    if spec.kind == "hook":
        if hook is None:  # pragma: no cover - resolve_sut only picks hook when one exists
            raise SutConfigError("hook SUT selected but no implementation is registered")
        run_dir = run_dir or workspace.parent
        hook_env = {**os.environ, **env, "TMPDIR": str(run_dir / "tmp")}
        if gateway is not None:
            hook_env.update(gateway.env())
        exposed = {name: env[name] for name in _HOOK_OS_ENVIRON if name in env}
        with mock.patch.dict(os.environ, exposed):
            return _run_hook(hook, case=case, workspace=workspace, env=hook_env)
    run_dir = run_dir or workspace.parent
    argv = [
        token.replace("{workspace}", str(workspace)).replace("{case_id}", case.case_id)
        for token in spec.argv_template
    ]
    jail_uid = policy.jail_uid(spec)
    if isolation == "bwrap":
        status = bwrap_status(policy.jail_user)
        assert status.path is not None  # isolation() said it is usable
        through = (gateway.bind_dir,) if gateway is not None else ()
        visible = ro_sources_that_exist(
            [*python_prefixes(), *spec.mounts, *policy.ro_paths, *extra_ro, *through]
        )
        bins = [interpreter_bin(), *(m.parent for m in spec.mounts if m.is_file())]
        if gateway is not None:
            env = {**env, **gateway.key_env()}
            argv = gateway.wrap(argv)
        jail_env = sut_environment(
            env,
            policy,
            home=SANDBOX_HOME,
            tmpdir=SANDBOX_TMP,
            path=sandbox_path(bins, visible),
            cwd=workspace,
        )
        if policy.jail_user is not None:
            give_to(policy.jail_user, workspace)
            hand_over(run_dir, policy.jail_user)
        jail = Jail(
            ro=visible,
            rw=(workspace,),
            chdir=workspace,
            env=jail_env,
            network=policy.network,
            scratch_bytes=policy.limits.max_workspace_bytes,
            user=policy.jail_user,
            readonly_proc=policy.readonly_proc,
            keep_pwd=True,  # PWD is the workspace already, the value bwrap sets
        )
        argv = jail.argv(status.path, argv)
        child_env: Mapping[str, str] = jail.spawn_env()
    else:
        home, tmp = run_dir / "home", run_dir / "tmp"
        home.mkdir(exist_ok=True)
        tmp.mkdir(exist_ok=True)
        if gateway is not None:
            env = {**env, **gateway.env()}
        child_env = sut_environment(
            env, policy, home=str(home), tmpdir=str(tmp), path=None, cwd=workspace
        )

    watch = _Watch(workspace, policy.limits, jailed=isolation == "bwrap")
    with _child_cgroups(policy) as cgroups:
        limits: ResourceLimits | None = _limits(
            policy, case, nproc=cgroups.pids is None, address_space=cgroups.memory is None
        )
        if cgroups.directories():
            # the shell that moves the SUT into its cgroups sets its limits too, where it can
            ulimits = limits.shell_commands() if limits is not None else None
            argv = cgroups.wrap(argv, ulimits or "")
            if ulimits is not None:
                limits = None
        kills_before = cgroups.oom_kills()
        result = run_process(
            argv,
            cwd=workspace,
            env=child_env,
            timeout_s=case.sut_timeout_s,
            max_stdout=8 * MiB,
            max_stderr=256 * 1024,
            limits=limits,
            watch=watch,
            on_start=watch.started,
            after=after,
        )
        kills = cgroups.oom_kills() - kills_before
    watch.pid = None  # the jail is gone: what is left to check is the workspace
    if isolation == "bwrap":
        result = _exec_failure_status(result)
    overflow = result.stopped or watch()
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
        isolation=isolation,
        network=network,
        workspace_overflow=overflow,
        memory_exceeded=_memory_message(policy.limits, kills) if kills > 0 else None,
        jail_uid=jail_uid,
        memory_limit="cgroup" if cgroups.memory is not None else "per-process",
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
