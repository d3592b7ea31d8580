"""In-process unit tests of the ``migration-chainguard-distroless`` rubric and baseline SUT.

The rubric is loaded by file path under a unique module name (it is a script, not a
package module). Engine detection is patched out in process so results do not depend on
the machine; the subprocess tests run the real entry points offline.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from pytest_codegenie_eval.rubric import CaseInfo, HarnessOutput

BENCH = Path(__file__).resolve().parent.parent
CASES = BENCH / "cases"
CASE_DIRS = sorted(p for p in CASES.iterdir() if (p / "case.toml").is_file())
CASE_IDS = [p.name for p in CASE_DIRS]
FORBIDDEN_KEY_PARTS = ("confidence", "llm", "self_reported", "model_says")


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


rubric = _load(BENCH / "rubric.py", "_mcd_rubric_under_test")
baseline = _load(BENCH / "baseline_sut.py", "_mcd_baseline_under_test")


def _analyse(
    tmp_path: Path,
    dockerfile: str,
    files: dict[str, str] | None = None,
    input_text: str | None = None,
    engine: Any = None,
) -> Any:
    """Write a build context and analyse ``dockerfile`` in it (static mode by default)."""
    for rel, content in (files or {}).items():
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    (tmp_path / "Dockerfile").write_text(dockerfile, encoding="utf-8")
    return rubric.analyse(dockerfile, tmp_path, input_text=input_text, engine=engine)


def _blocks(analysis: Any) -> list[str]:
    return sorted(code for code in analysis.codes if code in rubric.BLOCK_CODES)


GOOD_PY = """\
FROM cgr.dev/chainguard/python:latest-dev AS builder
WORKDIR /app
RUN python -m venv /app/venv
COPY requirements.txt .
RUN /app/venv/bin/pip install -r requirements.txt
FROM cgr.dev/chainguard/python:latest
WORKDIR /app
COPY --from=builder /app/venv /app/venv
COPY app.py .
ENTRYPOINT ["/app/venv/bin/python", "app.py"]
"""
PY_FILES = {"requirements.txt": "flask==3.1.3\n", "app.py": "print('hi')\n"}


@pytest.fixture(autouse=True)
def _static_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process results never depend on whether this machine has a container engine."""
    monkeypatch.setattr(rubric, "detect_engine", lambda timeout_s=5.0: None)


def _workspace_from(case_dir: Path, dest: Path, dockerfile: Path | None = None) -> Path:
    shutil.copytree(case_dir / "input", dest)
    if dockerfile is not None:
        shutil.copyfile(dockerfile, dest / "Dockerfile")
    return dest


# -- the shipped cases -------------------------------------------------------------------


@pytest.mark.parametrize("case_dir", CASE_DIRS, ids=CASE_IDS)
def test_expected_dockerfile_scores_one(case_dir: Path, tmp_path: Path) -> None:
    ws = _workspace_from(case_dir, tmp_path / "ws", case_dir / "expected" / "Dockerfile")
    case = CaseInfo(case_id=case_dir.name, case_dir=case_dir)
    result = rubric.score(case, HarnessOutput(workspace=ws))
    assert result["score"] == 1.0, result
    assert set(result["breakdown"].values()) == {1.0}
    assert [fm["code"] for fm in result["failure_modes"]] == ["build.static_only"]


@pytest.mark.parametrize("case_dir", CASE_DIRS, ids=CASE_IDS)
def test_unchanged_input_scores_zero_with_block_modes(case_dir: Path, tmp_path: Path) -> None:
    """What the harness's noop SUT leaves behind must fail."""
    ws = _workspace_from(case_dir, tmp_path / "ws")
    result = rubric.score(CaseInfo(case_id=case_dir.name, case_dir=case_dir), HarnessOutput(ws))
    codes = {fm["code"] for fm in result["failure_modes"]}
    assert result["score"] == 0.0
    assert "base.not_chainguard" in codes
    assert codes & rubric.BLOCK_CODES


def test_good_python_dockerfile(tmp_path: Path) -> None:
    analysis = _analyse(tmp_path, GOOD_PY, PY_FILES)
    assert analysis.score == 1.0
    assert analysis.codes == ["build.static_only"]


# -- final stage ---------------------------------------------------------------------------


def test_shell_form_cmd_in_final_stage(tmp_path: Path) -> None:
    text = GOOD_PY.replace('ENTRYPOINT ["/app/venv/bin/python", "app.py"]', "CMD python app.py")
    analysis = _analyse(tmp_path, text, PY_FILES)
    assert "final.has_shell_form" in analysis.codes
    assert analysis.breakdown["EXEC_FORM"] == 0.0
    assert analysis.score == 0.0


