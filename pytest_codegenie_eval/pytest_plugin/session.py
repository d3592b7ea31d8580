"""One pytest session's view of the benches: what is selected, loaded and how cases run.

Kept in ``config.stash`` so hooks stay thin; each task class directory is loaded at most once
per session, whichever collector asks first.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_codegenie_eval.errors import CodegenieEvalError, TaskClassInvalid
from pytest_codegenie_eval.execution.attempt import RunSettings
from pytest_codegenie_eval.execution.executors.local import (
    ConcurrentLocalExecutor,
    LocalExecutor,
)
from pytest_codegenie_eval.execution.sut import (
    SutSpec,
    hook_identity,
    refuse_guarded_mounts,
    refuse_unreadable_mounts,
    resolve_sut,
)
from pytest_codegenie_eval.models import BenchRunReport
from pytest_codegenie_eval.pytest_plugin.activation import (
    bench_from_command_line,
    explicit_targets,
    names_test_paths,
)
from pytest_codegenie_eval.pytest_plugin.options import Settings
from pytest_codegenie_eval.registry import TaskClass
from pytest_codegenie_eval.store.cache import ScoreCache
from pytest_codegenie_eval.store.cost_ledger import CostLedger
from pytest_codegenie_eval.store.statedir import StateDir
from pytest_codegenie_eval.taskclass.digests import case_digest
from pytest_codegenie_eval.taskclass.layout import CASES
from pytest_codegenie_eval.taskclass.loader import (
    LoadedTaskClass,
    load_task_class,
    resolve_task_class_dir,
)

if TYPE_CHECKING:
    from pytest_codegenie_eval.execution.executors.dask_controller import DaskRunner

PAYLOAD_PROPERTY = "codegenie_eval"


@dataclass
class Outcome:
    """What the CLI needs to choose its exit code (filled in by the hooks)."""

    cost_cap_hit: bool = False
    chain_tampered: bool = False
    digest_mismatch: bool = False
    task_class_missing: bool = False
    bench_root_missing: bool = False
    # cases whose bench files changed after they passed (found at session end)
    tampered_after_pass: tuple[str, ...] = ()


class BenchSession:
    """Selected task classes, their loaded contents, the SUT and the shared run settings."""

    def __init__(self, config: pytest.Config, settings: Settings, run_scope: str) -> None:
        self.config = config
        self.settings = settings
        self.run_scope = run_scope
        self.outcome = Outcome()
        self.compare_reference: BenchRunReport | None = None  # --codegenie-compare-to
        # a cluster (--codegenie-executor=dask…) or N threads here (local:N), once started;
        # every attempt it does not own runs on the local executor
        self.executor: DaskRunner | ConcurrentLocalExecutor | None = None
        self._loaded: dict[Path, LoadedTaskClass | CodegenieEvalError] = {}
        self._suts: dict[str, SutSpec] = {}
        self.targets = explicit_targets(config)
        cassette_digest = case_digest(settings.cassettes) if settings.cassettes else ""
        state = StateDir(settings.state_dir)
        self.run_settings = RunSettings(
            cache=None if settings.no_cache else ScoreCache(state.cache),
            ledger=CostLedger(state.ledger(run_scope)),
            run_scope=run_scope,
            max_cost_usd=settings.max_cost_usd,
            cassette_dir=settings.cassettes,
            cassette_digest=cassette_digest,
            keep_workspaces=settings.keep_workspaces,
            kept_dir=state.workspaces(run_scope) if settings.keep_workspaces else None,
            sut_policy=settings.sut_policy,
            rubric_sandbox=settings.rubric_sandbox,
            diff_dir=state.diffs,
            gateway=settings.gateway,
            transcript_dir=state.transcripts,
        )

        self.local = LocalExecutor(self.run_settings)
        # the item pytest runs after the one running now (its rubric may start early)
        self.next_item: pytest.Item | None = None

    def executor_for(self, nodeid: str) -> DaskRunner | ConcurrentLocalExecutor | LocalExecutor:
        """The executor that runs the attempt with this node id."""
        if self.executor is not None and self.executor.owns(nodeid):
            return self.executor
        return self.local

    @staticmethod
    def new_run_scope() -> str:
        return uuid.uuid4().hex

    def select_benches(self) -> None:
        """Resolve the selected task class names and add their cases to the run.

        ``pytest --codegenie-bench=X`` without paths runs the bench, not the repository's
        own tests. With paths, ``--codegenie-bench=X`` adds the bench's cases unless a path
        already points inside the task class (an IDE selecting one case). The ini default
        ``codegenie_bench`` applies only when no path is named, and then the project's own
        ``testpaths`` are collected too.
        """
        dirs: list[Path] = []
        root = self.settings.bench_root
        for name in self.settings.benches:
            try:
                dirs.append(resolve_task_class_dir(root, name))
            except CodegenieEvalError:
                self.outcome.bench_root_missing = not root.is_dir()
                self.outcome.task_class_missing = root.is_dir()
                raise
        if not dirs:
            return
        if not names_test_paths(self.config) and bench_from_command_line(self.config):
            self.config.args = [str(d / CASES) for d in dirs]
            return
        present = [Path(arg.split("::", 1)[0]) for arg in self.config.args]
        covered = [
            (p if p.is_absolute() else self.config.invocation_params.dir / p).resolve()
            for p in present
        ]
        for d in dirs:
            cases = (d / CASES).resolve()
            # a named path inside the task class (one case), or a collected directory that
            # holds it already (testpaths = ["."]): nothing to add
            if not any(t.is_relative_to(cases) or cases.is_relative_to(t) for t in covered):
                self.config.args.append(str(d / CASES))

    def is_selected(self, task_class_dir: Path) -> bool:
        """Whether a task class's cases should be collected in this session."""
        if task_class_dir.name in self.settings.benches:
            return True
        resolved = task_class_dir.resolve()
        # an IDE or `pytest path/to/case.toml::id` names a case without --codegenie-bench;
        # `pytest bench` names the bench root, and every task class under it runs
        return any(
            t == resolved or t.is_relative_to(resolved) or t == resolved.parent
            for t in self.targets
        )

    def load(self, task_class_dir: Path) -> LoadedTaskClass:
        """Load a task class once per session; the typed error is cached and re-raised."""
        key = task_class_dir.resolve()
        if key not in self._loaded:
            try:
                self._loaded[key] = load_task_class(
                    key, import_timeout_s=self.settings.import_timeout_s
                )
            except CodegenieEvalError as exc:
                self._loaded[key] = exc
            except (OSError, ValueError, RecursionError, MemoryError) as exc:
                # a bench file the loader does not bound yet: the task class fails with it,
                # never the whole collection (a healthy task class beside it still runs)
                self._loaded[key] = TaskClassInvalid(
                    key, f"could not be loaded: {type(exc).__name__}: {exc}"
                )
        value = self._loaded[key]
        if isinstance(value, CodegenieEvalError):
            raise value
        return value

    def registered(self) -> dict[str, TaskClass]:
        """Every task class this session has loaded, by name."""
        return {
            value.name: value.task_class
            for value in self._loaded.values()
            if isinstance(value, LoadedTaskClass)
        }

    def loaded(self, name: str) -> LoadedTaskClass | None:
        """The loaded task class of that name (loading it from the bench root if needed)."""
        for value in self._loaded.values():
            if isinstance(value, LoadedTaskClass) and value.name == name:
                return value
        candidate = self.settings.bench_root / name
        try:
            return self.load(candidate) if candidate.is_dir() else None
        except CodegenieEvalError:
            return None

    def sut_for(self, task_class: LoadedTaskClass) -> SutSpec:
        spec = self._suts.get(task_class.name)
        if spec is None:
            hook = self.config.pluginmanager.hook
            impls = [
                impl.function
                for impl in hook.pytest_codegenie_eval_run_sut.get_hookimpls()
                if impl.plugin_name != "codegenie_eval"
            ]
            extra = hook.pytest_codegenie_eval_sut_digest(task_class=task_class.name)
            spec = resolve_sut(
                self.settings.sut,
                baseline_script=task_class.task_class.baseline_sut_path,
                rootdir=self.config.rootpath,
                hook_identity=hook_identity(impls, extra),
            )
            refuse_guarded_mounts(
                spec,
                (task_class.directory / CASES, self.settings.state_dir),
                rootdir=self.config.rootpath,
            )
            refuse_unreadable_mounts(spec, self.settings.sut_policy.jail_user)
            self._suts[task_class.name] = spec
        return spec
