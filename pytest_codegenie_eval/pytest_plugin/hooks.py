"""pytest hooks of pytest-codegenie-eval (the ``codegenie_eval`` entry point). Hooks only:
the work lives in the modules named for it (``options``, ``session``, ``items``,
``preflight``, ``dispatch``; the reporter plugin and its ``session_end`` pipeline).

Module level imports only :mod:`.activation` (standard library and pytest): a run that
selects no bench never loads the run machinery (docs/adr/0014-idle-plugin-costs-nothing.md).
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from pytest_codegenie_eval.pytest_plugin.activation import RUN_SCOPE_INPUT, SESSION_KEY, is_active

# the chain key's scope (--codegenie-chain-key-env), entered in configure, left in unconfigure
_KEY_SCOPE = pytest.StashKey[AbstractContextManager[None]]()

PLUGIN_NAME = "codegenie_eval"


def pytest_addoption(parser: pytest.Parser) -> None:
    from pytest_codegenie_eval.pytest_plugin.options import add_options

    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_codegenie_eval.pytest_plugin.hookspec_plugin import ensure_hookspecs

    ensure_hookspecs(pluginmanager)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """``--codegenie-fence``: check every task class directory statically, run nothing."""
    if not config.getoption("codegenie_fence", False):
        return None
    from pytest_codegenie_eval.pytest_plugin.options import settings_from_config
    from pytest_codegenie_eval.taskclass.fence import check_bench_root

    root = settings_from_config(config).bench_root
    violations = check_bench_root(root)
    # runs before pytest_configure, so there is no terminal reporter yet: plain stdout
    for violation in violations:
        print(violation.format(root))
    if violations:
        print(f"codegenie fence: {len(violations)} violation(s) under {root}")
        return int(pytest.ExitCode.TESTS_FAILED)
    print(f"codegenie fence: every task class under {root} meets the contract")
    return int(pytest.ExitCode.OK)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "codegenie_bench(name): a bench case item of task class NAME"
    )
    if not is_active(config):
        return
    from pytest_codegenie_eval.errors import CodegenieEvalError
    from pytest_codegenie_eval.pytest_plugin.options import settings_from_config
    from pytest_codegenie_eval.pytest_plugin.preflight import check_sandbox
    from pytest_codegenie_eval.pytest_plugin.session import BenchSession

    settings = settings_from_config(config)
    if not settings.fence:
        check_sandbox(settings)
    if _is_worker(config):
        run_scope = str(config.workerinput.get(RUN_SCOPE_INPUT) or BenchSession.new_run_scope())  # type: ignore[attr-defined]
    else:
        run_scope = BenchSession.new_run_scope()
    bench = BenchSession(config, settings, run_scope)
    config.stash[SESSION_KEY] = bench
    if settings.chain_key is not None:
        from pytest_codegenie_eval.store.audit import chain_key

        scope = chain_key(settings.chain_key)
        scope.__enter__()  # left in pytest_unconfigure
        config.stash[_KEY_SCOPE] = scope
    if settings.fence:
        return
    try:
        bench.select_benches()
    except CodegenieEvalError as exc:
        raise pytest.UsageError(str(exc)) from exc
    if not _is_worker(config):
        from pytest_codegenie_eval.pytest_plugin.reporter import EvalReporter

        # a plugin of its own, as pytest's junitxml: it collects, writes and prints
        # through its hooks, and unregisters itself in pytest_unconfigure
        config.pluginmanager.register(EvalReporter(bench), EvalReporter.PLUGIN_NAME)


@pytest.hookimpl(optionalhook=True)  # an xdist hook: pytest must load without xdist too
def pytest_configure_node(node: Any) -> None:
    """xdist controller: hand the run scope (cost ledger) to every worker."""
    bench = node.config.stash.get(SESSION_KEY, None)
    if bench is not None:
        node.workerinput[RUN_SCOPE_INPUT] = bench.run_scope


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    bench = config.stash.get(SESSION_KEY, None)
    if bench is None or _is_worker(config) or bench.settings.fence:
        return
    if bench.settings.benches:
        from pytest_codegenie_eval.pytest_plugin.preflight import run_all

        run_all(bench)
    if bench.settings.executor is not None and not config.option.collectonly:
        from pytest_codegenie_eval.pytest_plugin.preflight import start_executor

        start_executor(bench)


def pytest_collection_finish(session: pytest.Session) -> None:
    """A Dask or ``local:N`` executor: every selected, uncached case goes to it now; each
    item then waits for its own result (reported in item order)."""
    bench = session.config.stash.get(SESSION_KEY, None)
    if bench is None or bench.executor is None:
        return
    from pytest_codegenie_eval.pytest_plugin.dispatch import submit_items

    submit_items(bench, session.items)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Note which item runs next: the local executor starts its rubric alongside this one."""
    bench = item.config.stash.get(SESSION_KEY, None)
    if bench is not None:
        bench.next_item = nextitem