def test_exec_form_that_runs_a_shell_is_shell_form(tmp_path: Path) -> None:
    text = GOOD_PY.replace(
        'ENTRYPOINT ["/app/venv/bin/python", "app.py"]', 'CMD ["/bin/sh", "-c", "python app.py"]'
    )
    assert "final.has_shell_form" in _analyse(tmp_path, text, PY_FILES).codes


def test_shell_form_healthcheck_in_final_stage(tmp_path: Path) -> None:
    text = GOOD_PY + "HEALTHCHECK --interval=5s CMD curl -f http://localhost/\n"
    assert "final.has_shell_form" in _analyse(tmp_path, text, PY_FILES).codes


def test_npm_start_in_exec_form_is_a_package_manager(tmp_path: Path) -> None:
    text = (
        "FROM cgr.dev/chainguard/node:latest-dev AS b\nRUN npm install\n"
        "FROM cgr.dev/chainguard/node:latest\nCOPY --from=b /app /app\n"
        'CMD ["npm", "start"]\n'
    )
    analysis = _analyse(tmp_path, text)
    assert "final.has_package_manager" in analysis.codes
    assert analysis.score == 0.0


def test_apk_in_final_stage(tmp_path: Path) -> None:
    text = GOOD_PY.replace("COPY app.py .", "COPY app.py .\nRUN apk add --no-cache curl")
    analysis = _analyse(tmp_path, text, PY_FILES)
    assert "final.has_package_manager" in analysis.codes
    assert analysis.breakdown["SHELL_FREE"] == 0.0
    assert analysis.score == 0.0


def test_plain_run_in_final_stage(tmp_path: Path) -> None:
    text = GOOD_PY.replace("COPY app.py .", "COPY app.py .\nRUN chmod +x app.py")
    analysis = _analyse(tmp_path, text, PY_FILES)
    assert "final.has_run" in analysis.codes
    assert analysis.score == 0.0


def test_run_inherited_through_from_stage_counts(tmp_path: Path) -> None:
    text = (
        "FROM cgr.dev/chainguard/python:latest-dev AS base\nRUN pip install flask\n"
        'FROM base\nENTRYPOINT ["python"]\n'
    )
    analysis = _analyse(tmp_path, text)
    assert {"final.has_package_manager", "final.dev_image"} <= set(analysis.codes)


@pytest.mark.parametrize(
    "user",
    [
        "root",
        "0",
        "0:0",
        "root:root",
        # BuildKit expands the argument before it is used: each of these runs as root
        "00",
        '"root"',
        "'root'",
        "r\\oot",
        "${U:-0}",
        "$UID",
    ],
)
def test_user_root_final(tmp_path: Path, user: str) -> None:
    analysis = _analyse(tmp_path, GOOD_PY + f"USER {user}\n", PY_FILES)
    assert "final.runs_as_root" in analysis.codes
    assert analysis.breakdown["NON_ROOT"] == 0.0
    assert analysis.score == 0.0


def test_a_literal_non_root_user_still_passes(tmp_path: Path) -> None:
    for user in ("nonroot", "65532", "65532:65532", "app-user"):
        analysis = _analyse(tmp_path, GOOD_PY + f"USER {user}\n", PY_FILES)
        assert analysis.breakdown["NON_ROOT"] == 1.0, (user, analysis.failure_modes)


def test_user_root_in_builder_only_is_fine(tmp_path: Path) -> None:
    text = GOOD_PY.replace("WORKDIR /app\nRUN", "USER root\nWORKDIR /app\nRUN", 1)
    text += "USER nonroot\n"
    analysis = _analyse(tmp_path, text, PY_FILES)
    assert analysis.score == 1.0, analysis.failure_modes


def test_no_user_line_is_not_required(tmp_path: Path) -> None:
    assert "USER" not in GOOD_PY
    assert _analyse(tmp_path, GOOD_PY, PY_FILES).breakdown["NON_ROOT"] == 1.0


def test_dev_image_as_final(tmp_path: Path) -> None:
    text = GOOD_PY.replace(
        "FROM cgr.dev/chainguard/python:latest\n", "FROM cgr.dev/chainguard/python:3.12-dev\n"
    )
    analysis = _analyse(tmp_path, text, PY_FILES)
    assert "final.dev_image" in analysis.codes
    assert analysis.breakdown["SHELL_FREE"] == 0.0
    assert analysis.score == 0.0


def test_toolchain_image_as_final(tmp_path: Path) -> None:
    text = 'FROM cgr.dev/chainguard/go:latest\nCOPY main.go .\nENTRYPOINT ["/app"]\n'
    assert "final.dev_image" in _analyse(tmp_path, text, {"main.go": ""}).codes


