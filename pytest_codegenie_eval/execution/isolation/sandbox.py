"""The sandbox the agent under test (and the rubric) runs in: bubblewrap, or what is left.

The SUT is the adversary: it would read the answer key, the cache, the rubric, the audit
log or the harness's environment if it could reach them. Inside a :class:`Jail` it sees a
read-only system (``/usr``, ``/etc``, …), the Python prefix it runs with, the files its
command names, the paths the user lists, its workspace (read-write), a private ``/tmp`` and
an empty ``HOME`` — nothing else: no rootdir, bench root, case directory, state directory,
harness ``HOME`` or host ``/tmp``. It has its own PID namespace and ``/proc`` (no ancestor's
cwd, cmdline or environ), no network unless the user asks for the host's, no capabilities
and no way to create further user namespaces.

:func:`bwrap_status` says whether bubblewrap works here (probed once per ``bwrap`` binary);
where it does not, callers fall back to an environment allowlist alone and record that.
See ``docs/adr/0012-sut-sandbox.md`` for the threat model.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pytest_codegenie_eval.errors import CodegenieEvalError
from pytest_codegenie_eval.execution.isolation.jailuser import JailUser, Stage, missing_tools
from pytest_codegenie_eval.process import which

SandboxMode = Literal["bwrap", "none"]
NetworkMode = Literal["none", "host"]

# Read-only system directories every sandbox gets (those that exist on this machine).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
SANDBOX_HOME = "/home/sut"
SANDBOX_TMP = "/tmp"
SANDBOX_PATH_TAIL = ("/usr/local/bin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/sbin", "/sbin")

_PROBE_TIMEOUT_S = 10.0
_ENV = "/usr/bin/env"


def _abs(path: Path | str) -> Path:
    """Absolute and normalised, without resolving symlinks (a venv's python must stay one)."""
    return Path(os.path.abspath(path))


def _under(path: Path, roots: Iterable[Path]) -> bool:
    """Whether ``path`` is one of ``roots`` or inside one. The paths are absolute and
    normalised (as :func:`_abs` makes them), so this compares strings: ``Path.is_relative_to``
    parses both sides again, and a jail asks this thousands of times per attempt."""
    text = str(path)
    for root in roots:
        prefix = str(root)
        if text == prefix or text.startswith(prefix if prefix.endswith("/") else prefix + "/"):
            return True
    return False


@functools.cache
def system_dirs() -> tuple[Path, ...]:
    """The host's system directories a jail binds (those that exist here; looked up once)."""
    return tuple(Path(d) for d in SYSTEM_DIRS if os.path.lexists(d))


def _symlink_chain(path: Path) -> list[Path]:
    """``path`` and every hop its symlinks lead through, in order (absolute, unresolved)."""
    chain = [_abs(path)]
    with contextlib.suppress(OSError):
        for _ in range(40):
            if not chain[-1].is_symlink():
                break
            chain.append(_abs(chain[-1].parent / os.readlink(chain[-1])))
    return chain


def interpreter_bin() -> Path:
    """The ``bin`` directory of the harness's interpreter, first on every sandbox's PATH."""
    return _abs(sys.executable).parent


@functools.cache
def python_prefixes(executable: str = sys.executable) -> tuple[Path, ...]:
    """Every directory a Python interpreter needs to start: its venv, the base prefix the
    venv points at, and the real prefix its symlinks lead to (never the user's home).
    Cached: it is asked for every SUT and rubric jail, and an interpreter does not move."""
    found: list[Path] = []
    chain = [*_symlink_chain(Path(executable)), Path(os.path.realpath(executable))]
    for hop in chain:
        bin_dir = hop.parent
        prefix = bin_dir.parent
        if (prefix / "pyvenv.cfg").is_file():
            found.append(prefix)
            home = _venv_home(prefix / "pyvenv.cfg")
            if home is not None:
                found.append(home.parent if home.name == "bin" else home)
        elif bin_dir.name == "bin" and hop.name.startswith("python"):
            found.append(prefix)
    if _abs(executable) == _abs(sys.executable):
        found += [_abs(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)]
        found.append(_abs(sys.base_exec_prefix))
    return tuple(_dedupe(p for p in found if str(p) not in ("/", "")))


def _venv_home(cfg: Path) -> Path | None:
    try:
        for line in cfg.read_text(encoding="utf-8", errors="replace").splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == "home" and value.strip():
                return _abs(value.strip())
    except OSError:
        return None
    return None


def program_mounts(path: Path) -> list[Path]:
    """What must be visible for ``path`` to run: the file, every hop of its symlink chain,
    and for a Python interpreter its prefixes."""
    mounts = _symlink_chain(path)
    name = Path(os.path.realpath(path)).name
    if name.startswith("python") or path.name.startswith("python"):
        mounts += python_prefixes(str(path))
    return _dedupe(mounts)


def _dedupe(paths: Iterable[Path]) -> list[Path]:
    seen: list[Path] = []
    for path in paths:
        if path not in seen:
            seen.append(path)
    return seen


# procfs files and directories a jail never gets to write, whoever it runs as: the global
# sysctls (host uid 0 may write them without any capability) and the other old knobs
PROC_READ_ONLY = (
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/proc/irq",
    "/proc/bus",
    "/proc/fs",
    "/proc/pressure",  # PSI triggers: kernel work on behalf of whoever opens them
)
SANDBOX_SHM = "/dev/shm"
# the private tmpfs mounts of a jail: what counts as its scratch space
SCRATCH_MOUNTS = (SANDBOX_TMP, SANDBOX_HOME, SANDBOX_SHM)


@dataclass(frozen=True)
class Jail:
    """Everything one sandboxed child may see and do (paths are identical inside and out).

    ``ro`` and ``rw`` are bind-mounted at their own paths; ``masks`` get an empty tmpfs
    (hiding, say, a task class's ``cases/`` behind a bound task class directory);
    ``scratch_bytes`` caps each private tmpfs (``/tmp``, ``HOME`` and ``/dev/shm``; the rest
    of ``/dev`` is read-only). ``user`` is the host user the jail runs as when the harness
    is root (``None``: as the harness itself); ``readonly_proc`` keeps
    :data:`PROC_READ_ONLY` read-only and is turned off only by tests that show the attack
    it stops.
    """

    ro: tuple[Path, ...]
    rw: tuple[Path, ...]
    chdir: Path
    env: Mapping[str, str]
    network: NetworkMode = "none"
    masks: tuple[Path, ...] = ()
    scratch_bytes: int = 256 * 1024 * 1024
    user: JailUser | None = None
    readonly_proc: bool = True
    keep_pwd: bool = False  # the command drops bwrap's PWD itself (the rubric bootstrap)

    def spawn_env(self) -> dict[str, str]:
        """The environment to start ``bwrap`` with: it passes it on unchanged."""
        return dict(self.env)

    def argv(self, bwrap: str, command: Sequence[str], stage: Stage | None = None) -> list[str]:
        """The ``bwrap`` command line running ``command`` inside this jail (started inside
        ``stage``, or this process's stage, as :attr:`user` when there is one)."""
        prefix: list[str] = []
        user = self.user
        if user is not None:
            stage = stage or Stage.for_process()
            prefix = stage.prefix(user)

        def source(path: Path) -> str:
            return str(stage.source(path, user)) if stage is not None and user else str(path)

        args = [
            *prefix,
            bwrap,
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--cap-drop",
            "ALL",
            "--die-with-parent",
            "--new-session",
        ]
        # the environment is bwrap's own (exactly ``env``, see :meth:`spawn_env`), never
        # --setenv: values on a command line are readable by every user of the host
        if self.network == "host":
            args.append("--share-net")
        systems = system_dirs()
        for sysdir in systems:
            if os.path.islink(sysdir):  # merged /usr: /bin -> usr/bin
                args += ["--symlink", os.readlink(sysdir), str(sysdir)]
            else:
                args += ["--ro-bind", str(sysdir), str(sysdir)]
        args += ["--proc", "/proc"]
        if self.readonly_proc:
            for knob in PROC_READ_ONLY:
                args += ["--ro-bind-try", knob, knob]
        size = str(self.scratch_bytes)
        # /dev: device nodes stay usable, shared memory is a capped tmpfs, the rest read-only
        args += ["--dev", "/dev", "--size", size, "--tmpfs", SANDBOX_SHM, "--remount-ro", "/dev"]
        args += ["--size", size, "--tmpfs", SANDBOX_TMP, "--size", size, "--tmpfs", SANDBOX_HOME]
        # parents before children, so a deeper bind is never hidden by a shallower one
        entries: list[tuple[int, int, str, Path]] = []
        bound_ro: list[Path] = []
        # shallowest first, so a path inside a folder already bound (a venv's bin/python
        # inside the venv) is left to that bind: binding it again onto its own symlink in the
        # bound copy would make bwrap follow that link and fail
        for order, path in sorted(enumerate(self.ro), key=lambda item: len(item[1].parts)):
            hidden = _under(path, self.masks)
            if _under(path, systems) or (_under(path, bound_ro) and not hidden):
                continue
            bound_ro.append(path)
            entries.append((len(path.parts), order, "--ro-bind", path))
        base = len(entries)
        for order, path in enumerate(self.masks):
            entries.append((len(path.parts), base + order, "--tmpfs", path))
        base = len(entries)
        for order, path in enumerate(self.rw):
            entries.append((len(path.parts), base + order, "--bind", path))
        for _depth, _order, flag, path in sorted(entries):
            if flag == "--tmpfs":
                args += ["--size", "4096", flag, str(path)]
            else:
                args += [flag, source(path), str(path)]
        # nothing else is writable: the sandbox's own root tmpfs becomes read-only
        args += ["--remount-ro", "/", "--chdir", str(self.chdir), "--"]
        if os.path.exists(_ENV) and not self.keep_pwd:
            # bwrap exports PWD after --chdir; the environment is exactly what was set
            args += [_ENV, "-u", "PWD"]
        return [*args, *command]


def ro_sources_that_exist(paths: Iterable[Path]) -> tuple[Path, ...]:
    """Keep the paths that exist (a bind of a missing source would fail the whole start)."""
    return tuple(p for p in _dedupe(_abs(p) for p in paths) if os.path.lexists(p))


def sandbox_path(extra_bins: Iterable[Path], visible: Iterable[Path]) -> str:
    """The ``PATH`` inside a sandbox: the interpreter's ``bin`` first, then the harness's
    entries that are visible inside, then the usual system directories."""
    return _sandbox_path(tuple(extra_bins), tuple(visible), os.environ.get("PATH", ""))


@functools.lru_cache(maxsize=64)
def _sandbox_path(extra_bins: tuple[Path, ...], visible: tuple[Path, ...], path: str) -> str:
    # the same for every attempt of a SUT (its mounts and PATH do not change): made once
    roots = [*system_dirs(), *visible]
    entries = [str(b) for b in extra_bins]
    for entry in path.split(os.pathsep):
        if entry and os.path.isabs(entry) and _under(_abs(entry), roots):
            entries.append(entry)
    entries += list(SANDBOX_PATH_TAIL)
    return os.pathsep.join(dict.fromkeys(entries))


# -- is bubblewrap usable here? ------------------------------------------------------------


@dataclass(frozen=True)
class BwrapStatus:
    """Whether bubblewrap works on this machine, and if not, why (one line for the user)."""

    path: str | None
    usable: bool
    reason: str = ""


_status_cache: dict[tuple[str | None, JailUser | None], BwrapStatus] = {}

INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install "
    "bubblewrap) and allow unprivileged user namespaces"
)


