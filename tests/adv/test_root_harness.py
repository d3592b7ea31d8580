"""The sandbox holds when the harness runs as root (as CI does here), and when it does not.

Every attack runs with its defence off, where it must work, and with it on, where it must
fail. No test writes a host sysctl or leaves a mount behind: a write that would succeed is
shown by opening the file for writing and closing it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_codegenie_eval import defaults
from pytest_codegenie_eval.execution.isolation.jailuser import (
    JailUser,
    Stage,
    default_jail_user,
    resolve_jail_user,
)
from pytest_codegenie_eval.execution.isolation.sandbox import Jail, bwrap_status, python_prefixes
from pytest_codegenie_eval.execution.sut import SutLimits, SutPolicy, SutSpec, run_sut
from pytest_codegenie_eval.models import BenchCase
from tests.conftest import CHILD_ADDOPTS, REPO, copy_stub

ROOT = os.geteuid() == 0
NOBODY = resolve_jail_user(None)

if not bwrap_status(default_jail_user()).usable and not os.environ.get("CI"):
    pytest.skip(
        f"the SUT sandbox is unavailable: {bwrap_status(default_jail_user()).reason}",
        allow_module_level=True,
    )

needs_root = pytest.mark.skipif(not ROOT, reason="shows what a root harness would give away")

# Opens each path for writing and closes it at once (never writes), printing errno or "open".
_PROBE = """\
import json, os, sys
found = {}
for path in sys.argv[1:]:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        found[path] = exc.errno
    else:
        os.close(fd)
        found[path] = "open"
