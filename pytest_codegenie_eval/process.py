"""Running a child process the harness does not trust: timeout, process-group kill, bounded
output, resource limits.

Both the SUT and the rubric go through :func:`run_process`. The child starts in its own
session, so a timeout (or its normal exit) kills every process it left behind, and stdout is
read with a hard cap so a runaway child cannot exhaust the harness's memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_CHUNK = 65536


# `python -I` keeps the environment out but also drops the script's own directory from
# sys.path (it implies -P), so a rubric could not import the helper module next to it.
# This bootstrap runs the script as __main__ with only that directory added back.
_SCRIPT_BOOTSTRAP = (
    "import os, runpy, sys; "
    "script = sys.argv[1]; sys.argv = sys.argv[1:]; "
    "sys.path.insert(0, os.path.dirname(os.path.abspath(script))); "
    "runpy.run_path(script, run_name='__main__')"
)


# The same, with the harness's own import root after the script's directory: a rubric then
# imports the very pytest_codegenie_eval the controller imported (a checkout run by pytest,
# not whatever is installed), as the task-class import child does.
# Before any of the script runs it applies the rlimits it is given (``RESOURCE=VALUE,…``, as
# prlimit would before exec'ing the interpreter, one process fewer to start) and drops the
# PWD bubblewrap exports, so the script's environment is exactly the allowlisted one.
_ROOTED_BOOTSTRAP = (
    "import os, resource, runpy, sys; "
    "limits, root, script = sys.argv[1], sys.argv[2], sys.argv[3]; sys.argv = sys.argv[3:]; "
    "[resource.setrlimit(int(w), (int(v), int(v))) "
    "for w, v in (p.split('=') for p in limits.split(',') if p)]; "
    "os.environ.pop('PWD', None); "
    "sys.path[:0] = [os.path.dirname(os.path.abspath(script)), root]; "
    "runpy.run_path(script, run_name='__main__')"
)


def which(program: str) -> str | None:
    """``shutil.which(program)``, looked up once per value of ``PATH`` (the harness asks
    for prlimit and bwrap for every child it starts)."""
    return _which(os.environ.get("PATH"), program)


@functools.lru_cache(maxsize=16)
def _which(path: str | None, program: str) -> str | None:
    return shutil.which(program, path=path)


def harness_package_dir() -> Path:
    """The directory of this package, as imported by this process (not resolved: a venv's
    paths must stay as the sandbox binds them)."""
    return Path(os.path.abspath(Path(__file__).parent))


def harness_import_root() -> Path:
    """The ``sys.path`` entry this process imported ``pytest_codegenie_eval`` from."""
    return harness_package_dir().parent


def isolated_script(
    script: Path | str,
    *args: str,
    with_harness: bool = False,
    limits: ResourceLimits | None = None,
) -> list[str]:
    """argv running ``script`` under ``python -I`` with its own directory importable, and
    with ``with_harness`` this process's own ``pytest_codegenie_eval`` (a rubric), its
    ``limits`` applied by the interpreter before the script runs."""
    if with_harness:
        root = str(harness_import_root())
        given = limits.as_argument() if limits is not None else ""
        return [sys.executable, "-I", "-c", _ROOTED_BOOTSTRAP, given, root, str(script), *args]
    return [sys.executable, "-I", "-c", _SCRIPT_BOOTSTRAP, str(script), *args]


# What an untrusted child (SUT, rubric, task-class import) inherits of the harness's
# environment: nothing that could carry a credential or a user identity.
CHILD_ENV_ALLOWLIST = ("PATH", "LANG", "LC_ALL", "TZ")


def allowlisted_environment() -> dict[str, str]:
    """The harness's :data:`CHILD_ENV_ALLOWLIST` variables (``PATH`` at least)."""
    env = {name: os.environ[name] for name in CHILD_ENV_ALLOWLIST if name in os.environ}
    env.setdefault("PATH", os.defpath)
    return env


def _within_hard_limit(which: int, value: int) -> int:
    """An unprivileged process cannot raise a hard limit it inherited: never ask to."""
    _soft, hard = resource.getrlimit(which)
    return value if hard == resource.RLIM_INFINITY else min(value, hard)