def bwrap_status(user: JailUser | None = None) -> BwrapStatus:
    """Find ``bwrap`` on ``PATH`` and check, once per binary and jail user, that it can
    start a jail (as ``user`` through this process's :class:`Stage` when one is given)."""
    path = which("bwrap")
    cached = _status_cache.get((path, user))
    if cached is not None:
        return cached
    if path is None:
        status = BwrapStatus(None, False, f"bwrap is not on PATH; {INSTALL_HINT}")
    elif not sys.platform.startswith("linux"):
        status = BwrapStatus(path, False, "bubblewrap needs Linux")
    elif user is not None and missing_tools():
        status = BwrapStatus(
            path,
            False,
            f"the harness runs as root and must start the sandbox as {user.name} (uid "
            f"{user.uid}), which needs {', '.join(missing_tools())} (util-linux) on PATH",
        )
    else:
        status = _probe(path, user)
    _status_cache[(path, user)] = status
    return status


def _probe(path: str, user: JailUser | None) -> BwrapStatus:
    jail = Jail(ro=(), rw=(), chdir=Path("/"), env={"PATH": "/usr/bin:/bin"}, user=user)
    as_user = f" as {user.name} (uid {user.uid})" if user is not None else ""
    try:
        probe = subprocess.run(
            jail.argv(path, ["true"]),
            capture_output=True,
            timeout=_PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError, CodegenieEvalError) as exc:
        return BwrapStatus(path, False, f"{path} could not start{as_user}: {exc}")
    if probe.returncode == 0:
        return BwrapStatus(path, True)
    said = probe.stderr.decode("utf-8", "replace").strip().splitlines()
    why = said[-1] if said else f"exit code {probe.returncode}"
    return BwrapStatus(
        path, False, f"{path} cannot create namespaces here{as_user} ({why}); {INSTALL_HINT}"
    )
