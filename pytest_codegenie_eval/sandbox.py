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

import atexit
import contextlib
import functools
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SandboxMode = Literal["bwrap", "none"]
NetworkMode = Literal["none", "host"]
# How a child really ran, most isolated first (recorded on every case result).
Isolation = Literal["bwrap", "namespaces", "env-only", "in-process"]
ISOLATION_ORDER: tuple[Isolation, ...] = ("bwrap", "namespaces", "env-only", "in-process")

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
    return any(path == root or path.is_relative_to(root) for root in roots)


def system_dirs() -> tuple[Path, ...]:
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


def harness_package_dir() -> Path:
    """The directory of this package (the rubric imports ``pytest_codegenie_eval.rubric``)."""
    return _abs(Path(__file__).parent)


@dataclass(frozen=True)
class Jail:
    """Everything one sandboxed child may see and do (paths are identical inside and out).

    ``ro`` and ``rw`` are bind-mounted at their own paths; ``masks`` get an empty tmpfs
    (hiding, say, a task class's ``cases/`` behind a bound task class directory);
    ``scratch_bytes`` caps each private tmpfs (``/tmp`` and ``HOME``).
    """

    ro: tuple[Path, ...]
    rw: tuple[Path, ...]
    chdir: Path
    env: Mapping[str, str]
    network: NetworkMode = "none"
    masks: tuple[Path, ...] = ()
    scratch_bytes: int = 256 * 1024 * 1024

    def spawn_env(self) -> dict[str, str]:
        """The environment to start ``bwrap`` with: it passes it on unchanged."""
        return dict(self.env)

    def argv(self, bwrap: str, command: Sequence[str]) -> list[str]:
        """The ``bwrap`` command line running ``command`` inside this jail."""
        args = [
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
        args += ["--proc", "/proc", "--dev", "/dev"]
        size = str(self.scratch_bytes)
        args += ["--size", size, "--tmpfs", SANDBOX_TMP, "--size", size, "--tmpfs", SANDBOX_HOME]
        # parents before children, so a deeper bind is never hidden by a shallower one
        entries: list[tuple[int, int, str, Path]] = []
        bound_ro: list[Path] = []
        for order, path in enumerate(self.ro):
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
                args += [flag, str(path), str(path)]
        # nothing else is writable: the sandbox's own root tmpfs becomes read-only
        args += ["--remount-ro", "/", "--chdir", str(self.chdir), "--"]
        if os.path.exists(_ENV):
            # bwrap exports PWD after --chdir; the environment is exactly what was set
            args += [_ENV, "-u", "PWD"]
        return [*args, *command]


def ro_sources_that_exist(paths: Iterable[Path]) -> tuple[Path, ...]:
    """Keep the paths that exist (a bind of a missing source would fail the whole start)."""
    return tuple(p for p in _dedupe(_abs(p) for p in paths) if os.path.lexists(p))


def sandbox_path(extra_bins: Iterable[Path], visible: Iterable[Path]) -> str:
    """The ``PATH`` inside a sandbox: the interpreter's ``bin`` first, then the harness's
    entries that are visible inside, then the usual system directories."""
    roots = [*system_dirs(), *visible]
    entries = [str(b) for b in extra_bins]
    for entry in os.environ.get("PATH", "").split(os.pathsep):
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


_status_cache: dict[str | None, BwrapStatus] = {}

INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install "
    "bubblewrap) and allow unprivileged user namespaces"
)