@dataclass(frozen=True)
class ResourceLimits:
    """rlimits applied in the child before exec (None leaves a limit as inherited)."""

    cpu_seconds: int | None = None
    address_space_bytes: int | None = None
    file_size_bytes: int | None = None
    processes: int | None = None

    def _values(self) -> tuple[tuple[str, int, int | None], ...]:
        return (
            ("--cpu", resource.RLIMIT_CPU, self.cpu_seconds),
            ("--as", resource.RLIMIT_AS, self.address_space_bytes),
            ("--fsize", resource.RLIMIT_FSIZE, self.file_size_bytes),
            ("--nproc", resource.RLIMIT_NPROC, self.processes),
        )

    def command_prefix(self) -> tuple[str, ...] | None:
        """``prlimit`` arguments applying these limits, or ``None`` without util-linux.

        Setting limits through a ``preexec_fn`` forces a full ``fork()`` of the harness
        (about 3.5 ms for a process with numpy loaded, against 0.7 ms for the ``vfork``
        path); exec'ing ``prlimit`` first costs about 0.8 ms.
        """
        tool = which("prlimit")
        if tool is None:
            return None
        args = [tool]
        for flag, resource_id, value in self._values():
            if value is not None:
                capped = _within_hard_limit(resource_id, value)
                args.append(f"{flag}={capped}:{capped}")
        return (*args, "--")

    def shell_commands(self) -> str | None:
        """These limits as ``/bin/sh`` ``ulimit`` commands joined by ``&&`` (``""`` for none),
        for a shell that starts the child anyway (the cgroup wrapper), so no ``prlimit`` is
        started; ``None`` where this machine's shell cannot set every one of them (probed
        once: each value read back, soft and hard, from ``/proc/self/limits``)."""
        flags = _shell_limit_flags()
        if flags is None:
            return None
        commands = []
        for _flag, which, value in self._values():
            if value is not None:
                flag, unit = flags[which]
                capped = _within_hard_limit(which, value)
                commands.append(f"ulimit -{flag} {capped // unit}")
        return " && ".join(commands)

    def as_argument(self) -> str:
        """The limits as ``RESOURCE=VALUE`` pairs joined by commas (the rubric bootstrap's
        first argument), each within the hard limit this process inherited."""
        return ",".join(
            f"{which}={_within_hard_limit(which, value)}"
            for _flag, which, value in self._values()
            if value is not None
        )

    def preexec(self) -> Callable[[], None]:
        def apply() -> None:
            for _flag, which, value in self._values():
                if value is not None:
                    cap = _within_hard_limit(which, value)
                    resource.setrlimit(which, (cap, cap))

        return apply


# How /bin/sh's ``ulimit`` names each limit and in what unit it counts (POSIX fixes only
# ``-f``, in 512-byte blocks; dash, bash as ``sh`` and busybox agree on -t, -v in KiB and -f,
# and differ on the process count: -p in dash and busybox, -u in bash).
_SHELL_LIMITS: dict[int, tuple[str, int]] = {
    resource.RLIMIT_CPU: ("t", 1),
    resource.RLIMIT_AS: ("v", 1024),
    resource.RLIMIT_FSIZE: ("f", 512),
}
_LIMITS_FILE_ROWS = {
    resource.RLIMIT_CPU: "Max cpu time",
    resource.RLIMIT_AS: "Max address space",
    resource.RLIMIT_FSIZE: "Max file size",
    resource.RLIMIT_NPROC: "Max processes",
}


@functools.cache
def _shell_limit_flags() -> dict[int, tuple[str, int]] | None:
    """The ``ulimit`` flag and unit for each limit :class:`ResourceLimits` sets, as this
    machine's ``/bin/sh`` applies them, or ``None`` if it does not set them all exactly."""
    if not sys.platform.startswith("linux") or not os.access("/bin/sh", os.X_OK):
        return None
    wanted = {
        resource.RLIMIT_CPU: 7,
        resource.RLIMIT_AS: 1 << 32,
        resource.RLIMIT_FSIZE: 1 << 21,
        resource.RLIMIT_NPROC: 4093,
    }
    wanted = {which: _within_hard_limit(which, value) for which, value in wanted.items()}
    for nproc in ("p", "u"):
        flags = {**_SHELL_LIMITS, resource.RLIMIT_NPROC: (nproc, 1)}
        script = " && ".join(
            f"ulimit -{flags[which][0]} {value // flags[which][1]}"
            for which, value in wanted.items()
        )
        try:
            probe = subprocess.run(
                ["/bin/sh", "-c", f"{script} && exec cat /proc/self/limits"],
                capture_output=True,
                timeout=10,
                check=False,
                env={"PATH": os.defpath},
            )
        except (OSError, subprocess.SubprocessError):
            return None
        if probe.returncode == 0 and _limits_read_back(probe.stdout, wanted):
            return flags
    return None