# -- bases ---------------------------------------------------------------------------------


def test_non_chainguard_final_base(tmp_path: Path) -> None:
    text = GOOD_PY.replace(
        "FROM cgr.dev/chainguard/python:latest\n", "FROM gcr.io/distroless/python3\n"
    )
    analysis = _analyse(tmp_path, text, PY_FILES)
    assert "base.not_chainguard" in analysis.codes
    assert analysis.breakdown["BASE_IMAGE_SWAPPED"] == 0.0
    assert analysis.score == 0.0


def test_non_chainguard_builder_base(tmp_path: Path) -> None:
    text = GOOD_PY.replace("cgr.dev/chainguard/python:latest-dev", "python:3.12")
    analysis = _analyse(tmp_path, text, PY_FILES)
    assert "base.not_chainguard" in analysis.codes
    assert analysis.score == 0.0


@pytest.mark.parametrize(
    "image",
    [
        "cgr.dev/chainguard/python@sha256:" + "a" * 64,
        "cgr.dev/chainguard/python:latest@sha256:" + "b" * 64,
        "cgr.dev/my-org.example/python:3.12",
    ],
)
def test_digest_pins_and_other_orgs_are_chainguard(tmp_path: Path, image: str) -> None:
    text = GOOD_PY.replace("FROM cgr.dev/chainguard/python:latest\n", f"FROM {image}\n")
    analysis = _analyse(tmp_path, text, PY_FILES)
    assert analysis.score == 1.0, analysis.failure_modes


def test_lookalike_registry_is_not_chainguard(tmp_path: Path) -> None:
    text = GOOD_PY.replace(
        "FROM cgr.dev/chainguard/python:latest\n", "FROM cgr.dev.evil.example/chainguard/python\n"
    )
    assert "base.not_chainguard" in _analyse(tmp_path, text, PY_FILES).codes


def test_global_arg_in_from_is_substituted(tmp_path: Path) -> None:
    text = "ARG TAG=latest\n" + GOOD_PY.replace(
        "FROM cgr.dev/chainguard/python:latest\n", "FROM cgr.dev/chainguard/python:${TAG}\n"
    )
    assert _analyse(tmp_path, text, PY_FILES).score == 1.0


# -- COPY --from ---------------------------------------------------------------------------


def test_dangling_from(tmp_path: Path) -> None:
    text = GOOD_PY.replace("--from=builder", "--from=bulider")
    analysis = _analyse(tmp_path, text, PY_FILES)
    assert "copy.dangling_from" in analysis.codes
    assert analysis.breakdown["BUILD_PASSES"] == 0.0
    assert analysis.score == 0.0


def test_from_later_stage_is_dangling(tmp_path: Path) -> None:
    text = (
        "FROM cgr.dev/chainguard/static:latest AS first\nCOPY --from=later /x /x\n"
        'FROM cgr.dev/chainguard/go:latest AS later\nRUN go version\nENTRYPOINT ["/x"]\n'
    )
    assert "copy.dangling_from" in _analyse(tmp_path, text).codes


def test_from_numeric_index(tmp_path: Path) -> None:
    assert _analyse(tmp_path, GOOD_PY.replace("--from=builder", "--from=0"), PY_FILES).score == 1.0
    text = GOOD_PY.replace("--from=builder", "--from=1")
    assert "copy.dangling_from" in _analyse(tmp_path, text, PY_FILES).codes


def test_from_external_image(tmp_path: Path) -> None:
    text = GOOD_PY.replace("--from=builder", "--from=cgr.dev/chainguard/python:latest-dev")
    analysis = _analyse(tmp_path, text, PY_FILES)
    assert "copy.from_external_image" in analysis.codes
    assert analysis.score == 0.0


# -- stages, context, build ----------------------------------------------------------------


def test_one_stage_static_image_with_exec_entrypoint_is_fine(tmp_path: Path) -> None:
    text = (
        "FROM cgr.dev/chainguard/static:latest\n"
        "COPY hello /usr/local/bin/hello\n"
        'ENTRYPOINT ["/usr/local/bin/hello"]\n'
    )
    before = 'FROM scratch\nCOPY hello /usr/local/bin/hello\nENTRYPOINT ["/usr/local/bin/hello"]\n'
    analysis = _analyse(tmp_path, text, {"hello": "binary"}, input_text=before)
    assert analysis.score == 1.0, analysis.failure_modes


