"""Text the harness did not write, made safe to print to a terminal or a CI log.

A SUT's stdout and stderr, a rubric's failure-mode details (which may quote file names the
agent chose), exception messages and names read from disk are *untrusted text*: printed as
they are, they could drive the terminal (OSC 52 clipboard writes, window titles, cursor
moves) or the CI runner reading the log (GitHub's workflow commands ``::add-mask::``,
``::stop-commands::``, forged ``::error::`` lines). Everything the plugin prints of such text
goes through this module first:

* :func:`safe_line` turns any text into one line that shows every character a terminal or
  a log parser could act on, and that no runner reads as a command.
* :func:`safe_lines` does that for each line of a multi-line text.
* :func:`fenced` wraps lines already made safe in GitHub's own ``::stop-commands::``
  fence when the plugin runs under GitHub Actions; :func:`safe_block` is both in one.
* :func:`visible` shows the same characters but keeps newlines and line starts, for text
  the caller embeds in a context that is escaped in its own way (the data of the harness's
  own ``::error`` workflow command, a Markdown table cell).

How a character is shown
------------------------
A shown character is written as a backslash escape: ``\\xNN`` (two lower-case hex digits)
below U+0100, ``\\uNNNN`` above, e.g. ESC as ``\\x1b``, BEL as ``\\x07``, a lone carriage
return as ``\\x0d``, U+2028 as ``\\u2028``. These are shown:

* the C0 controls U+0000-U+001F except TAB (kept as it is: it only moves the cursor to
  the next tab stop) and, in :func:`safe_lines` / :func:`visible`, the newline that
  separates lines (:func:`safe_lines` also takes a CRLF as one newline). A lone CR is
  shown: terminals and GitHub's runner alike take it as the start of a new line;
* DEL (U+007F) and the C1 controls U+0080-U+009F (U+009B is a one-byte CSI, U+0085 a
  newline for some readers);
* lone surrogates (U+D800-U+DFFF, which cannot be encoded to print), the line and
  paragraph separators U+2028/U+2029, and the invisible bidirectional and zero-width
  formatting characters (U+061C, U+180E, U+200B, U+200E, U+200F, U+202A-U+202E,
  U+2060, U+2066-U+2069, U+FEFF) that could make printed text read other than it is.

Workflow commands: GitHub's runner strips leading whitespace (.NET ``String.TrimStart()``,
the :data:`DOTNET_WHITESPACE` set) from each log line and runs it as a command if it then
starts with ``::``; it also runs the older form ``##[command]data`` found *anywhere* in a
line. So in a line made safe, a ``::`` that follows only whitespace (that set, and to be
safe U+001C-U+001F, U+180E, U+200B and U+FEFF too) is shown as ``\\x3a:``, and every
``##[`` as ``##\\x5b``.

The form is unambiguous: a backslash of the text itself is doubled exactly when what
follows it would otherwise read as an escape (``x``, ``u`` or another backslash, written or
shown), and left single otherwise, so ``C:\\temp`` or ``'a\\nb'`` read as they are. Every
safe line therefore decodes back to the exact text it shows; nothing is dropped.

Under GitHub Actions (``GITHUB_ACTIONS=true``) :func:`fenced` adds, before and after the
lines, ``::stop-commands::<token>`` and ``::<token>::``: the runner runs no command between
the two. The token is random, made once per process (one pytest session, or one xdist
worker) by :mod:`secrets`, and printed nowhere but in these fences. Only the harness's own lines
(these fences and its ``::error`` annotations) start with ``::``.

Test hook: with the environment variable ``CODEGENIE_TEST_UNSAFE_OUTPUT=1`` every function
here returns its text unchanged and fences nothing, so a test can show that an attack works
when the defence is off. It exists for the test suite only and must never be set anywhere
else.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable

UNSAFE_OUTPUT_ENV = "CODEGENIE_TEST_UNSAFE_OUTPUT"
"""Test hook: ``1`` turns every filter of this module off. Never set it in production."""

DOTNET_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)
"""What .NET's ``Char.IsWhiteSpace`` accepts (the Unicode ``White_Space`` characters), so
what the runner's ``TrimStart()`` strips before it looks for ``::``."""

