"""The plugin's hook specifications, registered by an entry point of their own.

A project's conftest may implement ``pytest_codegenie_eval_run_sut``. pytest refuses an
unknown ``pytest_*`` hook, so with the plugin disabled (``-p no:codegenie_eval``) that
conftest would stop every run. This tiny plugin (entry point ``codegenie_eval_hooks``,
standard library only) declares the specifications whether or not the plugin itself is
active; the hook is then simply never called.
"""

from __future__ import annotations

import pytest

HOOK_NAMES = ("pytest_codegenie_eval_run_sut", "pytest_codegenie_eval_sut_digest")


def ensure_hookspecs(pluginmanager: pytest.PytestPluginManager) -> None:
    """Add the specifications once, whichever of the two plugins loads first."""
    for name in HOOK_NAMES:
        caller = getattr(pluginmanager.hook, name, None)
        if caller is not None and caller.spec is not None:
            return
    from pytest_codegenie_eval.pytest_plugin import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    ensure_hookspecs(pluginmanager)
