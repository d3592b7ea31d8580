"""Nothing a SUT writes acts on a terminal or a CI log (output/untrusted_text.py).

A hostile SUT prints GitHub workflow commands (``::stop-commands::``, an indented
``::add-mask::``, forged ``::error``/``::notice`` lines, the older ``##[command]`` form) and
terminal escapes (OSC 52 clipboard write, window title, clear screen), or names a file after
them so that the name reaches a failure-mode detail. The whole pytest output is then read
the way GitHub's runner reads a log: the only commands it would run are the harness's own
``::error`` annotation and its ``::stop-commands::`` fences, and no ESC or BEL byte is
printed. With the filter off (the ``CODEGENIE_TEST_UNSAFE_OUTPUT=1`` test hook) the same
run silences the harness's annotation: the attack is real.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from pytest_codegenie_eval.output.untrusted_text import UNSAFE_OUTPUT_ENV

# .NET's Char.IsWhiteSpace (what the runner's TrimStart() strips), and more to be strict
TRIMMED = (
    "\t\n\x0b\x0c\r\x85 \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u202f\u205f\u3000\u2028\u2029\u180e\u200b\ufeff\x1c\x1d\x1e\x1f"
)
# the commands GitHub's runner registers (actions/runner, ActionCommandManager)
REGISTERED = {
    "add-mask",
    "add-matcher",
    "add-path",
    "debug",
    "echo",
    "endgroup",
    "error",
    "group",
    "notice",
    "remove-matcher",
    "save-state",
    "set-env",
    "set-output",
    "stop-commands",
    "warning",
}

PRINTS = r"""
import sys
lines = [
    "::stop-commands::abc",
    "  ::add-mask::FAILED",
    "::error::forged",
    "\u3000::notice title=forged::a forged notice",
    "progress\r::warning::forged after a carriage return",
    "text ##[add-mask]codegenie",
    "\x1b]52;c;ZXZpbA==\x07",
    "\x1b]0;pwned\x07",
    "\x1b[2J",
]
for stream in (sys.stdout, sys.stderr):
    stream.write("".join(line + "\n" for line in lines))
    stream.flush()