def bwrap_status() -> BwrapStatus:
    """Find ``bwrap`` on ``PATH`` and check, once per binary, that it can start a jail."""
    path = shutil.which("bwrap")
    cached = _status_cache.get(path)
    if cached is not None:
        return cached
    if path is None:
        status = BwrapStatus(None, False, f"bwrap is not on PATH; {INSTALL_HINT}")
    elif not sys.platform.startswith("linux"):
        status = BwrapStatus(path, False, "bubblewrap needs Linux")
    else:
        jail = Jail(ro=(), rw=(), chdir=Path("/"), env={"PATH": "/usr/bin:/bin"})
        try:
            probe = subprocess.run(
                jail.argv(path, ["true"]),
                capture_output=True,
                timeout=_PROBE_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            status = BwrapStatus(path, False, f"{path} could not start: {exc}")
        else:
            if probe.returncode == 0:
                status = BwrapStatus(path, True)
            else:
                said = probe.stderr.decode("utf-8", "replace").strip().splitlines()
                why = said[-1] if said else f"exit code {probe.returncode}"
                status = BwrapStatus(
                    path,
                    False,
                    f"{path} cannot create namespaces here ({why}); {INSTALL_HINT}",
                )
    _status_cache[path] = status
    return status


# -- a pids cgroup: a process limit that also binds root -----------------------------------


@dataclass
class PidsCgroup:
    """A throw-away pids cgroup capping how many processes a child tree may have.

    ``RLIMIT_NPROC`` does not bind a process whose real uid is root (the kernel exempts
    it), and a sandbox started by root maps its user to root outside. A pids cgroup does.
    Created only where the harness may write the cgroup hierarchy; :meth:`create` returns
    ``None`` elsewhere, and the caller falls back to ``RLIMIT_NPROC``.
    """

    directory: Path
    _removed: bool = field(default=False, repr=False)

    @staticmethod
    def _base() -> Path | None:
        for line in _read("/proc/self/cgroup").splitlines():
            hierarchy, _, rest = line.partition(":")
            controllers, _, rel = rest.partition(":")
            if "pids" in controllers.split(","):
                base = Path("/sys/fs/cgroup/pids") / rel.lstrip("/")
                return base if base.is_dir() else None
            if hierarchy == "0" and controllers == "":
                unified = Path("/sys/fs/cgroup") / rel.lstrip("/")
                if "pids" in _read(str(unified / "cgroup.subtree_control")).split():
                    return unified
        return None

    @classmethod
    def create(cls, max_pids: int) -> PidsCgroup | None:
        if not sys.platform.startswith("linux"):
            return None
        base = cls._base()
        if base is None or not os.access(base, os.W_OK):
            return None
        _sweep(base)
        directory = base / f"codegenie-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            directory.mkdir()
            (directory / "pids.max").write_text(str(max_pids))
        except OSError:
            with contextlib.suppress(OSError):
                directory.rmdir()
            return None
        return cls(directory)

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """``argv`` started from inside the cgroup (a shell moves itself in, then execs)."""
        script = 'echo 0 > "$1" && shift && exec "$@"'
        return ["/bin/sh", "-c", script, "sh", str(self.directory / "cgroup.procs"), *argv]

    @classmethod
    def shared(cls, max_pids: int) -> PidsCgroup | None:
        """One cgroup per process and limit, reused run after run (a SUT runs alone in its
        worker) and removed at exit; ``None`` where none can be created."""
        key = (os.getpid(), max_pids)
        known = _shared.get(key)
        if known is not None and not known.directory.is_dir():
            del _shared[key]  # removed behind our back: make a new one
        if key not in _shared:
            cgroup = cls.create(max_pids)
            if cgroup is not None:
                atexit.register(cgroup.remove)
            _shared[key] = cgroup
        return _shared[key]

    def drain(self) -> None:
        """Kill whatever a finished run left in the cgroup."""
        for pid in _read(str(self.directory / "cgroup.procs")).split():
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid), 9)

    def remove(self) -> None:
        """Kill whatever is left in the cgroup and delete it."""
        if self._removed:
            return
        for _ in range(50):
            self.drain()
            try:
                self.directory.rmdir()
            except FileNotFoundError:
                break
            except OSError:
                _pause()
                continue
            break
        self._removed = True


_shared: dict[tuple[int, int], PidsCgroup | None] = {}


def _sweep(base: Path) -> None:
    """Remove the empty cgroups of harness processes that died without cleaning up (an
    xdist worker ends without running atexit handlers)."""
    for stale in base.glob("codegenie-*-*"):
        try:
            owner = int(stale.name.split("-")[1])
            os.kill(owner, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                stale.rmdir()
        except PermissionError:
            continue


def _pause() -> None:
    # waiting for the kernel to reap killed tasks before the cgroup can go
    time.sleep(0.01)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return ""