def test_dropping_the_build_of_an_input_that_builds_is_a_warning(tmp_path: Path) -> None:
    text = (
        "FROM cgr.dev/chainguard/static:latest\n"
        "COPY hello /usr/local/bin/hello\n"
        'ENTRYPOINT ["/usr/local/bin/hello"]\n'
    )
    before = "FROM golang:1.22\nCOPY hello .\nRUN go build -o hello .\n"
    analysis = _analyse(tmp_path, text, {"hello": "binary"}, input_text=before)
    assert "stage.build_dropped" in analysis.codes
    assert _blocks(analysis) == []
    assert analysis.breakdown["MULTI_STAGE"] == 0.0
    assert 0.0 < analysis.score < 1.0


def test_dropping_an_app_file_is_a_warning(tmp_path: Path) -> None:
    before = "FROM python:3.12\nCOPY requirements.txt app.py util.py ./\nRUN pip install x\n"
    analysis = _analyse(tmp_path, GOOD_PY, PY_FILES, input_text=before)
    assert "app.sources_dropped" in analysis.codes
    assert analysis.breakdown["APP_PRESERVED"] == 0.0
    assert _blocks(analysis) == []


def test_copy_dot_preserves_every_input_source(tmp_path: Path) -> None:
    before = "FROM python:3.12\nCOPY requirements.txt app.py ./\nRUN pip install x\n"
    text = GOOD_PY.replace("COPY app.py .", "COPY . .")
    assert _analyse(tmp_path, text, PY_FILES, input_text=before).score == 1.0


def test_missing_copy_source_fails_build_passes(tmp_path: Path) -> None:
    analysis = _analyse(tmp_path, GOOD_PY, {"requirements.txt": "flask\n"})
    assert "build.context_missing" in analysis.codes
    assert analysis.breakdown["BUILD_PASSES"] == 0.0
    assert analysis.score == 0.0


def test_copy_source_outside_context_fails(tmp_path: Path) -> None:
    text = GOOD_PY.replace("COPY app.py .", "COPY ../secret app.py")
    assert "build.context_missing" in _analyse(tmp_path, text, PY_FILES).codes


def test_copy_glob_source_must_match(tmp_path: Path) -> None:
    ok = GOOD_PY.replace("COPY app.py .", "COPY *.py .")
    assert _analyse(tmp_path / "a", ok, PY_FILES).score == 1.0
    bad = GOOD_PY.replace("COPY app.py .", "COPY *.js .")
    assert "build.context_missing" in _analyse(tmp_path / "b", bad, PY_FILES).codes


def test_malformed_exec_json(tmp_path: Path) -> None:
    text = GOOD_PY.replace('"app.py"]', '"app.py",]')
    analysis = _analyse(tmp_path, text, PY_FILES)
    assert "dockerfile.malformed_exec_json" in analysis.codes
    assert analysis.breakdown["BUILD_PASSES"] == 0.0


class _FakeEngine:
    def __init__(self, ok: bool) -> None:
        self.ok = ok
        self.calls = 0

    @property
    def name(self) -> str:
        return "fake"

    def build(self, context: Path, timeout_s: float) -> tuple[bool, str]:
        self.calls += 1
        return self.ok, "fake build"


def test_engine_build_replaces_static_only(tmp_path: Path) -> None:
    engine = _FakeEngine(ok=True)
    analysis = _analyse(tmp_path, GOOD_PY, PY_FILES, engine=engine)
    assert engine.calls == 1
    assert analysis.codes == []
    assert analysis.score == 1.0


def test_engine_build_failure_blocks(tmp_path: Path) -> None:
    analysis = _analyse(tmp_path, GOOD_PY, PY_FILES, engine=_FakeEngine(ok=False))
    assert "build.failed" in analysis.codes
    assert analysis.breakdown["BUILD_PASSES"] == 0.0
    assert analysis.score == 0.0


# -- unparseable input ---------------------------------------------------------------------


def test_heredoc_rejected(tmp_path: Path) -> None:
    text = GOOD_PY.replace(
        "RUN python -m venv /app/venv\n", "RUN <<EOF\npython -m venv /app/venv\nEOF\n"
    )
    analysis = _analyse(tmp_path, text, PY_FILES)
    assert analysis.codes == ["dockerfile.heredoc_unsupported"]
    assert analysis.score == 0.0
    assert set(analysis.breakdown.values()) == {0.0}


@pytest.mark.parametrize(
    "text",
    ["", "# only a comment\n", "RUN echo hi\nFROM cgr.dev/chainguard/static\n", "FROM a b c d\n"],
)
def test_unparseable(tmp_path: Path, text: str) -> None:
    analysis = _analyse(tmp_path, text)
    assert analysis.codes == ["dockerfile.unparseable"]
    assert analysis.score == 0.0