print(json.dumps(found))
"""
CORE_PATTERN = "/proc/sys/kernel/core_pattern"


def _jail(user: JailUser | None, *, readonly_proc: bool = True, **kw: Any) -> Jail:
    return Jail(
        ro=tuple(python_prefixes()),
        rw=kw.pop("rw", ()),
        chdir=kw.pop("chdir", Path("/")),
        env={"PATH": "/usr/bin:/bin"},
        user=user,
        readonly_proc=readonly_proc,
        **kw,
    )


def _run(jail: Jail, code: str, *args: str, argv: list[str] | None = None) -> Any:
    bwrap = bwrap_status(jail.user).path
    assert bwrap is not None
    command = argv or jail.argv(bwrap, [sys.executable, "-I", "-c", code, *args])
    done = subprocess.run(
        command, env=jail.spawn_env(), capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- escape to host root through /proc/sys ---------------------------------------------------


@needs_root
def test_a_root_jail_could_open_core_pattern_and_each_defence_alone_stops_it() -> None:
    # defence off: the jail is host uid 0 and /proc/sys is writable, --cap-drop ALL or not
    assert _run(_jail(None, readonly_proc=False), _PROBE, CORE_PATTERN) == {CORE_PATTERN: "open"}
    # the uid drop alone: permission denied
    dropped = _run(_jail(NOBODY, readonly_proc=False), _PROBE, CORE_PATTERN)
    assert dropped == {CORE_PATTERN: 13}
    # the read-only /proc/sys alone: read-only file system
    assert _run(_jail(None), _PROBE, CORE_PATTERN) == {CORE_PATTERN: 30}
    # both, as every jail of a root harness gets by default
    assert _run(_jail(default_jail_user()), _PROBE, CORE_PATTERN)[CORE_PATTERN] != "open"


_WALK_PROC = """\
import json, os
opened = []
for top, dirs, files in os.walk("/proc"):
    if top == "/proc":
        dirs[:] = [d for d in dirs if not d.isdigit() and d not in ("self", "thread-self")]
    for name in files:
        path = os.path.join(top, name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            continue
        os.close(fd)
        opened.append(path)
print(json.dumps({"opened": opened, "sys": os.path.exists("/sys/kernel")}))
"""


def test_no_procfs_or_sysfs_knob_is_writable_in_a_default_jail() -> None:
    found = _run(_jail(default_jail_user()), _WALK_PROC)
    assert found == {"opened": [], "sys": False}


def test_the_sut_runs_as_the_jail_user_and_its_files_are_that_users(tmp_path: Path) -> None:
    code = f"open('owner-probe', 'w').close()\nexec({_PROBE!r})"
    spec = SutSpec("command", "probe", "d", (sys.executable, "-I", "-c", code, CORE_PATTERN))
    run, workspace = _run_sut(tmp_path, spec, SutPolicy())
    expected = NOBODY.uid if ROOT else os.geteuid()
    assert run.isolation == "bwrap"
    assert run.jail_uid == expected
    assert (workspace / "owner-probe").stat().st_uid == expected
    assert json.loads(run.stdout)[CORE_PATTERN] != "open"
    if ROOT:
        # the attack, live, with both defences off (a test-only policy)
        unsafe = SutPolicy(jail_user=None, readonly_proc=False)
        run, workspace = _run_sut(tmp_path / "unsafe", spec, unsafe)
        assert json.loads(run.stdout)[CORE_PATTERN] == "open"
        assert (workspace / "owner-probe").stat().st_uid == 0


def _run_sut(base: Path, spec: SutSpec, policy: SutPolicy, timeout: float = 60) -> Any:
    run_dir = Path(tempfile.mkdtemp(prefix="codegenie-test-"))
    workspace = run_dir / "workspace"
    workspace.mkdir()
    case = BenchCase(
        case_id="c1",
        title="t",
        curation_class="held-out",
        cassette_canary_pin="00ff00ff00ff00ff",
        sut_timeout_s=timeout,
    )
    run = run_sut(spec, case=case, workspace=workspace, env={}, policy=policy, run_dir=run_dir)
    kept = base / "run"
    base.mkdir(parents=True, exist_ok=True)
    shutil.move(str(run_dir), kept)
    return run, kept / "workspace"


_PROBING_RUBRIC = """\
import json, os
from pytest_codegenie_eval.rubric import serve

def score(case, out):
    try:
        fd = os.open("/proc/sys/kernel/core_pattern", os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        found = exc.errno
    else:
        os.close(fd)
        found = "open"
    detail = json.dumps({"core_pattern": found})
    return {"score": 1.0, "breakdown": {},
            "failure_modes": [{"code": "answer.extra_files", "detail": detail}]}

if __name__ == "__main__":
    serve(score)
"""


def test_the_rubric_jail_cannot_open_core_pattern_either(pytester: pytest.Pytester) -> None:
    bench = copy_stub(pytester.path)
    (bench / "rubric.py").write_text(_PROBING_RUBRIC)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--codegenie-bench=stub", "-k", "alpha",
        "--codegenie-rubric-sandbox=bwrap",
    )  # fmt: skip
    reports = sorted((pytester.path / ".codegenie" / "eval" / "runs").glob("*.json"))
    (case,) = json.loads(reports[-1].read_text())["cases"]
    assert case["rubric_isolation"] == "bwrap", result.stdout.str()
    (mode,) = [fm for fm in case["failure_modes"] if fm["code"] == "answer.extra_files"]
    assert json.loads(mode["detail"])["core_pattern"] in (13, 30)


# -- /dev is bounded ------------------------------------------------------------------------

_FILL_DEV = """\
import errno, json, os
out = {}
try:
    with open("/dev/evil", "w") as handle:
        handle.write("x")
    out["dev"] = "open"
except OSError as exc:
    out["dev"] = exc.errno
written = 0
try:
    with open("/dev/shm/fill", "wb") as handle:
        for _ in range(32):
            handle.write(b"x" * 1024 * 1024)
            handle.flush()
            written += 1
except OSError as exc:
    out["shm_error"] = exc.errno
out["shm_mib"] = written
print(json.dumps(out))
"""


def test_dev_is_read_only_and_dev_shm_is_capped() -> None:
    jail = _jail(default_jail_user(), scratch_bytes=8 * 1024 * 1024)
    bwrap = bwrap_status(jail.user).path
    assert bwrap is not None
    argv = jail.argv(bwrap, [sys.executable, "-I", "-c", _FILL_DEV])
    # defence off: bwrap's plain --dev (an unsized, writable tmpfs)
    at = argv.index("--dev") + 2
    bounds = ["--size", str(jail.scratch_bytes), "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
    assert argv[at : at + len(bounds)] == bounds
    plain = argv[:at] + argv[at + len(bounds) :]
    assert _run(jail, "", argv=plain) == {"dev": "open", "shm_mib": 32}
    capped = _run(jail, "", argv=argv)
    assert capped["dev"] == 30  # read-only file system
    assert capped["shm_error"] == 28  # no space left on device
    assert capped["shm_mib"] <= 8


def test_scratch_space_counts_tmp_home_and_shm_together(tmp_path: Path) -> None:
    # 40 MiB in each of three private mounts: under a 100 MiB cap one by one, not together
    code = textwrap.dedent(
        """\
        import os, time
        for d in ("/tmp", "/dev/shm", os.environ["HOME"]):
            with open(os.path.join(d, "fill"), "wb") as f:
                f.write(b"x" * 40 * 1024 * 1024)
        print("filled", flush=True)
        time.sleep(20)
        """
    )
    spec = SutSpec("command", "fill", "d", (sys.executable, "-I", "-c", code))
    policy = SutPolicy(limits=SutLimits(max_workspace_mb=100))
    run, _ = _run_sut(tmp_path, spec, policy)
    assert run.stdout.strip() == "filled"
    assert not run.timed_out
    assert run.workspace_overflow is not None
    assert "private /tmp, HOME and /dev/shm grew to 120" in run.workspace_overflow


# -- the number of files ---------------------------------------------------------------------

_MAKE_FILES = """\
import sys, time
n = int(sys.argv[1])
for i in range(n):
    open(f"f{i}", "w").close()
print("made", n, flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_a_sut_making_too_many_files_is_stopped_before_the_harness_walks_them(
    tmp_path: Path,
) -> None:
    # defence off (a limit no SUT reaches): nothing stops 30,000 files
    spec = SutSpec("command", "files", "d", (sys.executable, "-I", "-c", _MAKE_FILES, "30000", "0"))
    free = SutPolicy(limits=SutLimits(max_files=10**9))
    run, workspace = _run_sut(tmp_path / "free", spec, free)
    assert run.workspace_overflow is None
    assert len(os.listdir(workspace)) == 30000
    # the limit stops 300,000 files, typed, and the harness counts no further. The default
    # limit (200,000) works the same way; a smaller one spares the test making 200,000 files
    assert SutPolicy().limits.max_files == defaults.SUT_MAX_FILES == 200_000
    spec = SutSpec(
        "command", "files", "d", (sys.executable, "-I", "-c", _MAKE_FILES, "300000", "30")
    )
    capped = SutPolicy(limits=SutLimits(max_files=20_000))
    run, workspace = _run_sut(tmp_path / "capped", spec, capped, timeout=120)
    assert not run.timed_out
    assert run.workspace_overflow is not None
    assert "more than 20000 files" in run.workspace_overflow
    assert "--codegenie-sut-max-files" in run.workspace_overflow
    assert len(os.listdir(workspace)) < 300000


# -- the user the jails run as ----------------------------------------------------------------


@needs_root
def test_an_unreadable_task_class_file_is_a_usage_error_naming_it(
    pytester: pytest.Pytester,
) -> None:
    bench = copy_stub(pytester.path)
    secret = bench / "rubric.py"
    secret.chmod(0o600)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--codegenie-bench=stub")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"cannot read {secret}" in err
    assert "--codegenie-sandbox-user" in err
    assert not (pytester.path / ".codegenie" / "eval" / "runs").exists()
    # readable again (the file's own mode is what counts, not the private tmp above it)
    secret.chmod(0o644)
    assert (
        pytester.runpytest_subprocess("-p", "no:cacheprovider", "--codegenie-bench=stub").ret == 0
    )


@needs_root
def test_the_staging_namespace_leaves_nothing_on_the_host() -> None:
    before = Path("/proc/self/mountinfo").read_text()
    stage = Stage(containers=(Path(tempfile.gettempdir()),))
    try:
        staged = stage.source(Path(sys.base_prefix), NOBODY)
        assert staged.parent == stage.directory
        assert not any(stage.directory.iterdir())  # on the host: an empty directory
        # asked again, the staged mount is reused
        again = stage.source(Path(sys.base_prefix), NOBODY)
        assert again == staged
    finally:
        stage.close()
    assert Path("/proc/self/mountinfo").read_text() == before
    assert not stage.directory.exists()


# -- a harness that is not root ---------------------------------------------------------------


def _as_unprivileged(command: list[str], cwd: Path, env: dict[str, str]) -> list[str]:
    """``command`` run as nobody from root, with every directory the interpreter and the
    checkout need made reachable in a private mount namespace (a pyenv under a 0700 /root, a
    checkout cloned into a 0700 temporary directory): the first directory on the way that
    nobody may not enter gets a 0755 tmpfs with all its entries bound back into it (each
    keeps its own permissions)."""
    needed = [*python_prefixes(), REPO, cwd]
    blocked: set[Path] = set()
    for path in needed:
        for part in [*reversed(path.parents), path]:
            if part != Path("/") and not os.stat(part).st_mode & stat.S_IXOTH:
                blocked.add(part)
                break
    script = ['mount -t tmpfs -o mode=0755 tmpfs "$STAGE"']
    for i, directory in enumerate(sorted(blocked)):
        entries = sorted(directory.iterdir())
        for j, entry in enumerate(entries):
            if not entry.is_symlink():
                make = "mkdir" if entry.is_dir() else ": >"
                script.append(f'{make} "$STAGE/{i}-{j}" && mount --bind "{entry}" "$STAGE/{i}-{j}"')
        script.append(f'mount -t tmpfs -o mode=0755 tmpfs "{directory}"')
        for j, entry in enumerate(entries):
            if entry.is_symlink():
                script.append(f'ln -s "{os.readlink(entry)}" "{entry}"')
            else:
                make = "mkdir" if entry.is_dir() else ": >"
                script.append(f'{make} "{entry}" && mount --bind "$STAGE/{i}-{j}" "{entry}"')
    script.append(
        f'cd "{cwd}" && exec setpriv --reuid={NOBODY.uid} --regid={NOBODY.gid} --clear-groups "$@"'
    )
    stage = tempfile.mkdtemp(prefix="codegenie-test-stage-")
    env["STAGE"] = stage
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        " && ".join(script),
        "sh",
        *command,
    ]


@pytest.fixture
def unprivileged_project() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="codegenie-nobody-"))
    try:
        copy_stub(root)
        for dirpath, dirnames, filenames in os.walk(root):
            for name in (*dirnames, *filenames):
                os.lchown(os.path.join(dirpath, name), NOBODY.uid, NOBODY.gid)
        os.chown(root, NOBODY.uid, NOBODY.gid)
        root.chmod(0o755)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@needs_root
def test_a_harness_that_is_not_root_runs_its_jails_as_itself(unprivileged_project: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(unprivileged_project),
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
    }
    python = str(Path(sys.executable))
    argv = _as_unprivileged(
        [python, "-m", "pytest", "-p", "no:cacheprovider", *CHILD_ADDOPTS.split(),
         "--codegenie-bench=stub", "--codegenie-require-sandbox", "-q",
         f"--rootdir={unprivileged_project}"],
        unprivileged_project,
        env,
    )  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    shutil.rmtree(env["STAGE"], ignore_errors=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"sut isolation: bwrap (network none, host uid {NOBODY.uid}" in done.stdout
    reports = sorted((unprivileged_project / ".codegenie" / "eval" / "runs").glob("*.json"))
    report = json.loads(reports[-1].read_text())
    assert {case["jail_uid"] for case in report["cases"]} == {NOBODY.uid}
    assert report["jail_uid"] == str(NOBODY.uid)
