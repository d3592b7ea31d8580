"""What the plugin prints of untrusted text (output/untrusted_text.py): whatever a SUT or a rubric
wrote, the printed form holds no character a terminal or a log parser obeys, no line that
GitHub's runner reads as a workflow command, and still every character of the text."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_codegenie_eval.models import BenchRunReport, CaseResult, FailureMode
from pytest_codegenie_eval.output.github import step_summary, workflow_annotations
from pytest_codegenie_eval.output.untrusted_text import (
    DOTNET_WHITESPACE,
    UNSAFE_OUTPUT_ENV,
    fence_token,
    fenced,
    safe_block,
    safe_line,
    safe_lines,
    visible,
)
from pytest_codegenie_eval.pytest_plugin.items import format_result

# .NET's Char.IsWhiteSpace, as its documentation lists it (what the runner's TrimStart()
# strips before it looks for "::"), written out here independently of the module
NET_WHITESPACE = (
    "\t\n\x0b\x0c\r\x85 \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u202f\u205f\u3000\u2028\u2029"
)
# and more, to be strict: older .NET (U+180E), .NET Framework 3.5 (U+200B, U+FEFF), and
# everything Python calls whitespace
TRIMMED = NET_WHITESPACE + "\u180e\u200b\ufeff\x1c\x1d\x1e\x1f"

# interesting pieces, mixed with any character at all (lone surrogates included)
PIECES = [
    "\x1b",
    "\x07",
    "\x00",
    "\x7f",
    "\x9b",
    "\x85",
    "\r",
    "\n",
    "\r\n",
    "\t",
    " ",
    "\u3000",
    "\u2028",
    "\u202e",
    "\u180e",
    "\ufeff",
    "\ud800",
    ":",
    "::",
    "#",
    "##[",
    "[",
    "\\",
    "\\\\",
    "x",
    "u",
    "1b",
    "00",
    "::stop-commands::abc",
    "\x1b]52;c;ZXZpbA==\x07",
]
texts = st.lists(
    st.one_of(
        st.sampled_from(PIECES),
        st.characters(exclude_categories=()),
        st.text(max_size=4),
    ),
    max_size=30,
).map("".join)

_ESCAPE = re.compile(r"\\(?:\\|x([0-9a-f]{2})|u([0-9a-f]{4}))")


def decode(shown: str) -> str:
    """The documented reading of a shown text: ``\\\\`` is a backslash, ``\\xNN`` and
    ``\\uNNNN`` the character they name, any other backslash itself."""

    def one(match: re.Match[str]) -> str:
        code = match.group(1) or match.group(2)
        return chr(int(code, 16)) if code else "\\"

    return _ESCAPE.sub(one, shown)


def obeyed(char: str) -> bool:
    """A character a terminal or a log reader may act on rather than show."""
    code = ord(char)
    return (
        (code < 0x20 and char != "\t")
        or 0x7F <= code <= 0x9F
        or 0xD800 <= code <= 0xDFFF
        or char in "\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    )


def reads_as_command(line: str) -> bool:
    """What GitHub's runner runs: ``::`` after TrimStart(), or ``##[`` anywhere."""
    return line.lstrip(TRIMMED).startswith("::") or "##[" in line


@pytest.fixture(autouse=True)
def _filters_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(UNSAFE_OUTPUT_ENV, raising=False)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)


@settings(max_examples=500, deadline=None)
@given(text=texts)
def test_a_safe_line_is_one_line_nothing_obeys_and_no_runner_reads_as_a_command(
    text: str,
) -> None:
    shown = safe_line(text)
    assert not [c for c in shown if obeyed(c)], shown
    assert not reads_as_command(shown), shown
    shown.encode("utf-8")  # printable: no lone surrogate left


@settings(max_examples=500, deadline=None)
@given(text=texts)
def test_safe_lines_split_at_newlines_only_and_each_is_safe(text: str) -> None:
    lines = safe_lines(text)
    assert len(lines) == text.replace("\r\n", "\n").count("\n") + 1
    for line in lines:
        assert not [c for c in line if obeyed(c)], line
        assert not reads_as_command(line), line