def test_missing_dockerfile(tmp_path: Path) -> None:
    case = CaseInfo(case_id="x", case_dir=tmp_path / "case")
    result = rubric.score(case, HarnessOutput(workspace=tmp_path))
    assert [fm["code"] for fm in result["failure_modes"]] == ["dockerfile.missing"]
    assert result["score"] == 0.0


# -- BuildKit's reading of the file (issue 25, item 11) -------------------------------------
# Each text below means one thing to BuildKit and (before the fix) another to the rubric. The
# expectation is always what BuildKit does (moby/buildkit frontend/dockerfile/parser).

# The builder of GOOD_PY whose last RUN ends with a continuation: BuildKit swallows whatever
# follows the skipped lines into that RUN (`echo FROM cgr.dev/chainguard/python:latest ...`).
_HIDDEN_FINAL = GOOD_PY.replace("requirements.txt\nFROM", "requirements.txt && echo \\\n{gap}FROM")


@pytest.mark.parametrize(
    "gap",
    ["\n", "   \t\n", "\n\n", "# a comment\n", "   # an indented comment\n", "\n# c\n\n"],
    ids=["empty", "blank", "two-empty", "comment", "indented-comment", "mixed"],
)
def test_lines_skipped_inside_a_continuation_do_not_end_it(tmp_path: Path, gap: str) -> None:
    """Empty, blank and comment lines inside a continuation are skipped: the FROM that
    follows is an argument of the RUN, so the real final stage is the -dev builder."""
    text = _HIDDEN_FINAL.format(gap=gap)
    stages = rubric.parse_stages(text)
    assert [s.image for s in stages] == ["cgr.dev/chainguard/python:latest-dev"]
    runs = [" ".join(i.value.split()) for i in stages[0].instrs if i.instruction == "RUN"]
    assert runs[-1].endswith("&& echo FROM cgr.dev/chainguard/python:latest")
    analysis = _analyse(tmp_path, text, PY_FILES)
    assert {"final.dev_image", "final.has_package_manager"} <= set(analysis.codes)
    assert analysis.breakdown["SHELL_FREE"] == 0.0
    assert analysis.score == 0.0


def test_instruction_line_numbers_are_physical_lines(tmp_path: Path) -> None:
    text = "# c\n\nFROM cgr.dev/chainguard/static \\\n\n  AS s\nUSER \\\n# x\n  root\n"
    stages = rubric.parse_stages(text)
    assert (stages[0].line, stages[0].name) == (3, "s")
    assert [(i.instruction, i.value.strip(), i.line) for i in stages[0].instrs] == [
        ("USER", "root", 6)
    ]


# USER root hidden behind a line that dockerfile-parse continues and BuildKit does not.
_ROOT_AFTER = GOOD_PY.replace("COPY app.py .\n", "COPY app.py .\nLABEL note={tail}\nUSER root\n")


@pytest.mark.parametrize(
    ("prefix", "tail"),
    [
        ("", "a\\\\"),  # an escaped escape token ends the line: no continuation
        ("", "a\\\f"),  # only spaces and tabs may follow the escape token
        ("# escape=`\n", "a\\"),  # with escape=` a backslash is an ordinary character
        ("# check=skip=all\n# escape=`\n", "a\\"),  # check is a directive too
        ("# syntax=docker/dockerfile:1\n# check=error=false\n# escape=`\n", "a\\"),
    ],
    ids=["double-backslash", "formfeed", "escape", "check-then-escape", "three-directives"],
)
def test_lines_that_buildkit_does_not_continue(tmp_path: Path, prefix: str, tail: str) -> None:
    text = prefix + _ROOT_AFTER.format(tail=tail)
    analysis = _analyse(tmp_path, text, PY_FILES)
    assert "final.runs_as_root" in analysis.codes, analysis.failure_modes
    assert analysis.score == 0.0


def test_backtick_escape_directive_after_check_continues_lines(tmp_path: Path) -> None:
    text = "# check=skip=all\n# escape=`\n" + _HIDDEN_FINAL.replace("\\\n{gap}", "`\n")
    stages = rubric.parse_stages(text)
    assert [s.image for s in stages] == ["cgr.dev/chainguard/python:latest-dev"]
    analysis = _analyse(tmp_path, text, PY_FILES)
    assert "final.dev_image" in analysis.codes
    assert analysis.score == 0.0


def test_escape_directive_is_honoured_for_continuations(tmp_path: Path) -> None:
    text = "# escape=`\n" + GOOD_PY.replace(
        "RUN python -m venv /app/venv", "RUN python -m venv `\n    /app/venv"
    )
    stages = rubric.parse_stages(text)
    assert " ".join(stages[0].instrs[1].value.split()) == "python -m venv /app/venv"
    assert _analyse(tmp_path, text, PY_FILES).score == 1.0