def _limits_read_back(table: bytes, wanted: Mapping[int, int]) -> bool:
    """Whether ``/proc/<pid>/limits`` text holds each wanted value as soft and hard limit."""
    rows = {}
    for line in table.decode("ascii", "replace").splitlines():
        for which, label in _LIMITS_FILE_ROWS.items():
            if line.startswith(label):
                rows[which] = line[len(label) :].split()[:2]
    return all(rows.get(which) == [str(value)] * 2 for which, value in wanted.items())


@dataclass(frozen=True)
class ProcessResult:
    """What a child process did."""

    returncode: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool
    stdout_truncated: bool
    duration_s: float
    spawn_error: str | None = None
    stopped: str | None = None  # why ``watch`` stopped the child, if it did


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


_PR_SET_CHILD_SUBREAPER = 36
_subreaper: bool | None = None


def _become_subreaper() -> bool:
    """Make this process the subreaper of its descendants (Linux), once.

    A grandchild that calls ``setsid()`` leaves the child's process group, so killing the
    group misses it. As a subreaper, such orphans are re-parented to this process when
    their parent dies, where :func:`_kill_orphans` finds and kills them.
    """
    global _subreaper
    if _subreaper is None:
        _subreaper = False
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                libc = ctypes.CDLL(None, use_errno=True)
                _subreaper = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    return _subreaper


_UNSHARE = (
    "--user",
    "--map-root-user",
    "--pid",
    "--fork",
    "--mount-proc",
    "--kill-child",
)
_sandbox_prefix: tuple[str, ...] | None = None


def sandbox_prefix() -> tuple[str, ...]:
    """A command prefix that runs a child in fresh user, PID and mount namespaces, or ``()``.

    Inside them the child sees its own ``/proc`` holding only its own processes, so it
    cannot read the harness's environment through ``/proc/<ppid>/environ``, and everything
    it starts dies with it. Probed once; where unprivileged namespaces are unavailable the
    prefix is empty and isolation falls back to the scrubbed environment alone.
    """
    global _sandbox_prefix
    if _sandbox_prefix is None:
        _sandbox_prefix = ()
        unshare = shutil.which("unshare")
        if unshare and sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                probe = subprocess.run(
                    [unshare, *_UNSHARE, "true"], capture_output=True, timeout=10, check=False
                )
                if probe.returncode == 0:
                    _sandbox_prefix = (unshare, *_UNSHARE)
    return _sandbox_prefix


def _insert_before_program(argv: Sequence[str], prefix: tuple[str, ...]) -> list[str]:
    """Put ``prefix`` after a sandbox prefix (so limits apply inside it) and before the
    program itself."""
    sandbox = _sandbox_prefix or ()
    if sandbox and tuple(argv[: len(sandbox)]) == sandbox:
        return [*sandbox, *prefix, *argv[len(sandbox) :]]
    return [*prefix, *argv]


def _children() -> set[int]:
    """PIDs whose parent is this process (empty where /proc does not tell)."""
    found: set[int] = set()
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return found
    for task in tasks:
        # /proc/<pid>/task/<tid>/children: direct children started by that thread
        try:
            with open(f"/proc/self/task/{task}/children", "rb") as fh:
                found.update(int(pid) for pid in fh.read().split())
        except OSError:
            continue
    return found


# The children the harness started and has not reaped yet, from any thread (``local:N``
# runs attempts on several): never taken for an orphan. A child is counted under the lock
# it is started under, and the orphan hunt lists children under that lock too, so no child
# is ever seen started but not yet counted.
_SPAWN_LOCK = threading.RLock()
_OWNED: set[int] = set()


