"""A pytest run that selects no bench pays nothing for the installed plugin: it loads
neither pydantic, numpy, scipy, PyYAML, filelock nor blake3, and of the harness only the
hooks, the option declarations and their defaults (benchmarks/bench_plugin_idle.py
measures the time and memory)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import copy_stub

HEAVY = ("pydantic", "numpy", "scipy", "yaml", "filelock", "blake3")
# what an idle run may import of the harness: the hooks and the option declarations
IDLE_HARNESS = {
    "pytest_codegenie_eval",
    "pytest_codegenie_eval.defaults",
    "pytest_codegenie_eval.pytest_plugin",
    "pytest_codegenie_eval.pytest_plugin.activation",
    "pytest_codegenie_eval.pytest_plugin.hooks",
    "pytest_codegenie_eval.pytest_plugin.hookspec_plugin",
    "pytest_codegenie_eval.pytest_plugin.hookspecs",
    "pytest_codegenie_eval.pytest_plugin.options",
    "pytest_codegenie_eval.taskclass",
    "pytest_codegenie_eval.taskclass.layout",
}

_PROBE = f"""
import json, sys
def pytest_unconfigure(config):
    heavy = [m for m in {HEAVY!r} if m in sys.modules]
    harness = sorted(m for m in sys.modules if m.startswith("pytest_codegenie_eval"))
    with open("loaded.json", "w") as handle:
        json.dump({{"heavy": heavy, "harness": harness}}, handle)
"""


@pytest.mark.parametrize(
    ("args", "idle"),
    [
        ([], True),
        (["test_unit.py::test_unit"], True),  # what an IDE sends
        (["--codegenie-bench=stub"], False),  # the control: a bench run loads them
        (["bench/stub/cases/alpha/case.toml::alpha"], False),  # one case, no option
    ],
)
def test_a_run_without_a_bench_loads_no_heavy_module(
    pytester: pytest.Pytester, args: list[str], idle: bool
) -> None:
    copy_stub(pytester.path)
    pytester.makeconftest(_PROBE)
    pytester.makepyfile(test_unit="def test_unit():\n    assert True\n")
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:hypothesispytest", *args)
    loaded = json.loads((pytester.path / "loaded.json").read_text())
    if idle:
        assert loaded["heavy"] == []
        assert set(loaded["harness"]) <= IDLE_HARNESS, set(loaded["harness"]) - IDLE_HARNESS
    else:
        assert "pydantic" in loaded["heavy"]
        assert "pytest_codegenie_eval.execution.sut" in loaded["harness"]


@pytest.mark.parametrize(
    ("scores", "extra", "scipy"),
    [
        ("graded", (), False),  # the betting bound and the BCa diagnostic need no scipy
        ("pass_fail", (), True),  # Clopper-Pearson: scipy.special, when the bound is made
        ("graded", ("--codegenie-compare-to=latest:stub",), True),  # a comparison: scipy
    ],
)
def test_a_bench_run_imports_scipy_only_when_it_needs_it(
    pytester: pytest.Pytester, scores: str, extra: tuple[str, ...], scipy: bool
) -> None:
    """Importing scipy costs a session about a third of a second: only a pass/fail bound, a
    comparison or a plan needs it."""
    stub = copy_stub(pytester.path)
    registration = stub / "registration.py"
    text = registration.read_text()
    assert 'scores="pass_fail"' in text
    registration.write_text(text.replace('scores="pass_fail"', f'scores="{scores}"'))
    pytester.makeconftest(_PROBE)
    base = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "--codegenie-bench=stub")
    if extra:  # something to compare with
        pytester.runpytest_subprocess(*base).assert_outcomes(passed=3)
    result = pytester.runpytest_subprocess(*base, *extra)
    result.assert_outcomes(passed=3)
    loaded = json.loads((pytester.path / "loaded.json").read_text())
    assert ("scipy" in loaded["heavy"]) is scipy, loaded["heavy"]
    assert "numpy" in loaded["heavy"]