@settings(max_examples=500, deadline=None)
@given(text=texts)
def test_nothing_is_lost_every_shown_text_reads_back_exactly(text: str) -> None:
    assert decode(safe_line(text)) == text
    assert "\n".join(decode(line) for line in safe_lines(text)) == text.replace("\r\n", "\n")
    assert decode(visible(text)) == text


@settings(max_examples=300, deadline=None)
@given(text=texts)
def test_visible_keeps_newlines_and_shows_every_other_control(text: str) -> None:
    shown = visible(text)
    assert shown.count("\n") == text.count("\n")
    assert not [c for c in shown if obeyed(c) and c != "\n"], shown
    assert "##[" not in shown


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b]52;c;ZXZpbA==\x07", "\\x1b]52;c;ZXZpbA==\\x07"),  # OSC 52: clipboard write
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),  # window title
        ("\x1b[2J", "\\x1b[2J"),  # clear screen
        ("\x9b2J", "\\x9b2J"),  # the one-character C1 CSI
        ("a\x7fb\x00", "a\\x7fb\\x00"),
        ("::stop-commands::abc", "\\x3a:stop-commands::abc"),
        ("  ::add-mask::FAILED", "  \\x3a:add-mask::FAILED"),
        ("\u3000::error::forged", "\u3000\\x3a:error::forged"),  # .NET trims U+3000
        ("\t\xa0::notice::x", "\t\xa0\\x3a:notice::x"),
        ("ok ::not-at-the-start::x", "ok ::not-at-the-start::x"),
        ("text ##[add-mask]FAILED", "text ##\\x5badd-mask]FAILED"),  # legacy form: anywhere
        ("progress\r::warning::x", "progress\\x0d::warning::x"),  # lone CR: a new line
        ("a\nb", "a\\x0ab"),
        ("\u202eevil", "\\u202eevil"),  # bidi override
        ("'a\\nb' C:\\temp", "'a\\nb' C:\\temp"),  # a backslash that reads as one stays one
        ("C:\\x\\\\", "C:\\\\x\\\\\\"),  # and is doubled where it could read as an escape
        ("\\\x1b", "\\\\\\x1b"),
        ("plain text, ünïcode ✓", "plain text, ünïcode ✓"),
    ],
)
def test_safe_line_shows(text: str, shown: str) -> None:
    assert safe_line(text) == shown
    assert decode(shown) == text


@pytest.mark.parametrize(
    "space", sorted({*TRIMMED, *(chr(c) for c in range(0x3001) if chr(c).isspace())})
)
def test_no_leading_whitespace_hides_a_command(space: str) -> None:
    for lead in (space, space * 3, " " + space):
        text = lead + "::add-mask::FAILED"
        assert not reads_as_command(safe_line(text)), repr(safe_line(text))
        assert decode(safe_line(text)) == text
        # a newline or CRLF among them splits the line; no part is a command either
        assert not [line for line in safe_lines(text) if reads_as_command(line)]


def test_the_dotnet_whitespace_set_is_the_documented_one() -> None:
    assert set(NET_WHITESPACE) == DOTNET_WHITESPACE


def test_crlf_is_one_line_break_a_lone_cr_is_shown() -> None:
    assert safe_lines("one\r\ntwo\rthree\n") == ["one", "two\\x0dthree", ""]


@settings(max_examples=200, deadline=None)
@given(text=texts)
def test_under_github_actions_a_block_is_fenced_with_the_session_token(text: str) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GITHUB_ACTIONS", "true")
        lines = safe_block(text).split("\n")
    token = fence_token()
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    assert lines[0] == f"::stop-commands::{token}"
    assert lines[-1] == f"::{token}::"
    assert lines[1:-1] == safe_lines(text)
    assert not [line for line in lines[1:-1] if reads_as_command(line)]