def popen(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """:class:`subprocess.Popen`, the child counted as the harness's own until
    :func:`release` (call it once the child is reaped)."""
    with _SPAWN_LOCK:
        proc: subprocess.Popen[bytes] = subprocess.Popen(list(argv), **kwargs)
        _OWNED.add(proc.pid)
    return proc


def release(proc: subprocess.Popen[bytes]) -> None:
    """The harness has reaped ``proc``: stop counting it as its own."""
    with _SPAWN_LOCK:
        _OWNED.discard(proc.pid)


def run_owned(
    argv: Sequence[str], *, timeout: float, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """:func:`subprocess.run` with captured output, through :func:`popen` (so another
    thread's orphan hunt leaves it alone)."""
    proc = popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise
    finally:
        proc.wait()
        release(proc)
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def _kill_orphans(before: set[int]) -> None:
    """Kill and reap every child that appeared during the run and that the harness did not
    start (re-parented orphans). With attempts running at once on several threads, an
    orphan of another attempt that is still running is one too, and dies now rather than
    when that attempt ends: orphans only reach the harness from a SUT or rubric run
    without a PID namespace (bubblewrap's and unshare's keep them inside)."""
    for _ in range(20):  # each round may re-parent the next generation
        with _SPAWN_LOCK:
            strays = _children() - before - _OWNED
            if not strays:
                return
            for pid in strays:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            for pid in strays:
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, 0)


def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdin: bytes = b"",
    timeout_s: float,
    max_stdout: int = 16 * 1024 * 1024,
    max_stderr: int = 64 * 1024,
    limits: ResourceLimits | None = None,
    watch: Callable[[], str | None] | None = None,
    watch_every_s: float = 1.0,
    on_start: Callable[[int], None] | None = None,
    after: tuple[float, Callable[[], None]] | None = None,
) -> ProcessResult:
    """Run ``argv`` to completion or timeout; never raises for the child's behaviour.

    stdout beyond ``max_stdout`` kills the child and sets ``stdout_truncated``; stderr keeps
    only its last ``max_stderr`` bytes. On exit or timeout the whole process group is killed.
    ``watch`` is called about every ``watch_every_s`` while the child runs; a message it
    returns kills the child and becomes ``stopped`` (a workspace growing past its cap).
    ``on_start`` is told the child's pid as soon as it runs. ``after`` is ``(seconds,
    callback)``: the callback is called once, in this thread, when the child has run that
    long (never if it ends sooner).
    """
    started = start_process(argv, cwd=cwd, env=env, limits=limits, on_start=on_start)
    if isinstance(started, ProcessResult):
        return started
    return started.finish(
        stdin=stdin,
        timeout_s=timeout_s,
        max_stdout=max_stdout,
        max_stderr=max_stderr,
        watch=watch,
        watch_every_s=watch_every_s,
        after=after,
    )


def start_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    limits: ResourceLimits | None = None,
    on_start: Callable[[int], None] | None = None,
) -> StartedProcess | ProcessResult:
    """Start ``argv`` now and drive it later (:meth:`StartedProcess.finish`): a child that
    can get going (an interpreter starting, its imports) while the harness does something
    else, and is given its input when that is done. A :class:`ProcessResult` when it could
    not be started."""
    reaping = _become_subreaper()
    with _SPAWN_LOCK:
        before = _children() if reaping else set()
    preexec = None
    if limits is not None:
        prefix = limits.command_prefix()
        if prefix is None:
            preexec = limits.preexec()
        else:
            argv = _insert_before_program(argv, prefix)
    try:
        proc = popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=preexec,
        )
    except OSError as exc:
        return ProcessResult(None, b"", b"", False, False, 0.0, f"{type(exc).__name__}: {exc}")
    if proc.stdin is None or proc.stdout is None or proc.stderr is None:  # pragma: no cover
        raise RuntimeError("pipes were not created")
    if on_start is not None:
        on_start(proc.pid)
    return StartedProcess(proc, before if reaping else None)