@pytest.mark.parametrize(
    "prefix",
    [
        "# escape=`\n# escape=`\n",  # a directive may appear once
        "# syntax=docker/dockerfile:1\n#syntax=docker/dockerfile:1\n",
        "# escape=x\n",  # only ` and \ are escape tokens
    ],
    ids=["duplicate-escape", "duplicate-syntax", "bad-escape"],
)
def test_directive_errors_are_unparseable(tmp_path: Path, prefix: str) -> None:
    analysis = _analyse(tmp_path, prefix + GOOD_PY, PY_FILES)
    assert analysis.codes == ["dockerfile.unparseable"], analysis.failure_modes
    assert analysis.score == 0.0


@pytest.mark.parametrize(
    "line",
    [
        "# syntax=docker/dockerfile:1",
        "#syntax = docker/dockerfile:1.7",
        "# syntax=docker/dockerfile:1.7.1-labs",
        "# syntax=docker/dockerfile",
        "# SYNTAX=docker.io/docker/dockerfile:1@sha256:" + "c" * 64,
        "#!/usr/bin/env docker-build\n# syntax=docker/dockerfile:1",
        "\ufeff# syntax=docker/dockerfile:1",
    ],
)
def test_standard_frontend_still_passes(tmp_path: Path, line: str) -> None:
    analysis = _analyse(tmp_path, line + "\n" + GOOD_PY, PY_FILES)
    assert analysis.score == 1.0, analysis.failure_modes
    assert analysis.codes == ["build.static_only"]


@pytest.mark.parametrize(
    "head",
    [
        "# syntax=evil.example/frontend",
        "# syntax=evil.example/frontend:1 --flag",
        "#syntax=docker/dockerfile-upstream:master",
        "# syntax=docker/dockerfile:1.0.0-experimental",
        "# syntax=evil.example/docker/dockerfile:1",
        "# escape=`\n# syntax=evil.example/frontend",
        "#!/bin/sh\n# syntax=evil.example/frontend",
        "\ufeff# syntax=evil.example/frontend",
        "   # syntax=evil.example/frontend",
        "// syntax=evil.example/frontend",
    ],
)
def test_untrusted_frontend_blocks(tmp_path: Path, head: str) -> None:
    """A frontend other than docker/dockerfile decides what the whole file means."""
    analysis = _analyse(tmp_path, head + "\n" + GOOD_PY, PY_FILES)
    assert analysis.codes == ["dockerfile.untrusted_frontend"], analysis.failure_modes
    assert "evil" in analysis.failure_modes[0]["detail"] or "docker/" in head
    assert analysis.score == 0.0
    assert set(analysis.breakdown.values()) == {0.0}


@pytest.mark.parametrize(
    "head",
    [
        "# a comment\n# syntax=evil.example/frontend\n",
        "\n# syntax=evil.example/frontend\n",
        "ARG TAG=latest\n# syntax=evil.example/frontend\n",
    ],
    ids=["after-comment", "after-blank", "after-instruction"],
)
def test_syntax_after_the_directive_block_is_a_comment(tmp_path: Path, head: str) -> None:
    analysis = _analyse(tmp_path, head + GOOD_PY, PY_FILES)
    assert analysis.score == 1.0, analysis.failure_modes


def test_syntax_line_inside_the_file_is_a_comment(tmp_path: Path) -> None:
    text = GOOD_PY.replace("COPY app.py .\n", "COPY app.py .\n# syntax=evil.example/frontend\n")
    assert _analyse(tmp_path, text, PY_FILES).score == 1.0


def test_json_syntax_document_names_a_frontend(tmp_path: Path) -> None:
    """DetectSyntax also reads a file that is one JSON object with a "syntax" key."""
    analysis = _analyse(tmp_path, '{"syntax": "evil.example/frontend", "x": 1}\n')
    assert analysis.codes == ["dockerfile.untrusted_frontend"]


def test_line_over_the_scanner_limit_is_unparseable(tmp_path: Path) -> None:
    """BuildKit reads lines with bufio.Scanner: more than 65535 bytes is ErrTooLong."""
    ok = GOOD_PY + "LABEL pad=" + "x" * (65535 - len("LABEL pad=")) + "\n"
    assert _analyse(tmp_path / "ok", ok, PY_FILES).score == 1.0
    long = GOOD_PY + "LABEL pad=" + "x" * 65536 + "\n"
    assert _analyse(tmp_path / "long", long, PY_FILES).codes == ["dockerfile.unparseable"]


