"""The loader and the fence apply one contract: for any failure_modes.yaml, the fence
reports a violation if and only if the loader refuses the file (hypothesis generates the
files, broken in every way the contract names, and valid ones)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_codegenie_eval.digests import read_digests
from pytest_codegenie_eval.errors import DigestsFileInvalid, TaskClassInvalid
from pytest_codegenie_eval.fence import Violation, check_task_class
from pytest_codegenie_eval.loader import load_failure_modes

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