sys.exit(1)
"""

NAMES = r"""
import os, sys
# a link out of the workspace: the harness names it in sut.escaped_workspace
name = "x\n::stop-commands::abc\n\x1b]0;pwned\x07\x9b2J"
os.symlink("/nonexistent/\x1b]52;c;ZXZpbA==\x07", os.path.join(sys.argv[1], name))
"""


def runner_reads(output: bytes) -> list[tuple[str, str, str]]:
    """The commands GitHub's runner would run on this log, as (command, data, line).

    Lines end at LF, CR or CRLF; a line is a command if, after TrimStart(), it starts with
    ``::name ...::data``, or holds ``##[name ...]data`` anywhere, for a registered name.
    After ``::stop-commands::TOKEN`` nothing runs until a ``::TOKEN::`` line."""
    ran: list[tuple[str, str, str]] = []
    stop: str | None = None
    for line in re.split(r"\r\n|\r|\n", output.decode("utf-8", errors="replace")):
        parsed = None
        trimmed = line.lstrip(TRIMMED)
        end = trimmed.find("::", 2)
        if trimmed.startswith("::") and end > 0:
            parsed = (trimmed[2:end].split(" ", 1)[0], trimmed[end + 2 :])
        elif "##[" in line and "]" in line[line.index("##[") :]:
            info, _, data = line[line.index("##[") + 3 :].partition("]")
            parsed = (info.split(" ", 1)[0], data)
        if parsed is None:
            continue
        name, data = parsed
        if stop is not None:
            if name.lower() == stop.lower():
                ran.append(("resume", name, line))
                stop = None
        elif name.lower() in REGISTERED:
            ran.append((name.lower(), data, line))
            if name.lower() == "stop-commands":
                stop = data
    return ran


def _run(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    sut: str,
    *args: str,
    unsafe: bool = False,
) -> tuple[pytest.RunResult, bytes]:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("CI", "true")  # pytest's short summary then prints whole reports
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(pytester.path / "step-summary.md"))
    if unsafe:
        monkeypatch.setenv(UNSAFE_OUTPUT_ENV, "1")
    else:
        monkeypatch.delenv(UNSAFE_OUTPUT_ENV, raising=False)
    (pytester.path / "sut.py").write_text(sut)
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--codegenie-bench=stub",
        "--codegenie-no-cache",
        f"--codegenie-sut={sys.executable} sut.py {{workspace}}",
        *args,
        timeout=120,
    )
    # what the runner reads: pytest's stdout and stderr, byte for byte
    output = (pytester.path / "stdout").read_bytes() + (pytester.path / "stderr").read_bytes()
    return result, output


def _assert_only_the_harness_commands(root: Path, output: bytes, failed: int) -> None:
    assert b"\x1b" not in output
    assert b"\x07" not in output
    assert "\x9b" not in output.decode("utf-8", errors="replace")
    ran = runner_reads(output)
    annotations = [line for name, _, line in ran if name == "error"]
    assert len(annotations) == failed, ran
    assert all(line.startswith("::error file=bench/stub/cases/") for line in annotations)
    fences = [(name, data) for name, data, _ in ran if name != "error"]
    assert fences, "no fence printed under GitHub Actions"
    tokens = set()
    for (start, token), (end, closing) in zip(fences[::2], fences[1::2], strict=True):
        assert (start, end) == ("stop-commands", "resume")
        assert re.fullmatch(r"[0-9a-f]{32}", token)
        assert closing == token
        tokens.add(token)
    # no other line starts with "::" once leading whitespace is trimmed
    for line in re.split(r"\r\n|\r|\n", output.decode("utf-8", errors="replace")):
        if line.lstrip(TRIMMED).startswith("::"):
            assert line.startswith("::error file=bench/stub/cases/") or any(
                line in (f"::stop-commands::{t}", f"::{t}::") for t in tokens
            ), line
        assert "##[" not in line, line
    summary = (root / "step-summary.md").read_bytes()
    assert b"### codegenie eval: stub" in summary
    assert b"\x1b" not in summary


@pytest.mark.parametrize("mode", [["-p", "no:xdist"], ["-n", "2"]], ids=["no-xdist", "n2"])
def test_sut_output_cannot_command_the_runner_or_the_terminal(
    pytester: pytest.Pytester,
    stub_bench: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: list[str],
) -> None:
    result, output = _run(pytester, monkeypatch, PRINTS, *mode)
    result.assert_outcomes(failed=3)
    _assert_only_the_harness_commands(pytester.path, output, failed=3)
    text = output.decode()
    # what the SUT wrote is all there, shown
    assert "  \\x3a:stop-commands::abc" in text
    assert "  \\x3a:add-mask::FAILED" in text
    assert "\u3000\\x3a:notice title=forged::a forged notice" in text
    assert "progress\\x0d::warning::forged after a carriage return" in text
    assert "text ##\\x5badd-mask]codegenie" in text
    assert "\\x1b]52;c;ZXZpbA==\\x07" in text
    assert "\\x1b]0;pwned\\x07" in text
    assert "\\x1b[2J" in text


def test_with_the_filter_off_the_sut_output_silences_the_harness(
    pytester: pytest.Pytester, stub_bench: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, output = _run(pytester, monkeypatch, PRINTS, "-k", "alpha", unsafe=True)
    result.assert_outcomes(failed=1)
    assert b"\x1b]52;c;ZXZpbA==\x07" in output
    assert b"\x1b]0;pwned\x07" in output
    ran = runner_reads(output)
    commands = [(name, data) for name, data, _ in ran]
    assert ("add-mask", "FAILED") in commands  # "FAILED" would print as *** from here on
    assert ("error", "forged") in commands  # an annotation of the SUT's making
    assert ("stop-commands", "abc") in commands
    # the harness's own annotation comes later, and is silenced
    assert "::error file=" in output.decode()
    assert not [line for _, _, line in ran if line.startswith("::error file=")]
    lines = re.split(r"\r\n|\r|\n", output.decode())
    assert "  ::stop-commands::abc" in lines  # the SUT's lines, as it wrote them
    assert "    ::add-mask::FAILED" in lines


def test_a_file_name_cannot_command_the_runner_or_the_terminal(
    pytester: pytest.Pytester, stub_bench: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, output = _run(pytester, monkeypatch, NAMES, "-k", "alpha")
    result.assert_outcomes(failed=1)
    _assert_only_the_harness_commands(pytester.path, output, failed=1)
    text = output.decode()
    assert "sut.escaped_workspace: symlink(s) leading out of the workspace" in text
    # the name, shown: its lines indented under the failure mode, its escapes visible
    assert "\n      \\x3a:stop-commands::abc\n      \\x1b]0;pwned\\x07\\x9b2J -> " in text
    assert "/nonexistent/\\x1b]52;c;ZXZpbA==\\x07" in text
    # and in the annotation, as data: %0A is a newline inside the annotation's message
    assert "x%0A::stop-commands::abc%0A\\x1b]0;pwned\\x07\\x9b2J" in text

    unsafe, raw = _run(pytester, monkeypatch, NAMES, "-k", "alpha", unsafe=True)
    unsafe.assert_outcomes(failed=1)
    assert b"\x1b]0;pwned\x07" in raw
    ran = runner_reads(raw)
    assert ("stop-commands", "abc") in [(name, data) for name, data, _ in ran]
    assert "::error file=" in raw.decode()
    assert not [line for _, _, line in ran if line.startswith("::error file=")]