def test_heredoc_started_on_a_continuation_line_is_rejected(tmp_path: Path) -> None:
    """``RUN \\`` + ``cat <<USER`` is one heredoc RUN to BuildKit: its body (a FROM ...)
    is data, not a stage."""
    text = (
        GOOD_PY.replace(
            "FROM cgr.dev/chainguard/python:latest\n",
            "RUN \\\n  cat <<USER\nFROM cgr.dev/chainguard/python:latest\n",
        )
        + "USER\n"
    )
    analysis = _analyse(tmp_path, text, PY_FILES)
    assert analysis.codes == ["dockerfile.heredoc_unsupported"]
    assert analysis.score == 0.0


def test_here_string_and_shift_are_not_heredocs(tmp_path: Path) -> None:
    text = GOOD_PY.replace(
        "RUN python -m venv /app/venv", 'RUN python -m venv /app/venv && cat <<<"$((1<<2))"'
    )
    assert _analyse(tmp_path, text, PY_FILES).score == 1.0


def test_instruction_separated_by_non_ascii_space_is_unknown(tmp_path: Path) -> None:
    """BuildKit splits the instruction word on [ \\t\\v\\f\\r] only: ``USER\\u00a0root`` is
    an unknown instruction (a build error), not USER."""
    text = GOOD_PY + "USER\u00a0nonroot\n"
    analysis = _analyse(tmp_path, text, PY_FILES)
    assert analysis.codes == ["dockerfile.unparseable"], analysis.failure_modes


# -- contract ------------------------------------------------------------------------------


def test_taxonomy_matches_rubric() -> None:
    data = yaml.safe_load((BENCH / "failure_modes.yaml").read_text(encoding="utf-8"))
    modes = data["failure_modes"]
    assert data["version"] == 1
    assert {c for c, m in modes.items() if m["severity"] == "block"} == rubric.BLOCK_CODES
    assert modes["build.static_only"]["severity"] == "info"
    assert not any(c.startswith(("sut.", "rubric.", "canary.", "harness.")) for c in modes)
    source = (BENCH / "rubric.py").read_text(encoding="utf-8")
    for code in modes:
        assert f'"{code}"' in source, f"{code} is never emitted"


def test_breakdown_keys_and_weights() -> None:
    keys = {str(k) for k in rubric.BreakdownKey}
    required = {"BASE_IMAGE_SWAPPED", "SHELL_FREE", "BUILD_PASSES", "NON_ROOT", "MULTI_STAGE"}
    assert required <= keys
    assert all(str(k.value) == k.name for k in rubric.BreakdownKey)
    assert not any(part in k.lower() for k in keys for part in FORBIDDEN_KEY_PARTS)
    assert {str(k) for k in rubric.WEIGHTS} == keys
    assert sum(rubric.WEIGHTS.values()) == pytest.approx(1.0)


def test_task_class_loads_with_the_harness_loader() -> None:
    loader = pytest.importorskip("pytest_codegenie_eval.taskclass.loader")
    loaded = loader.load_task_class(BENCH)
    assert loaded.name == "migration-chainguard-distroless"
    assert loaded.task_class.min_cases_for_promotion == {"bronze": 10}
    assert loaded.task_class.baseline_sut == "baseline_sut.py"
    assert [e.error for e in loaded.cases] == [None] * len(CASE_DIRS)
    assert {e.case.curation_class for e in loaded.cases if e.case} == {"held-out"}
    assert loaded.task_md.strip()


# -- real subprocesses (offline) -----------------------------------------------------------

# PATH holds only the interpreter's directory: no `docker` is found, so the subprocesses stay
# offline and take the static BUILD_PASSES path on every machine (engine-backed builds are
# exercised in process with a fake engine).
_SCRUBBED_ENV = {
    "PATH": str(Path(sys.executable).parent),
    "LANG": "C.UTF-8",
    "TZ": "UTC",
    "PYTHONHASHSEED": "0",
}


