"""The sandbox's building blocks: the bwrap command line, what a SUT is shown, its
environment, its workspace accounting, the cost file, the bounded diff, and the cache key."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pytest_codegenie_eval.execution.diff import MAX_DIFF_FILE_BYTES, unified_diff
from pytest_codegenie_eval.execution.isolation.sandbox import (
    Jail,
    bwrap_status,
    program_mounts,
    python_prefixes,
    sandbox_path,
)
from pytest_codegenie_eval.execution.sut import (
    RESULT_FILE,
    SutConfigError,
    SutLimits,
    SutPolicy,
    SutSpec,
    _read_cost,
    baseline_mounts,
    command_mounts,
    refuse_guarded_mounts,
    resolve_sut,
    sut_environment,
    workspace_usage,
)
from pytest_codegenie_eval.store.cache import CacheKeyParts


def _pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


def test_jail_binds_parents_before_children_and_masks_inside_binds(tmp_path: Path) -> None:
    tc = tmp_path / "bench" / "tc"
    case = tc / "cases" / "one"
    ws = tmp_path / "ws"
    jail = Jail(
        ro=(case, tc, tc / "rubric.py"),  # the file is redundant under tc
        rw=(ws,),
        chdir=ws,
        env={"PATH": "/usr/bin"},
        masks=(tc / "cases",),
    )
    argv = jail.argv("/usr/bin/bwrap", ["python", "-c", "pass"])
    order = [a for a in argv if a in (str(tc), str(tc / "cases"), str(case), str(ws))]
    # tc, then the mask over its cases, then the one case shown through the mask
    assert order.index(str(tc)) < order.index(str(tc / "cases")) < order.index(str(case))
    assert str(tc / "rubric.py") not in argv
    assert _pairs(argv, "--bind") == [str(ws)]
    assert argv[argv.index("--") + 1 :][-3:] == ["python", "-c", "pass"]
    for flag in ("--unshare-all", "--disable-userns", "--die-with-parent", "--new-session"):
        assert flag in argv
    assert "--share-net" not in argv
    assert _pairs(argv, "--cap-drop") == ["ALL"]
    # no environment value ever travels on the (world-readable) command line
    assert "--setenv" not in argv
    assert jail.spawn_env() == {"PATH": "/usr/bin"}


def test_host_network_is_opt_in() -> None:
    jail = Jail(ro=(), rw=(), chdir=Path("/"), env={}, network="host")
    assert "--share-net" in jail.argv("bwrap", ["true"])


def test_python_prefixes_include_the_venv_and_its_base_but_not_home() -> None:
    prefixes = python_prefixes()
    assert Path(sys.prefix).absolute() in prefixes
    assert Path(sys.base_prefix).absolute() in prefixes
    assert Path.home() not in prefixes
    assert Path("/") not in prefixes


def test_program_mounts_follow_a_venv_interpreter_link(tmp_path: Path) -> None:
    real = tmp_path / "prefix" / "bin" / "python3.11"
    real.parent.mkdir(parents=True)
    real.write_text("")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = {real.parent}\n")
    (venv / "bin" / "python").symlink_to(real)
    mounts = program_mounts(venv / "bin" / "python")
    assert venv / "bin" / "python" in mounts
    assert real in mounts
    assert venv in mounts
    assert tmp_path / "prefix" in mounts
    assert tmp_path not in mounts


def test_command_mounts_bind_named_files_never_their_folders(tmp_path: Path) -> None:
    (tmp_path / "agent.py").write_text("")
    (tmp_path / "secret.txt").write_text("")
    spec = resolve_sut(
        "python3 agent.py --out {workspace}",
        baseline_script=None,
        rootdir=tmp_path,
        hook_identity=None,
    )
    assert tmp_path / "agent.py" in spec.mounts
    assert tmp_path not in spec.mounts
    assert tmp_path / "secret.txt" not in spec.mounts
    # the interpreter a bare `python3` finds inside the sandbox comes with its prefix
    assert any(m.name.startswith("python3") for m in spec.mounts)
    assert command_mounts(("{workspace}",)) == []


def test_baseline_mounts_never_include_cases_or_tests(tmp_path: Path) -> None:
    for name in ("baseline_sut.py", "helpers.py", "rubric.py", "README.md"):
        (tmp_path / name).write_text("")
    for folder in ("cases", "tests", "pkg"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "leak.py").symlink_to(tmp_path / "cases" / "__init__.py")
    names = {p.name for p in baseline_mounts(tmp_path / "baseline_sut.py")}
    assert names == {"baseline_sut.py", "helpers.py", "rubric.py", "pkg"}


def test_a_command_naming_a_case_file_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "cases" / "one" / "expected" / "answer.txt"
    key.parent.mkdir(parents=True)
    key.write_text("42")
    spec = SutSpec("command", "c", "d", (), (key,))
    with pytest.raises(SutConfigError, match="must never see the cases"):
        refuse_guarded_mounts(spec, (tmp_path / "cases",))
    refuse_guarded_mounts(SutSpec("command", "c", "d", (), (tmp_path / "x",)), (key.parent,))
    # a mount that holds a guarded tree, or the rootdir, is refused as well
    with pytest.raises(SutConfigError, match="which holds"):
        refuse_guarded_mounts(SutSpec("command", "c", "d", (), (tmp_path,)), (key.parent,))
    with pytest.raises(SutConfigError, match="which holds"):
        refuse_guarded_mounts(
            SutSpec("command", "c", "d", (), (tmp_path / "repo",)),
            (),
            rootdir=tmp_path / "repo" / "sub",
        )
    refuse_guarded_mounts(
        SutSpec("command", "c", "d", (), (tmp_path / "repo" / "agent.py",)),
        (),
        rootdir=tmp_path / "repo",
    )


def test_sut_environment_is_an_allowlist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-secret")
    monkeypatch.setenv("MY_AGENT_TOKEN", "tok")
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "x")
    monkeypatch.setenv("LANG", "C.UTF-8")
    policy = SutPolicy(env_names=("MY_AGENT_TOKEN", "NOT_SET_ANYWHERE"))
    env = sut_environment(
        {"CODEGENIE_CASE_ID": "c"},
        policy,
        home="/home/sut",
        tmpdir="/tmp",
        path="/usr/bin",
        cwd=Path("/work/ws"),
    )
    inherited = {name: os.environ[name] for name in ("LC_ALL", "TZ") if name in os.environ}
    assert env == {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "MY_AGENT_TOKEN": "tok",
        "CODEGENIE_CASE_ID": "c",
        "HOME": "/home/sut",
        "TMPDIR": "/tmp",
        "PWD": "/work/ws",
        **inherited,
    }


def test_sandbox_path_keeps_only_visible_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/root/.pyenv/shims:/opt/agent/bin:/usr/bin")
    path = sandbox_path([Path("/venv/bin")], [Path("/opt/agent")]).split(os.pathsep)
    assert path[0] == "/venv/bin"
    assert "/opt/agent/bin" in path
    assert "/root/.pyenv/shims" not in path


def test_workspace_usage_counts_sparse_and_stops_early(tmp_path: Path) -> None:
    with (tmp_path / "big").open("wb") as handle:
        handle.truncate(300 * 1024 * 1024)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "small").write_bytes(b"x" * 10)
    (tmp_path / "link").symlink_to("/usr")
    used, entries = workspace_usage(tmp_path)
    assert used >= 300 * 1024 * 1024 + 10
    assert entries == 4  # the link counted, never followed
    early, _ = workspace_usage(tmp_path, stop_above=1024)
    assert early > 1024


def test_the_cost_file_is_never_read_through_a_link_or_whole(tmp_path: Path) -> None:
    (tmp_path / ".codegenie").mkdir()
    target = tmp_path / "elsewhere.json"
    target.write_text('{"cost_usd": 1.0}')
    (tmp_path / RESULT_FILE).symlink_to(target)
    cost, error = _read_cost(tmp_path)
    assert cost == 0.0
    assert error is not None
    assert "symlink" in error
    (tmp_path / RESULT_FILE).unlink()
    (tmp_path / RESULT_FILE).write_text('{"cost_usd": 0.5, "pad": "' + "x" * 70_000 + '"}')
    cost, error = _read_cost(tmp_path)
    assert (cost, error is not None and "larger than" in error) == (0.0, True)
    (tmp_path / RESULT_FILE).unlink()
    os.mkfifo(tmp_path / RESULT_FILE)
    cost, error = _read_cost(tmp_path)  # a FIFO would hang a blocking read
    assert cost == 0.0
    assert error is not None


def test_large_files_are_summarised_not_loaded(tmp_path: Path) -> None:
    before, after = tmp_path / "a", tmp_path / "b"
    before.mkdir()
    after.mkdir()
    size = MAX_DIFF_FILE_BYTES + 1
    (before / "blob").write_bytes(b"a" * size)
    (after / "blob").write_bytes(b"b" * size)
    (after / "same").write_bytes(b"c" * size)
    (before / "same").write_bytes(b"c" * size)
    (after / "escape").symlink_to("/etc/passwd")
    diff = unified_diff(before, after)
    assert diff == f"Large files a/blob and b/blob differ ({size} -> {size} bytes)\n"


def test_the_cache_key_changes_with_the_confinement() -> None:
    spec = SutSpec("command", "c", "d", ("true",))
    parts = CacheKeyParts("a", "b", "c", "", "0.1.0", "00")
    keys = {
        CacheKeyParts(**{**parts.__dict__, "sut_policy": policy.describe(spec)}).key()
        for policy in (
            SutPolicy(),
            SutPolicy(network="host"),
            SutPolicy(sandbox="none"),
            SutPolicy(env_names=("KEY",)),
            SutPolicy(ro_paths=(Path("/opt/agent"),)),
            SutPolicy(limits=SutLimits(memory_mb=1024)),
        )
    }
    expected = 6 if bwrap_status().usable else 5  # without bwrap, none and bwrap coincide
    assert len(keys) == expected


def test_isolation_is_recorded_as_it_really_was() -> None:
    command = SutSpec("command", "c", "d", ("true",))
    hook = SutSpec("hook", "h", "d")
    assert SutPolicy(sandbox="none").isolation(command) == "env-only"
    assert SutPolicy(sandbox="none").effective_network(command) == "host"
    assert SutPolicy().isolation(hook) == "in-process"
    assert SutPolicy().isolation(command) == ("bwrap" if bwrap_status().usable else "env-only")


def test_the_pids_cgroup_caps_a_tree_and_is_swept_when_its_owner_died(tmp_path: Path) -> None:
    import subprocess

    from pytest_codegenie_eval.execution.isolation.cgroups import ChildCgroups

    cgroups = ChildCgroups.create(8, None)
    if cgroups.pids is None:
        pytest.skip("this machine lets the harness create no pids cgroup (RLIMIT_NPROC instead)")
    directory = cgroups.pids
    try:
        assert (directory / "pids.max").read_text().strip() == "8"
        forker = (
            "import os, time\n"
            "n = 0\n"
            "for _ in range(20):\n"
            "    try:\n"
            "        if os.fork() == 0:\n"
            "            time.sleep(2)\n"
            "            os._exit(0)\n"
            "        n += 1\n"
            "    except OSError:\n"
            "        break\n"
            "print(n)\n"
        )
        done = subprocess.run(
            cgroups.wrap([sys.executable, "-c", forker]), capture_output=True, text=True
        )
        assert int(done.stdout) < 8  # 8 tasks in all, the forking process included
        cgroups.drain()
        # a cgroup named for a pid that no longer exists is removed by the next create()
        dead = subprocess.Popen(["true"])
        dead.wait()
        stale = directory.parent / f"codegenie-{dead.pid}-feedfacecafe"
        stale.mkdir()
        again = ChildCgroups.create(8, None)
        assert not stale.exists()
        again.remove()
    finally:
        cgroups.remove()
    assert not directory.exists()


def test_the_memory_cgroup_bounds_all_the_children_together() -> None:
    import subprocess

    from pytest_codegenie_eval.execution.isolation.cgroups import ChildCgroups

    # six children of 60 MiB each: 360 MiB together, under a 200 MiB cap for all of them
    hog = (
        "import os, time\n"
        "kids = []\n"
        "for _ in range(6):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        block = bytearray(60 * 1024 * 1024)\n"
        "        for i in range(0, len(block), 4096): block[i] = 1\n"
        "        time.sleep(1)\n"
        "        os._exit(0)\n"
        "    kids.append(pid)\n"
        "print(sum(os.waitpid(p, 0)[1] != 0 for p in kids))\n"
    )
    cgroups = ChildCgroups.create(None, 200 * 1024 * 1024)
    if cgroups.memory is None:
        assert os.geteuid() != 0 or not os.path.isdir("/sys/fs/cgroup/memory"), (
            "a root harness with a memory controller must get a memory cgroup"
        )
        pytest.skip("this machine lets the harness create no memory cgroup (RLIMIT_AS instead)")
    try:
        # the attack works without the cgroup: every child keeps its 60 MiB
        free = subprocess.run([sys.executable, "-c", hog], capture_output=True, text=True)
        assert free.stdout.strip() == "0"
        assert cgroups.oom_kills() == 0
        capped = subprocess.run(
            cgroups.wrap([sys.executable, "-c", hog]), capture_output=True, text=True
        )
        assert capped.stdout.strip() not in ("", "0")
        assert cgroups.oom_kills() >= 1
    finally:
        cgroups.remove()


def test_the_sandbox_user_is_never_root_and_nobody_needs_no_passwd_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pwd

    from pytest_codegenie_eval.execution.isolation.jailuser import JailUserError, resolve_jail_user

    assert (resolve_jail_user("1234:5678").uid, resolve_jail_user("1234:5678").gid) == (1234, 5678)
    for root in ("root", "0", "0:0", "1234:0"):
        with pytest.raises(JailUserError, match="is root"):
            resolve_jail_user(root)
    with pytest.raises(JailUserError, match="NAME, UID or UID:GID"):
        resolve_jail_user("12:not-a-group-x")

    # a minimal container: no passwd entry for nobody, and the default still works
    def missing(name: str) -> pwd.struct_passwd:
        raise KeyError(name)

    monkeypatch.setattr(pwd, "getpwnam", missing)
    fallback = resolve_jail_user(None)
    assert (fallback.uid, fallback.gid, fallback.name) == (65534, 65534, "nobody")
    with pytest.raises(JailUserError, match="no user 'builder'"):
        resolve_jail_user("builder")


def test_what_the_sandbox_user_may_read_is_decided_by_each_entry_mode(tmp_path: Path) -> None:
    from pytest_codegenie_eval.execution.isolation.jailuser import JailUser, unreadable_for

    user = JailUser(54321, 54321, "someone")
    tree = tmp_path / "tc"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "ok.py").write_text("x")
    for path in (tree, tree / "sub"):
        path.chmod(0o755)
    (tree / "sub" / "ok.py").chmod(0o644)
    assert unreadable_for(user, [tree]) is None
    (tree / "sub" / "secret.py").write_text("x")
    (tree / "sub" / "secret.py").chmod(0o600)
    assert unreadable_for(user, [tree]) == str(tree / "sub" / "secret.py")
    (tree / "sub").chmod(0o711)  # enterable but not listable: the jail could not list it
    assert unreadable_for(user, [tree]) == str(tree / "sub")
    # owned by the user, its owner bits count
    if os.geteuid() == 0:
        os.chown(tree / "sub", user.uid, user.gid)
        (tree / "sub").chmod(0o700)
        os.chown(tree / "sub" / "secret.py", user.uid, user.gid)
        assert unreadable_for(user, [tree]) is None
