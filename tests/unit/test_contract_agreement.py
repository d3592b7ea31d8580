"""The loader and the fence apply one contract: for any failure_modes.yaml, the fence
reports a violation if and only if the loader refuses the file (hypothesis generates the
files, broken in every way the contract names, and valid ones)."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_codegenie_eval.errors import CodegenieEvalError, DigestsFileInvalid, TaskClassInvalid
from pytest_codegenie_eval.taskclass.digests import read_digests, write_digests
from pytest_codegenie_eval.taskclass.fence import Violation, check_task_class
from pytest_codegenie_eval.taskclass.loader import load_failure_modes, load_task_class

VERSIONS = ["version: 1", "version: 2", "version: true", "version: '1'", "version: 1.0", ""]
CODES = ["answer.wrong", "answer.extra", "sut.mine", "harness.x", "''", "1", "a b"]
SEVERITIES = ["block", "warn", "info", "fatal", "''", None, "[block]"]
DESCRIPTIONS = ['"wrong answer"', '" "', "''", None, "1", "[x]"]


@st.composite
def failure_modes_yaml(draw: st.DrawFn) -> str:
    lines = []
    version = draw(st.sampled_from(VERSIONS))
    if version:
        lines.append(version)
    if draw(st.booleans()) and draw(st.booleans()):
        lines.append("extra_key: 1")
    shape = draw(st.sampled_from(["mapping", "mapping", "mapping", "list", "scalar", "none"]))
    if shape == "list":
        lines.append("failure_modes: [answer.wrong]")
    elif shape == "scalar":
        lines.append("failure_modes: nope")
    elif shape == "mapping":
        lines.append("failure_modes:")
        for _ in range(draw(st.integers(0, 3))):
            code = draw(st.sampled_from(CODES))
            parts = []
            severity = draw(st.sampled_from(SEVERITIES))
            if severity is not None:
                parts.append(f"severity: {severity}")
            description = draw(st.sampled_from(DESCRIPTIONS))
            if description is not None:
                parts.append(f"description: {description}")
            if draw(st.integers(0, 9)) == 0:
                parts.append("colour: red")
            lines.append(f"  {code}: {{{', '.join(parts)}}}")
        if lines[-1] == "failure_modes:":
            lines[-1] = "failure_modes: {}"
    return "\n".join(lines) + "\n"


def _fence_problems(directory: Path) -> list[Violation]:
    return [v for v in check_task_class(directory) if v.rule == "failure-modes"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=failure_modes_yaml())
def test_fence_reports_failure_modes_iff_the_loader_refuses_them(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "tc"
        directory.mkdir()
        (directory / "failure_modes.yaml").write_text(text, encoding="utf-8")
        try:
            load_failure_modes(directory)
            refused = False
        except TaskClassInvalid:
            refused = True
        problems = _fence_problems(directory)
    assert bool(problems) is refused, (text, [p.message for p in problems])


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            "version: 1\nfailure_modes:\n"
            '  answer.wrong: {severity: info, description: "x"}\n'
            '  answer.wrong: {severity: block, description: "x"}\n',
            4,
        ),
        ('version: 1\nversion: 1\nfailure_modes: {a.b: {severity: info, description: "x"}}\n', 2),
    ],
)
def test_the_loader_refuses_duplicate_keys_like_the_fence(
    tmp_path: Path, text: str, line: int
) -> None:
    # live: plain YAML keeps the last value, so a second entry could quietly downgrade
    # or upgrade a severity that review saw as the first
    import yaml

    assert yaml.safe_load(text)  # parses without a word
    (tmp_path / "failure_modes.yaml").write_text(text)
    with pytest.raises(TaskClassInvalid, match=rf"duplicate key .* on line {line}"):
        load_failure_modes(tmp_path)


def test_a_second_pin_for_one_case_is_refused(tmp_path: Path) -> None:
    honest, other = "a" * 64, "b" * 64
    text = f"alpha: {json.dumps(honest)}\nalpha: {json.dumps(other)}\n"
    import yaml

    assert yaml.safe_load(text) == {"alpha": other}  # live: the second pin would win
    (tmp_path / "digests.yaml").write_text(text)
    with pytest.raises(DigestsFileInvalid, match="duplicate key 'alpha' on line 2"):
        read_digests(tmp_path)


# --------------------------------------------------------------------------------------------
# whole task classes: the fence reports a contract violation iff the loader refuses

STUB = Path(__file__).resolve().parents[1] / "fixtures" / "bench" / "stub"


def _registration(decorators: str) -> str:
    return (
        "from pytest_codegenie_eval import register_task_class\n\n\n"
        f"{decorators}class Stub:\n    baseline_sut = 'baseline_sut.py'\n"
    )


class _NothingToEdit(Exception):
    """An earlier mutation of the same example rewrote the file this one edits."""


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if old not in text:
        raise _NothingToEdit(path, old)
    path.write_text(text.replace(old, new, 1))


def _mutate(tc: Path, mutation: str, failure_modes: str) -> None:
    cases = tc / "cases"
    if mutation == "failure-modes":
        (tc / "failure_modes.yaml").write_text(failure_modes)
    elif mutation.startswith("missing:"):
        target = tc / mutation.removeprefix("missing:")
        target.unlink()
    elif mutation == "registration-name":
        _edit(tc / "registration.py", '"stub"', '"other"')
    elif mutation == "registration-twice":
        deco = '@register_task_class("stub", min_cases_for_promotion={"bronze": 2})\n'
        (tc / "registration.py").write_text(
            _registration(deco) + f"\n\n{deco}class Again:\n    pass\n"
        )
    elif mutation == "registration-none":
        (tc / "registration.py").write_text(_registration(""))
    elif mutation.startswith("floors:"):
        floors = mutation.removeprefix("floors:")
        deco = f'@register_task_class("stub", min_cases_for_promotion={floors})\n'
        (tc / "registration.py").write_text(_registration(deco))
    elif mutation.startswith("scores:"):
        kind = mutation.removeprefix("scores:")
        floors = '{"bronze": 2}'
        deco = f'@register_task_class("stub", min_cases_for_promotion={floors}, scores="{kind}")\n'
        (tc / "registration.py").write_text(_registration(deco))
    elif mutation == "registration-syntax":
        (tc / "registration.py").write_text("@register_task_class(\n")
    elif mutation == "breakdown-banned":
        _edit(
            tc / "breakdown_keys.py",
            "    NO_EXTRA",
            '    LLM_SAYS_OK = "LLM_SAYS_OK"\n    NO_EXTRA',
        )
    elif mutation == "breakdown-empty":
        (tc / "breakdown_keys.py").write_text(
            "from enum import StrEnum\n\n\nclass BreakdownKey(StrEnum):\n    pass\n"
        )
    elif mutation == "breakdown-syntax":
        (tc / "breakdown_keys.py").write_text("class BreakdownKey(:\n")
    elif mutation == "case-unknown-key":
        _edit(cases / "alpha" / "case.toml", "title =", 'colour = "red"\ntitle =')
    elif mutation == "case-missing-key":
        _edit(cases / "alpha" / "case.toml", 'title = "stub case alpha"\n', "")
    elif mutation == "case-bad-toml":
        (cases / "beta" / "case.toml").write_text("case_id = \n")
    elif mutation == "case-bad-type":
        _edit(cases / "alpha" / "case.toml", "sut_timeout_s = 30", 'sut_timeout_s = "soon"')
    elif mutation == "case-no-toml":
        (cases / "gamma" / "case.toml").unlink()
    elif mutation == "case-stray-dir":
        (cases / "stray").mkdir()
    elif mutation == "case-id-twice":
        shutil.copytree(cases / "alpha", cases / "alpha2", symlinks=True)
    elif mutation == "case-edited":
        (cases / "alpha" / "input" / "question.txt").write_text("edited\n")
    elif mutation == "pin-orphan":
        with (cases / "digests.yaml").open("a") as fh:
            fh.write(f'"ghost": "{"0" * 64}"\n')
    elif mutation == "pin-duplicate":
        text = (cases / "digests.yaml").read_text()
        # (after pins-not-yaml there is no pin line left to repeat: repeat a made-up one)
        line = next(
            (x for x in text.splitlines() if x.startswith('"alpha"')), f'"alpha": "{"0" * 64}"'
        )
        (cases / "digests.yaml").write_text(text + line + "\n")
    elif mutation == "pins-not-yaml":
        (cases / "digests.yaml").write_text("alpha: [\n")
    elif mutation == "input-link-out":
        (cases / "alpha" / "input" / "answer").symlink_to("../expected")
    elif mutation == "case-link-out":
        (cases / "alpha" / "input" / "host").symlink_to("/etc")
    elif mutation == "remove-case":
        shutil.rmtree(cases / "gamma")
    elif mutation == "floors-higher":  # policy only: runs, cannot be promoted
        deco = '@register_task_class("stub", min_cases_for_promotion={"bronze": 50})\n'
        (tc / "registration.py").write_text(_registration(deco))
    else:  # pragma: no cover - a typo in MUTATIONS
        raise AssertionError(mutation)


MUTATIONS = [
    "failure-modes",
    "missing:rubric.py",
    "missing:breakdown_keys.py",
    "missing:failure_modes.yaml",
    "missing:registration.py",
    "missing:cases/digests.yaml",
    "registration-name",
    "registration-twice",
    "registration-none",
    "registration-syntax",
    "scores:binary",
    "scores:pass_fail",
    'floors:{"tin": 3}',
    'floors:{"bronze": -1}',
    'floors:{"bronze": True}',
    'floors:{"bronze": "3"}',
    "breakdown-banned",
    "breakdown-empty",
    "breakdown-syntax",
    "case-unknown-key",
    "case-missing-key",
    "case-bad-toml",
    "case-bad-type",
    "case-no-toml",
    "case-stray-dir",
    "case-id-twice",
    "case-edited",
    "pin-orphan",
    "pin-duplicate",
    "pins-not-yaml",
    "input-link-out",
    "case-link-out",
    "remove-case",
    "floors-higher",
]


def _loader_refuses(tc: Path) -> str | None:
    try:
        loaded = load_task_class(tc)
    except CodegenieEvalError as exc:
        return str(exc)
    broken = [f"{e.name}: {e.error}" for e in loaded.cases if e.error is not None]
    if loaded.orphan_pins:
        broken.append(f"orphan pins {loaded.orphan_pins}")
    return "; ".join(broken) or None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mutations=st.lists(st.sampled_from(MUTATIONS), max_size=3, unique=True),
    failure_modes=failure_modes_yaml(),
    repin=st.booleans(),
)
def test_fence_reports_a_task_class_iff_the_loader_refuses_it(
    mutations: list[str], failure_modes: str, repin: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tc = Path(tmp) / "stub"
        shutil.copytree(STUB, tc, ignore=shutil.ignore_patterns("__pycache__"))
        _agree(tc, mutations, failure_modes, repin, combined=True)


def _agree(
    tc: Path, mutations: Sequence[str], failure_modes: str, repin: bool, *, combined: bool
) -> None:
    for mutation in mutations:
        if (tc / "cases" / "digests.yaml").exists() or not mutation.startswith("pin"):
            if combined:
                # two mutations may touch the same file (remove it twice, link over a link);
                # only those collisions are tolerated, never a failure of the test itself
                with contextlib.suppress(FileNotFoundError, FileExistsError, _NothingToEdit):
                    _mutate(tc, mutation, failure_modes)
            else:
                _mutate(tc, mutation, failure_modes)
    if repin and (tc / "cases" / "digests.yaml").exists() and "pins-not-yaml" not in mutations:
        # an author who re-pinned after the edit: content problems must still show
        with contextlib.suppress(CodegenieEvalError):
            write_digests(tc / "cases")
    refused = _loader_refuses(tc)
    contract = [v.format(tc) for v in check_task_class(tc) if v.kind == "contract"]
    assert bool(contract) is (refused is not None), (mutations, refused, contract)


@pytest.mark.parametrize("repin", [False, True], ids=["as-edited", "re-pinned"])
@pytest.mark.parametrize("mutation", MUTATIONS)
def test_each_breakage_alone_is_refused_by_both_or_neither(
    tmp_path: Path, mutation: str, repin: bool
) -> None:
    tc = tmp_path / "stub"
    shutil.copytree(STUB, tc, ignore=shutil.ignore_patterns("__pycache__"))
    broken_modes = "version: 2\nfailure_modes: {}\n"
    _agree(tc, [mutation], broken_modes, repin, combined=False)


def test_the_shipped_stub_passes_both() -> None:
    assert _loader_refuses(STUB) is None
    assert [v for v in check_task_class(STUB) if v.kind == "contract"] == []
