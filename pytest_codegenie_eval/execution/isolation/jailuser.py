"""Who a jail runs as on the host, and how a root harness lets it see what it must.

bubblewrap maps the caller's uid into the jail, so a jail started by a root harness is host
uid 0 inside, and host uid 0 may write global sysctls under ``/proc/sys`` without any
capability (``kernel.core_pattern`` then runs a program of the agent's as host root). So
when the harness runs as root, every jail (the SUT's and the rubric's) is started as an
unprivileged host user, :data:`DEFAULT_JAIL_USER` unless the user names another
(``--codegenie-sandbox-user``). A harness that is not root starts jails as itself.

Started as that user, bubblewrap opens its bind sources with that user's permissions, so a
source below a ``0700`` directory (a venv or pyenv under ``/root``) could not be bound. A
:class:`Stage` solves this once per harness process: a helper process holds a private mount
namespace in which root bind-mounts each source into a ``0755`` staging tmpfs; each jail is
started inside that namespace as the user (one ``nsenter``) and binds from the staged paths
to the real ones. The staging mounts never reach the host's mount table
and vanish with the helper, which exits when the harness process does. What the jail reads
must still be readable by the user (:func:`unreadable_for` checks it before any case
starts), and what it writes is handed to it (:func:`give_to`).
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pytest_codegenie_eval import defaults
from pytest_codegenie_eval.errors import CodegenieEvalError
from pytest_codegenie_eval.execution.isolation.cgroups import sweep
from pytest_codegenie_eval.process import popen, release, run_owned

DEFAULT_JAIL_USER = defaults.JAIL_USER
# nobody:nogroup on Debian and most distributions; used when the name is not in passwd
NOBODY_ID = 65534
_TOOLS = ("unshare", "nsenter")
_STAGE_PREFIX = "codegenie-stage-"
_HELPER_TIMEOUT_S = 10.0


class JailUserError(CodegenieEvalError):
    """The host user jails should run as cannot be used."""


@dataclass(frozen=True)
class JailUser:
    """An unprivileged host user (and group) a root harness starts its jails as."""

    uid: int
    gid: int
    name: str

    def owns_or_may(self, info: os.stat_result, bits: int) -> bool:
        """Whether this user has every permission in ``bits`` (``0o4`` read, ``0o1``
        execute, ``0o2`` write, given for "other") on a file with ``info``."""
        if info.st_uid == self.uid:
            return info.st_mode & (bits << 6) == bits << 6
        if info.st_gid == self.gid:
            return info.st_mode & (bits << 3) == bits << 3
        return info.st_mode & bits == bits


def harness_is_root() -> bool:
    return os.geteuid() == 0


def resolve_jail_user(value: str | None) -> JailUser:
    """``NAME``, ``UID`` or ``UID:GID`` as a :class:`JailUser`; never root.

    The default, ``nobody``, is 65534:65534 where the name is not in the passwd database
    (a minimal container), so a fresh machine needs no user created.
    """
    text = (value or DEFAULT_JAIL_USER).strip()
    user_part, sep, group_part = text.partition(":")
    try:
        if user_part.isdigit():
            uid = int(user_part)
            try:
                entry = pwd.getpwuid(uid)
                name, gid = entry.pw_name, entry.pw_gid
            except KeyError:
                name, gid = user_part, uid
        else:
            try:
                entry = pwd.getpwnam(user_part)
            except KeyError:
                if user_part != DEFAULT_JAIL_USER:
                    raise JailUserError(
                        f"--codegenie-sandbox-user {text!r}: no user {user_part!r} on this "
                        "machine (name one, or give a numeric UID[:GID])"
                    ) from None
                uid = gid = NOBODY_ID
                name = DEFAULT_JAIL_USER
            else:
                uid, gid, name = entry.pw_uid, entry.pw_gid, entry.pw_name
        if sep:
            gid = int(group_part) if group_part.isdigit() else grp.getgrnam(group_part).gr_gid
    except (KeyError, ValueError, OverflowError):
        raise JailUserError(
            f"--codegenie-sandbox-user {text!r} is not NAME, UID or UID:GID of this machine"
        ) from None
    if uid == 0 or gid == 0:
        raise JailUserError(
            f"--codegenie-sandbox-user {text!r} is root: jails must run as an unprivileged "
            "user (a jail that is host root may rewrite the host's sysctls)"
        )
    return JailUser(uid, gid, name)


def default_jail_user() -> JailUser | None:
    """The user jails run as when nothing else is said: ``nobody`` for a root harness,
    ``None`` (the harness's own uid) otherwise."""
    return resolve_jail_user(None) if harness_is_root() else None


def missing_tools() -> list[str]:
    """The util-linux programs a uid drop needs that are not on ``PATH``."""
    return [tool for tool in _TOOLS if shutil.which(tool) is None]


# -- what the jail user may read, and what is handed to it ---------------------------------


def unreadable_for(user: JailUser, roots: Iterable[Path], *, limit: int = 50_000) -> str | None:
    """The first path under ``roots`` the user could not read (a file) or list and enter
    (a directory), or ``None``. Links are not followed (their targets are checked where they
    are roots of their own). At most ``limit`` entries are looked at per root."""
    for root in roots:
        seen = 0
        stack = [str(root)]
        while stack and seen < limit:
            current = stack.pop()
            try:
                info = os.lstat(current)
            except OSError:
                continue
            seen += 1
            if stat.S_ISLNK(info.st_mode):
                continue
            if stat.S_ISDIR(info.st_mode):
                if not user.owns_or_may(info, 0o5):
                    return current
                try:
                    with os.scandir(current) as listing:
                        stack.extend(entry.path for entry in listing)
                except OSError:
                    return current
            elif stat.S_ISREG(info.st_mode) and not user.owns_or_may(info, 0o4):
                return current
    return None


def hand_over(directory: Path, user: JailUser | None) -> None:
    """Make ``directory`` (not what is in it) the user's, or with ``None`` the harness's own
    again; nothing is changed when it already is."""
    uid, gid = (user.uid, user.gid) if user is not None else (os.geteuid(), os.getegid())
    info = directory.stat()
    if (info.st_uid, info.st_gid) != (uid, gid):
        os.chown(directory, uid, gid)


def give_to(user: JailUser, root: Path) -> None:
    """Make ``root`` and everything under it the user's (links themselves, never their
    targets), so a jail running as the user can write there."""
    os.lchown(root, user.uid, user.gid)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in (*dirnames, *filenames):
            os.lchown(os.path.join(dirpath, name), user.uid, user.gid)


def _walkable(user: JailUser, top: Path, path: Path) -> bool:
    """Whether ``user`` may enter every directory from ``top`` (excluded) down to ``path``'s
    parent."""
    for part in path.relative_to(top).parents:
        if part == Path("."):
            continue
        try:
            if not user.owns_or_may(os.stat(top / part), 0o1):
                return False
        except OSError:
            return False
    return True


# -- the staging namespace -----------------------------------------------------------------


def _traversable_by_all(path: Path) -> bool:
    for part in (path, *path.parents):
        try:
            if not os.stat(part).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def _stage_base() -> Path:
    """A directory every user can reach, for the staging mount point."""
    for candidate in (tempfile.gettempdir(), "/tmp", "/run", "/var/tmp"):
        path = Path(candidate)
        if path.is_dir() and os.access(path, os.W_OK) and _traversable_by_all(path):
            return path
    raise JailUserError(
        "no directory reachable by every user (tried $TMPDIR, /tmp, /run, /var/tmp) to stage "
        "the sandbox's mounts in"
    )


_STAGE_LOCK = threading.Lock()


class Stage:
    """A private mount namespace, held open by a helper process, holding a bind mount of
    every path a jail started as another user must be shown (see the module docstring).

    One per harness process (:meth:`for_process`); paths are staged on first use and the
    mount reused while the path is the same file (a path deleted and made anew is staged
    anew). ``containers`` are directories staged whole (the temporary directory that holds
    every run directory), so a new workspace below one costs nothing to stage.
    """

    def __init__(self, containers: Sequence[Path] = ()) -> None:
        base = _stage_base()
        sweep(base, _STAGE_PREFIX)  # those of harness processes that are gone
        self.directory = Path(tempfile.mkdtemp(prefix=f"{_STAGE_PREFIX}{os.getpid()}-", dir=base))
        self.directory.chmod(0o755)
        script = 'mount -t tmpfs -o mode=0755,size=1m codegenie-stage "$1" && echo ready && read _'
        argv = ["unshare", "--mount", "--propagation", "slave", "/bin/sh", "-c", script]
        self._helper = popen(  # the harness's own: no orphan hunt takes it for a stray
            [*argv, "sh", str(self.directory)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        assert self._helper.stdout is not None
        line = self._helper.stdout.readline()
        if line.strip() != b"ready":
            err = (
                self._helper.stderr.read().decode("utf-8", "replace") if self._helper.stderr else ""
            )
            self.close()
            raise JailUserError(f"the sandbox's staging namespace could not be made: {err.strip()}")
        self.namespace = f"/proc/{self._helper.pid}/ns/mnt"
        self._lock = threading.Lock()
        self._staged: dict[Path, tuple[Path, tuple[int, int]]] = {}
        self._count = 0
        self._staged_dirs: list[Path] = []
        self.stage(Path(os.path.realpath(directory)) for directory in containers)

    _instances: ClassVar[dict[int, Stage]] = {}

    @classmethod
    def for_process(cls) -> Stage:
        """This process's stage, made on first use (an xdist or Dask worker has its own)."""
        with _STAGE_LOCK:  # attempts on several threads (local:N) share one stage
            stage = cls._instances.get(os.getpid())
            if stage is None or not stage.alive():
                stage = cls(containers=(Path(tempfile.gettempdir()),))
                cls._instances[os.getpid()] = stage
                atexit.register(stage.close)
            return stage

    def alive(self) -> bool:
        return self._helper.poll() is None

    def prefix(self, user: JailUser) -> list[str]:
        """Run the rest of a command line inside the stage, as ``user`` (``nsenter`` sets
        the uid and gid after entering and drops every supplementary group: one exec does
        both)."""
        return [
            "nsenter",
            f"--mount={self.namespace}",
            f"--setuid={user.uid}",
            f"--setgid={user.gid}",
            "--",
        ]

    def source(self, path: Path, user: JailUser) -> Path:
        """Where a bind of ``path`` takes its source inside the stage: below an already
        staged directory (a container, or a task class directory holding a case) that is
        still the same directory and that ``user`` may walk down from, else staged on its
        own."""
        real = Path(os.path.realpath(path))
        if real in self._staged and self._current(real):
            return self._staged[real][0]
        above = sorted(
            (top for top in self._staged_dirs if real.is_relative_to(top)),
            key=lambda top: -len(top.parts),
        )
        for top in above:
            if self._current(top) and _walkable(user, top, real):
                return self._staged[top][0] / real.relative_to(top)
        self.stage([real])
        return self._staged[real][0]

    def _current(self, path: Path) -> bool:
        """Whether ``path`` is still the file it was when it was staged."""
        try:
            info = os.stat(path)
        except OSError:
            return False
        return self._staged[path][1] == (info.st_dev, info.st_ino)

    def stage(self, paths: Iterable[Path]) -> None:
        """Bind-mount each path (absolute and resolved) into the stage, once."""
        with self._lock:
            todo: list[tuple[Path, Path, tuple[int, int]]] = []
            for path in paths:
                info = os.stat(path)
                identity = (info.st_dev, info.st_ino)
                known = self._staged.get(path)
                if known is not None and known[1] == identity:
                    continue
                target = self.directory / str(self._count)
                self._count += 1
                todo.append((path, target, identity))
            if not todo:
                return
            commands = []
            args: list[str] = []
            for i, (path, target, _) in enumerate(todo):
                src, dst = 2 * i + 1, 2 * i + 2
                make = "mkdir" if path.is_dir() else ": >"
                commands.append(f'{make} "${dst}" && mount --bind "${src}" "${dst}"')
                args += [str(path), str(target)]
            enter = ["nsenter", f"--mount={self.namespace}", "--", "/bin/sh", "-c"]
            done = run_owned(
                [*enter, " && ".join(commands), "sh", *args], timeout=_HELPER_TIMEOUT_S
            )
            if done.returncode != 0:
                said = done.stderr.decode("utf-8", "replace").strip()
                raise JailUserError(f"could not stage {todo[0][0]} for the sandbox: {said}")
            for path, target, identity in todo:
                self._staged[path] = (target, identity)
                if path.is_dir() and path not in self._staged_dirs:
                    self._staged_dirs.append(path)

    def close(self) -> None:
        """End the helper (its namespace and every staging mount go with it)."""
        with contextlib.suppress(OSError):
            if self._helper.stdin is not None:
                self._helper.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._helper.wait(timeout=_HELPER_TIMEOUT_S)
        if self._helper.poll() is None:
            self._helper.kill()
            self._helper.wait()
        release(self._helper)
        for stream in (self._helper.stdout, self._helper.stderr):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        with contextlib.suppress(OSError):
            self.directory.rmdir()
