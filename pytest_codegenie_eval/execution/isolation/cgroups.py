"""Cgroups that bound a whole child tree: how many processes it may have, and how much
memory all of them together may use.

``RLIMIT_NPROC`` does not bind a process whose real uid is root, and ``RLIMIT_AS`` is per
process (six children under a 300 MiB limit held 1,361 MiB between them). A pids and a
memory cgroup bind the tree as a whole, whoever it runs as. They are created only where the
harness may write the cgroup hierarchy (cgroup v1 controllers or a v2 unified tree that
delegates them); :meth:`ChildCgroups.shared` leaves a controller out elsewhere, and the
caller falls back to the rlimits and records that it did.

One set is made per harness process and limits, reused run after run (a SUT runs alone in
its worker) and removed at exit; :func:`sweep` removes those of harness processes that died
without cleaning up (an xdist worker ends without running atexit handlers).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Controller = Literal["pids", "memory"]
CGROUP_ROOT = Path("/sys/fs/cgroup")
_PREFIX = "codegenie-"


def _read(path: Path | str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return ""


def controller_base(controller: Controller) -> tuple[Path, bool] | None:
    """The cgroup this process is in for ``controller`` and whether it is cgroup v2 (the
    unified tree, where one directory holds every controller); ``None`` where there is none."""
    unified: Path | None = None
    for line in _read("/proc/self/cgroup").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, rel = rest.partition(":")
        if controller in controllers.split(","):
            base = CGROUP_ROOT / controller / rel.lstrip("/")
            return (base, False) if base.is_dir() else None
        if hierarchy == "0" and controllers == "":
            unified = CGROUP_ROOT / rel.lstrip("/")
    if unified is not None and controller in _read(unified / "cgroup.subtree_control").split():
        return unified, True
    return None


def sweep(base: Path, prefix: str = _PREFIX) -> None:
    """Remove the empty directories under ``base`` named ``<prefix><pid>-…`` whose harness
    process no longer exists (cgroups here, the staging mount points of the jail user's
    namespace too)."""
    for stale in base.glob(f"{prefix}*-*"):
        try:
            owner = int(stale.name[len(prefix) :].split("-")[0])
            os.kill(owner, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                stale.rmdir()
        except PermissionError:
            continue


def _make(base: Path, settings: dict[str, str]) -> Path | None:
    if not os.access(base, os.W_OK):
        return None
    sweep(base)
    directory = base / f"{_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
    try:
        directory.mkdir()
        for name, value in settings.items():
            (directory / name).write_text(value)
    except OSError:
        _remove_dir(directory)
        return None
    return directory


def _kill_all(directory: Path) -> None:
    for pid in _read(directory / "cgroup.procs").split():
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid), 9)


def _remove_dir(directory: Path) -> None:
    for _ in range(50):
        _kill_all(directory)
        try:
            directory.rmdir()
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)  # the kernel reaps killed tasks before the cgroup can go
            continue
        return


def _oom_kills(directory: Path, v2: bool) -> int:
    """How many processes the kernel's OOM killer has killed in this memory cgroup."""
    text = _read(directory / ("memory.events" if v2 else "memory.oom_control"))
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    if not v2:  # kernels before 4.13 have no oom_kill line: any failed charge counts
        failcnt = _read(directory / "memory.failcnt").strip()
        return int(failcnt) if failcnt.isdigit() else 0
    return 0


@dataclass
class ChildCgroups:
    """The pids and memory cgroups one harness process runs its untrusted children in."""

    pids: Path | None = None
    memory: Path | None = None
    memory_v2: bool = False
    _removed: bool = field(default=False, repr=False)

    @classmethod
    def create(cls, max_pids: int | None, memory_bytes: int | None) -> ChildCgroups:
        """Whatever of the two can be created here (either may be ``None``)."""
        made = cls()
        if not sys.platform.startswith("linux"):
            return made
        if max_pids is not None:
            found = controller_base("pids")
            if found is not None:
                made.pids = _make(found[0], {"pids.max": str(max_pids)})
        if memory_bytes is not None:
            found = controller_base("memory")
            if found is not None:
                base, v2 = found
                if v2 and made.pids is not None and made.pids.parent == base:
                    # one v2 cgroup holds both controllers: a process is in one place only
                    made.memory, made.memory_v2 = made.pids, True
                    try:
                        (made.pids / "memory.max").write_text(str(memory_bytes))
                        (made.pids / "memory.swap.max").write_text("0")
                    except FileNotFoundError:
                        pass  # no swap accounting
                    except OSError:
                        made.memory = None
                else:
                    name = "memory.max" if v2 else "memory.limit_in_bytes"
                    made.memory, made.memory_v2 = _make(base, {name: str(memory_bytes)}), v2
                    if made.memory is not None:
                        # swap counts too, where the kernel accounts for it
                        swap = "memory.swap.max" if v2 else "memory.memsw.limit_in_bytes"
                        with contextlib.suppress(OSError):
                            (made.memory / swap).write_text("0" if v2 else str(memory_bytes))
        return made

    @classmethod
    def shared(cls, max_pids: int | None, memory_bytes: int | None) -> ChildCgroups:
        """One set per process, thread and limits, made on first use and removed at exit:
        a set holds one attempt's processes at a time, so attempts running at once on
        several threads (``local:N``) each have their own limits and their own drain."""
        key = (os.getpid(), threading.get_ident(), max_pids, memory_bytes)
        known = _shared.get(key)
        if known is not None and not all(d.is_dir() for d in known.directories()):
            del _shared[key]  # removed behind our back: make a new one
            known = None
        if known is None:
            known = cls.create(max_pids, memory_bytes)
            atexit.register(known.remove)
            _shared[key] = known
        return known

    def directories(self) -> list[Path]:
        return list(dict.fromkeys(d for d in (self.pids, self.memory) if d is not None))

    def wrap(self, argv: list[str], then: str = "") -> list[str]:
        """``argv`` started from inside the cgroups: a shell moves itself in, runs the shell
        commands ``then`` (the ``ulimit`` commands of the child's limits), then execs."""
        procs = [str(d / "cgroup.procs") for d in self.directories()]
        if not procs:
            return list(argv)
        steps = [f'echo 0 > "${i + 1}"' for i in range(len(procs))]
        if then:
            steps.append(then)
        script = f'{" && ".join(steps)} && shift {len(procs)} && exec "$@"'
        return ["/bin/sh", "-c", script, "sh", *procs, *argv]

    def oom_kills(self) -> int:
        """The OOM kills so far in the memory cgroup (0 without one)."""
        return _oom_kills(self.memory, self.memory_v2) if self.memory is not None else 0

    def drain(self) -> None:
        """Kill whatever a finished run left in the cgroups."""
        for directory in self.directories():
            _kill_all(directory)

    def remove(self) -> None:
        """Kill whatever is left and delete the cgroups."""
        if self._removed:
            return
        for directory in self.directories():
            _remove_dir(directory)
        self._removed = True


_shared: dict[tuple[int, int, int | None, int | None], ChildCgroups] = {}