def pytest_unconfigure(config: pytest.Config) -> None:
    bench = config.stash.get(SESSION_KEY, None)
    if bench is not None:
        bench.local.close()  # a rubric started for an item that never ran ends here
    if bench is not None and bench.executor is not None:
        bench.executor.close()
        bench.executor = None
    scope = config.stash.get(_KEY_SCOPE, None)
    if scope is not None:
        del config.stash[_KEY_SCOPE]
        scope.__exit__(None, None, None)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    bench = config.stash.get(SESSION_KEY, None)
    if bench is None:
        return None
    from pytest_codegenie_eval.taskclass.layout import CASE_TOML, locate

    where = locate(collection_path)
    if where is None or where.depth == 1:
        return None
    if where.depth == 0:
        return None if bench.is_selected(where.task_class_dir) else True
    # input/ and expected/ are data; only case.toml and digests.yaml are collected
    return collection_path.name != CASE_TOML or not where.is_case_toml_slot


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    bench = parent.config.stash.get(SESSION_KEY, None)
    if bench is None or bench.settings.fence:
        return None
    from pytest_codegenie_eval.taskclass.layout import (
        CASE_TOML,
        DIGESTS_FILE,
        locate,
        task_class_dir_of_case,
    )

    if file_path.name == CASE_TOML:
        tc_dir = task_class_dir_of_case(file_path)
        if tc_dir is not None and bench.is_selected(tc_dir):
            from pytest_codegenie_eval.pytest_plugin.items import CaseFile

            return CaseFile.from_parent(parent, path=file_path)
    elif file_path.name == DIGESTS_FILE:
        where = locate(file_path)
        if where is not None and where.depth == 1 and bench.is_selected(where.task_class_dir):
            from pytest_codegenie_eval.pytest_plugin.items import OrphanPinsFile

            return OrphanPinsFile.from_parent(parent, path=file_path)
    return None


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    bench = config.stash.get(SESSION_KEY, None)
    if bench is None:
        return
    from pytest_codegenie_eval.pytest_plugin.items import CaseItem

    shard = bench.settings.shard
    if shard is not None:
        from pytest_codegenie_eval.evidence.shards import shard_of

        # every xdist worker and the controller compute the same split from case ids alone
        kept: list[pytest.Item] = []
        dropped: list[pytest.Item] = []
        for item in items:
            outside = (
                isinstance(item, CaseItem) and shard_of(item.case_id, shard.count) != shard.index
            )
            (dropped if outside else kept).append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept

    wanted = bench.settings.cases
    if wanted is not None:
        present = {item.case_id for item in items if isinstance(item, CaseItem)}
        unknown = sorted(wanted - present)
        if unknown:
            message = (
                f"--codegenie-cases: no case {', '.join(map(repr, unknown))} in the selected "
                f"task classes (they have {len(present)} cases)"
            )
            if config.pluginmanager.get_plugin("terminalreporter") is None:
                sys.stderr.write(f"ERROR: {message}\n")  # nobody else prints the reason
            pytest.exit(message, returncode=pytest.ExitCode.USAGE_ERROR)
        others = [i for i in items if isinstance(i, CaseItem) and i.case_id not in wanted]
        if others:
            config.hook.pytest_deselected(items=others)
            items[:] = [
                i for i in items if not (isinstance(i, CaseItem) and i.case_id not in wanted)
            ]

    # cases run in (task class, case_id) order wherever they sit in the item list
    slots = [i for i, item in enumerate(items) if isinstance(item, CaseItem)]
    ordered = sorted(
        (items[i] for i in slots),
        key=lambda it: (getattr(it, "task_class_name", ""), getattr(it, "case_id", "")),
    )
    for slot, item in zip(slots, ordered, strict=True):
        items[slot] = item