def test_the_fence_is_github_only_and_wraps_something(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fenced(["a", "b"]) == ["a", "b"]
    assert safe_block("a\nb") == "a\nb"
    monkeypatch.setenv("GITHUB_ACTIONS", "false")
    assert fenced(["a"]) == ["a"]
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert fenced([]) == []
    assert fenced(["a"]) == [f"::stop-commands::{fence_token()}", "a", f"::{fence_token()}::"]
    assert fence_token() == fence_token()  # one token for the whole session


def test_the_test_hook_turns_every_filter_off(monkeypatch: pytest.MonkeyPatch) -> None:
    attack = "  ::add-mask::FAILED\n\x1b]0;pwned\x07 ##[add-mask]x"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv(UNSAFE_OUTPUT_ENV, "1")
    assert safe_line(attack) == attack
    assert safe_lines(attack) == attack.split("\n")
    assert visible(attack) == attack
    assert safe_block(attack) == attack
    assert fenced(["x"]) == ["x"]
    # only exactly "1" turns it off
    monkeypatch.setenv(UNSAFE_OUTPUT_ENV, "true")
    assert safe_line(attack) != attack


# -- where the plugin prints -----------------------------------------------------------------

HOSTILE_TAIL = (
    "::stop-commands::abc\n  ::add-mask::FAILED\n::error::forged\n"
    "\x1b]52;c;ZXZpbA==\x07\x1b]0;pwned\x07\x1b[2J\nprogress\r::warning::x\n"
)


def _hostile_result() -> CaseResult:
    return CaseResult(
        task_class="t",
        case_id="c",
        nodeid="bench/t/cases/c/case.toml::c",
        sut_exit_code=1,
        stdout_tail=HOSTILE_TAIL,
        stderr_tail=HOSTILE_TAIL,
        failure_modes=(
            FailureMode(
                code="sut.escaped_workspace",
                severity="block",
                detail="symlink(s) leading out of the workspace (removed before scoring): "
                "x\n::stop-commands::abc\x1b]0;pwned\x07 -> /tmp/\x1b[2J",
            ),
        ),
    )


@pytest.mark.parametrize("style", ["long", "short", "line", "no", "auto"])
@pytest.mark.parametrize("github", [True, False])
def test_a_failure_report_prints_nothing_obeyed(
    monkeypatch: pytest.MonkeyPatch, style: str, github: bool
) -> None:
    if github:
        monkeypatch.setenv("GITHUB_ACTIONS", "true")
    lines = format_result(_hostile_result(), style=style).split("\n")
    assert lines[0].startswith("codegenie case t/c: score 0.000")  # the headline stays first
    harness = {f"::stop-commands::{fence_token()}", f"::{fence_token()}::"} if github else set()
    for line in lines:
        assert not [c for c in line if obeyed(c)], line
        assert line in harness or not reads_as_command(line), line
    if style in ("line", "no"):
        assert len(lines) == 1
    elif github:
        assert lines[1] == f"::stop-commands::{fence_token()}"
        assert lines[-1] == f"::{fence_token()}::"
    if style in ("long", "auto"):
        text = "\n".join(lines)
        assert "  \\x3a:add-mask::FAILED" in text  # shown, not obeyed
        assert "\\x1b]52;c;ZXZpbA==\\x07" in text
        assert "progress\\x0d::warning::x" in text
        # a detail's second line stays indented under its failure mode
        assert "\n      \\x3a:stop-commands::abc\\x1b]0;pwned\\x07 -> /tmp/\\x1b[2J" in text


def test_annotations_and_the_step_summary_hold_no_control() -> None:
    report = BenchRunReport(
        run_id="ab" * 32,
        task_class="t\x1b]0;x\x07",
        created_at="2026-12-02T00:00:00+00:00",
        harness_version="0",
        cases=(_hostile_result(),),
    )
    (line,) = workflow_annotations([report])
    assert not [c for c in line if obeyed(c)], line
    assert line.startswith("::error file=bench/t/cases/c/case.toml,line=1,title=codegenie t")
    assert "\\x1b]0;pwned\\x07" in line
    assert "%0A::stop-commands::abc" in line  # the newline is data of the annotation
    summary = step_summary([(report, None)])
    assert not [c for c in summary if obeyed(c) and c != "\n"], summary
    assert "\\\\x1b]0;x\\\\x07" in summary  # shown, and its backslash escaped for Markdown