class StartedProcess:
    """A child :func:`start_process` started; :meth:`finish` runs it to its end (the
    timeout counts from then), :meth:`kill` ends it unused."""

    def __init__(self, proc: subprocess.Popen[bytes], before: set[int] | None) -> None:
        self.proc = proc
        self._before = before
        self._done = False

    def kill(self) -> None:
        """End the child and everything it started, unused (idempotent)."""
        if self._done:
            return
        self._done = True
        self._reap()

    def _reap(self) -> int:
        """Kill the child's group, close its pipes, reap it and whatever it left; its exit
        status."""
        proc = self.proc
        _kill_group(proc)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        returncode = proc.wait()
        release(proc)
        if self._before is not None:
            _kill_orphans(self._before)
        return returncode

    def finish(
        self,
        *,
        stdin: bytes = b"",
        timeout_s: float,
        max_stdout: int = 16 * 1024 * 1024,
        max_stderr: int = 64 * 1024,
        watch: Callable[[], str | None] | None = None,
        watch_every_s: float = 1.0,
        after: tuple[float, Callable[[], None]] | None = None,
    ) -> ProcessResult:
        """Give the child ``stdin`` and run it to completion or timeout (as
        :func:`run_process` does)."""
        if self._done:
            raise RuntimeError("the process was finished or killed already")
        self._done = True
        proc = self.proc
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        started = time.monotonic()
        deadline = started + timeout_s
        out = bytearray()
        err = bytearray()
        truncated = False
        timed_out = False
        pending = memoryview(stdin)
        sel = selectors.DefaultSelector()
        os.set_blocking(proc.stdout.fileno(), False)
        os.set_blocking(proc.stderr.fileno(), False)
        sel.register(proc.stdout, selectors.EVENT_READ, "out")
        sel.register(proc.stderr, selectors.EVENT_READ, "err")
        if pending:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin, selectors.EVENT_WRITE, "in")
        else:
            proc.stdin.close()
        exited_at: float | None = None
        stopped: str | None = None
        next_watch = started + watch_every_s
        call_at, callback = (started + after[0], after[1]) if after is not None else (0.0, None)

        def due(now: float) -> float:
            """Call ``after``'s callback if it is due; seconds until it is (inf once called)."""
            nonlocal callback
            if callback is None:
                return math.inf
            if now < call_at:
                return call_at - now
            call, callback = callback, None
            call()
            return math.inf

        try:
            while sel.get_map() and not truncated:
                now = time.monotonic()
                if now >= deadline:
                    timed_out = proc.poll() is None
                    break
                if watch is not None and exited_at is None and now >= next_watch:
                    next_watch = now + watch_every_s
                    stopped = watch()
                    if stopped is not None:
                        break
                if exited_at is None and proc.poll() is not None:
                    exited_at = now
                    # the child is gone: anything still holding its pipes is a straggler
                    _kill_group(proc)
                wait = min(deadline - now, 0.05 if exited_at is None else 0.5)
                if exited_at is None:
                    wait = min(wait, due(now))
                events = sel.select(wait)
                if not events and exited_at is not None and now - exited_at > 0.5:
                    break
                for key, _mask in events:
                    if key.data == "in":
                        try:
                            written = os.write(key.fd, pending[:_CHUNK])
                            pending = pending[written:]
                        except (BrokenPipeError, BlockingIOError) as exc:
                            if isinstance(exc, BrokenPipeError):
                                pending = pending[len(pending) :]
                        if not pending:
                            sel.unregister(key.fileobj)
                            with contextlib.suppress(BrokenPipeError):
                                proc.stdin.close()
                        continue
                    try:
                        chunk = os.read(key.fd, _CHUNK)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    if key.data == "out":
                        out += chunk
                        if len(out) > max_stdout:
                            truncated = True
                            del out[max_stdout:]
                            break
                    else:
                        err += chunk
                        if len(err) > 2 * max_stderr:
                            del err[: len(err) - max_stderr]
            # The pipes reached EOF, but the child may still be exiting (a group kill now would
            # turn a clean exit 0 into -9) or may have closed its streams and gone on working:
            # either way it has until the deadline, watched as before.
            while not (timed_out or truncated or stopped is not None) and proc.poll() is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=min(left, watch_every_s, due(time.monotonic())))
                if watch is not None and proc.poll() is None:
                    stopped = watch()
        finally:
            sel.close()
            returncode = self._reap()
        if timed_out or truncated or stopped is not None:
            returncode_out: int | None = None
        else:
            returncode_out = returncode
        return ProcessResult(
            returncode=returncode_out,
            stdout=bytes(out),
            stderr=bytes(err[-max_stderr:]),
            timed_out=timed_out,
            stdout_truncated=truncated,
            duration_s=time.monotonic() - started,
            stopped=stopped,
        )


def tail(data: bytes | str, limit: int = 4000) -> str:
    """The last ``limit`` characters of a stream, decoded leniently."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    return text if len(text) <= limit else "…" + text[-limit:]
