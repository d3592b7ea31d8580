"""An attempt's run directory: the workspace made from the case's ``input/``, the checks of
what the SUT left next to it or linked out of it, and keeping it when asked
(``--codegenie-keep-workspaces``)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from pytest_codegenie_eval.execution import results
from pytest_codegenie_eval.models import FailureMode
from pytest_codegenie_eval.taskclass.digests import check_input_links
from pytest_codegenie_eval.taskclass.layout import TASK_MD
from pytest_codegenie_eval.taskclass.loader import CaseEntry, LoadedTaskClass

CODEGENIE_DIR = ".codegenie"
_block = results.block
log = logging.getLogger("codegenie_eval.execution")


def kept_name(case_id: str, repeat: int) -> str:
    """The folder a kept run directory of one attempt is moved to."""
    return case_id if repeat == 1 else f"{case_id}-r{repeat}"


def keep(run_dir: Path, target: Path) -> None:
    """Move a run directory (workspace, SUT tmp) where --codegenie-keep-workspaces says."""
    try:
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(run_dir), str(target))
    except OSError:
        log.warning("could not move the kept workspace %s to %s", run_dir, target)


def _copy_input(source: Path, workspace: Path) -> None:
    """Copy ``input/`` into the workspace, links as links (never followed out of it: the
    loader refuses a link that leaves ``input/``, and this re-checks just before copying)."""
    check_input_links(source)
    shutil.copytree(source, workspace, symlinks=True, dirs_exist_ok=True)


def workspace_of(run_dir: Path) -> Path:
    """The attempt's workspace directory, made empty (what a rubric started early binds)."""
    workspace = run_dir / "workspace"
    workspace.mkdir(exist_ok=True)
    return workspace


def prepare_workspace(task_class: LoadedTaskClass, entry: CaseEntry, run_dir: Path) -> Path:
    """Fill the attempt's workspace (made here, or empty from :func:`workspace_of`): the
    case's ``input/`` and the task file."""
    workspace = workspace_of(run_dir)
    source = entry.directory / "input"
    if source.is_dir():
        _copy_input(source, workspace)
    meta = workspace / CODEGENIE_DIR
    meta.mkdir(exist_ok=True)
    task_text = (entry.case.instructions if entry.case else None) or task_class.task_md
    (meta / TASK_MD).write_text(task_text, encoding="utf-8")
    (run_dir / "tmp").mkdir()
    return workspace


GATEWAY_DIR = "gateway"  # the model gateway's socket and forwarder (read-only in the jail)
# What a run directory may hold besides the workspace: an env-only SUT's tmp and home.
_RUN_DIR_ENTRIES = frozenset({"workspace", "tmp", "home", GATEWAY_DIR})


def escape_failures(run_dir: Path, workspace: Path) -> list[FailureMode]:
    """Writes next to the workspace, and links in it that lead out of it (removed, so the
    rubric never reads through them)."""
    modes = []
    stray = sorted(p.name for p in run_dir.iterdir() if p.name not in _RUN_DIR_ENTRIES)
    if stray:
        modes.append(
            _block("sut.escaped_workspace", f"wrote outside its workspace: {', '.join(stray)}")
        )
    root = workspace.resolve()
    leaving: list[str] = []
    for dirpath, dirnames, filenames in os.walk(workspace, followlinks=False):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            if not path.is_symlink():
                continue
            target = Path(os.path.normpath(Path(dirpath) / os.readlink(path)))
            try:
                inside = path.resolve().is_relative_to(root) and target.is_relative_to(root)
            except (OSError, RuntimeError):  # a loop
                inside = False
            if not inside:
                leaving.append(f"{path.relative_to(workspace).as_posix()} -> {os.readlink(path)}")
                path.unlink()
    if leaving:
        modes.append(
            _block(
                "sut.escaped_workspace",
                "symlink(s) leading out of the workspace (removed before scoring): "
                + ", ".join(sorted(leaving)[:20]),
            )
        )
    return modes