def _run_rubric(case_dir: Path, workspace: Path, cwd: Path) -> dict[str, Any]:
    request = {
        "case": {"case_id": case_dir.name, "title": "t", "rubric_timeout_s": 60},
        "case_dir": str(case_dir),
        "harness_output": {
            "workspace": str(workspace),
            "diff": "",
            "sut_exit_code": 0,
            "stdout_tail": "",
            "stderr_tail": "",
            "cost_usd": 0.0,
            "duration_s": 0.1,
        },
    }
    proc = subprocess.run(
        [sys.executable, "-I", str(BENCH / "rubric.py")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_SCRUBBED_ENV,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    result: dict[str, Any] = json.loads(lines[0])
    return result


def test_rubric_subprocess_protocol(tmp_path: Path) -> None:
    case_dir = CASE_DIRS[0]
    ws = _workspace_from(case_dir, tmp_path / "ws", case_dir / "expected" / "Dockerfile")
    (tmp_path / "cwd").mkdir()
    result = _run_rubric(case_dir, ws, tmp_path / "cwd")
    assert result["case_id"] == case_dir.name
    assert result["score"] == 1.0
    assert set(result["breakdown"]) == {str(k) for k in rubric.BreakdownKey}
    codes = [fm["code"] for fm in result["failure_modes"]]
    assert codes == ["build.static_only"]


@pytest.mark.parametrize("case_dir", CASE_DIRS, ids=CASE_IDS)
def test_baseline_sut_end_to_end(case_dir: Path, tmp_path: Path) -> None:
    ws = _workspace_from(case_dir, tmp_path / "ws")
    proc = subprocess.run(
        [sys.executable, "-I", str(BENCH / "baseline_sut.py"), str(ws)],
        capture_output=True,
        text=True,
        cwd=ws,
        env=_SCRUBBED_ENV,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (ws / "Dockerfile").read_text() != (case_dir / "input" / "Dockerfile").read_text()
    (tmp_path / "cwd").mkdir()
    result = _run_rubric(case_dir, ws, tmp_path / "cwd")
    assert result["score"] == 1.0, result


def test_baseline_refuses_unknown_language(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM ruby:3\nCMD ruby app.rb\n", encoding="utf-8")
    assert baseline.migrate(tmp_path) == 3
    assert (tmp_path / "Dockerfile").read_text() == "FROM ruby:3\nCMD ruby app.rb\n"


def test_baseline_handles_gunicorn_and_lockfile_variants(tmp_path: Path) -> None:
    py = tmp_path / "py"
    py.mkdir()
    (py / "requirements.txt").write_text("gunicorn\n")
    (py / "app.py").write_text("")
    (py / "Dockerfile").write_text(
        "FROM python:3.12\nWORKDIR /srv\nCOPY . .\nRUN pip install -r requirements.txt\n"
        'CMD ["gunicorn", "app:app"]\n'
    )
    assert baseline.migrate(py) == 0
    text = (py / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["gunicorn", "app:app"]' in text
    before = "FROM python:3.12\nCOPY . .\nRUN pip install x\n"
    assert rubric.analyse(text, py, input_text=before).score == 1.0

    node = tmp_path / "node"
    node.mkdir()
    (node / "package.json").write_text(
        '{"main": "index.js", "scripts": {"serve": "node index.js --port 80"},'
        ' "dependencies": {"express": "4.21.2"}}'
    )
    (node / "package-lock.json").write_text("{}")
    (node / "index.js").write_text("")
    (node / "Dockerfile").write_text(
        "FROM node:20\nCOPY package*.json index.js ./\nRUN npm ci\nCMD npm run serve\n"
    )
    assert baseline.migrate(node) == 0
    text = (node / "Dockerfile").read_text()
    assert "RUN npm ci --omit=dev" in text
    assert 'ENTRYPOINT ["node", "index.js", "--port", "80"]' in text
    assert rubric.analyse(text, node).score == 1.0


def test_input_globs_and_dot_are_expanded_against_the_input_directory(tmp_path: Path) -> None:
    inp = tmp_path / "input"
    inp.mkdir()
    for name in ("package.json", "package-lock.json", "server.js", "Dockerfile"):
        (inp / name).write_text("{}")
    (inp / ".codegenie").mkdir()
    (inp / ".codegenie" / "task.md").write_text("x")
    text = (
        "FROM cgr.dev/chainguard/node:latest-dev AS b\nCOPY package.json package-lock.json ./\n"
        "RUN npm ci\nFROM cgr.dev/chainguard/node:latest\nCOPY --from=b /app/node_modules ./n\n"
        'COPY package.json server.js ./\nENTRYPOINT ["node", "server.js"]\n'
    )
    for before in (
        "FROM node\nCOPY package*.json ./\nCOPY server.js ./\n",
        "FROM node\nCOPY . .\n",
    ):
        analysis = rubric.analyse(text, inp, input_text=before, input_context=inp)
        assert analysis.score == 1.0, (before, analysis.failure_modes)
    narrowed = text.replace("COPY package.json server.js ./", "COPY package.json ./")
    analysis = rubric.analyse(narrowed, inp, input_text="FROM node\nCOPY . .\n", input_context=inp)
    assert "app.sources_dropped" in analysis.codes
    assert "server.js" in analysis.failure_modes[0]["detail"]