# what may come before a `::` a runner would still read as a command start: .NET's set,
# Python's str.isspace() (U+001C-U+001F more), U+180E (whitespace to .NET before Unicode
# 6.3) and the zero-width U+200B and U+FEFF (trimmed by .NET Framework 3.5 and earlier)
_LEADING = DOTNET_WHITESPACE | frozenset("\x1c\x1d\x1e\x1f\u180e\u200b\ufeff")

_FORMATTING = frozenset(
    [
        *(0x061C, 0x180E, 0x200B, 0x200E, 0x200F, 0x2060, 0xFEFF),
        *range(0x2028, 0x202F),  # line/paragraph separators, bidi embeddings, overrides
        *range(0x2066, 0x206A),  # bidi isolates
    ]
)

_token: str | None = None


def _disabled() -> bool:
    return os.environ.get(UNSAFE_OUTPUT_ENV) == "1"


def _shown(char: str) -> bool:
    code = ord(char)
    return (
        (code < 0x20 and char != "\t")
        or 0x7F <= code <= 0x9F
        or 0xD800 <= code <= 0xDFFF
        or code in _FORMATTING
    )


def _code(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _render(line: str, *, command_start: bool) -> str:
    """``line`` (any ``\\n`` in it is shown too) with the characters to show escaped."""
    shown = [_shown(c) for c in line]
    if command_start:
        start = 0
        while start < len(line) and line[start] in _LEADING and not shown[start]:
            start += 1
        if line.startswith("::", start):
            shown[start] = True
    legacy = line.find("##[")
    while legacy >= 0:
        shown[legacy + 2] = True
        legacy = line.find("##[", legacy + 1)
    out: list[str] = []
    for i, char in enumerate(line):
        if shown[i]:
            out.append(_code(char))
        elif char == "\\" and i + 1 < len(line) and (shown[i + 1] or line[i + 1] in "\\xu"):
            out.append("\\\\")
        else:
            out.append(char)
    return "".join(out)


def safe_line(text: str) -> str:
    """``text`` as one printable line: controls (newlines too) shown as escapes, and no
    workflow command (see the module docstring)."""
    if _disabled():
        return text
    return _render(text, command_start=True)


def safe_lines(text: str) -> list[str]:
    """Each line of ``text`` (split at ``\\n`` and ``\\r\\n``) made a :func:`safe_line`."""
    if _disabled():
        return text.split("\n")
    return [_render(line, command_start=True) for line in text.replace("\r\n", "\n").split("\n")]


def visible(text: str) -> str:
    """``text`` with its controls (and any ``##[``) shown as :func:`safe_line` shows them,
    but its newlines kept and a ``::`` at a line start left alone: for a context the caller
    escapes on its own, such as the data of a workflow command (where the runner reads ``%0A`` as a
    newline inside the annotation, never as a new log line)."""
    if _disabled():
        return text
    return "\n".join(_render(line, command_start=False) for line in text.split("\n"))


def fence_token() -> str:
    """This process's random ``::stop-commands::`` token (made on first use)."""
    global _token
    if _token is None:
        _token = secrets.token_hex(16)
    return _token


def fenced(lines: Iterable[str]) -> list[str]:
    """``lines`` (already safe) between ``::stop-commands::<token>`` and ``::<token>::``
    under GitHub Actions (``GITHUB_ACTIONS=true``); as they are anywhere else, and when
    there are none."""
    shown = list(lines)
    if not shown or _disabled() or os.environ.get("GITHUB_ACTIONS") != "true":
        return shown
    token = fence_token()
    return [f"::stop-commands::{token}", *shown, f"::{token}::"]


def safe_block(text: str) -> str:
    """``text`` as printable lines (:func:`safe_lines`), fenced under GitHub Actions."""
    return "\n".join(fenced(safe_lines(text)))


__all__ = [
    "DOTNET_WHITESPACE",
    "UNSAFE_OUTPUT_ENV",
    "fence_token",
    "fenced",
    "safe_block",
    "safe_line",
    "safe_lines",
    "visible",
]
