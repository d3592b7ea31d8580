"""Rubric of ``migration-chainguard-distroless``: judge the migrated ``Dockerfile``.

Run by the harness as ``python -I rubric.py`` (cwd a temporary directory, scrubbed
environment); it reads one request JSON on stdin and prints one BenchScore JSON
(docs/bench-authoring.md). ``-I`` keeps this file's directory off ``sys.path``, so the sibling
``breakdown_keys.py`` is loaded by file path.

The work is done by :func:`analyse`, a pure function of the Dockerfile text, the build
context directory, the input Dockerfile and an optional container engine, so the bench's
unit tests can call it in process. :func:`score` wires it to the protocol.

Score = sum(WEIGHTS[k] * breakdown[k]), and 0.0 whenever a block-severity failure mode is
present (see README.md).
"""

from __future__ import annotations

import fnmatch
import importlib.util
import io
import json
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dockerfile_parse import DockerfileParser

from pytest_codegenie_eval.rubric import CaseInfo, HarnessOutput, serve

_HERE = Path(__file__).resolve().parent


def _load_breakdown_keys() -> Any:
    """Import the sibling ``breakdown_keys.py`` under a name no other bench can shadow.

    ``python -I`` keeps this directory off ``sys.path``; loading by file path (instead of
    ``import breakdown_keys``) also avoids picking up another task class's module of the
    same name when unit tests load several rubrics into one process.
    """
    name = "_migration_chainguard_distroless_breakdown_keys"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _HERE / "breakdown_keys.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {_HERE / 'breakdown_keys.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING:
    from breakdown_keys import BreakdownKey
else:
    BreakdownKey = _load_breakdown_keys().BreakdownKey

__all__ = [
    "BLOCK_CODES",
    "WEIGHTS",
    "Analysis",
    "BuildEngine",
    "DockerEngine",
    "analyse",
    "detect_engine",
    "score",
]

WEIGHTS: Mapping[BreakdownKey, float] = {
    BreakdownKey.BASE_IMAGE_SWAPPED: 0.20,
    BreakdownKey.SHELL_FREE: 0.20,
    BreakdownKey.EXEC_FORM: 0.15,
    BreakdownKey.NON_ROOT: 0.10,
    BreakdownKey.MULTI_STAGE: 0.10,
    BreakdownKey.BUILD_PASSES: 0.15,
    BreakdownKey.APP_PRESERVED: 0.10,
}

# Mirrors failure_modes.yaml (the harness applies the taxonomy's severity; the rubric needs
# it only to zero the score, and a unit test keeps the two in sync).
BLOCK_CODES: frozenset[str] = frozenset(
    {
        "dockerfile.missing",
        "dockerfile.unparseable",
        "dockerfile.heredoc_unsupported",
        "dockerfile.untrusted_frontend",
        "dockerfile.malformed_exec_json",
        "base.not_chainguard",
        "final.has_run",
        "final.has_package_manager",
        "final.has_shell_form",
        "final.dev_image",
        "final.runs_as_root",
        "copy.dangling_from",
        "copy.from_external_image",
        "build.context_missing",
        "build.failed",
    }
)

KNOWN_INSTRUCTIONS = frozenset(
    {
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "FROM",
        "HEALTHCHECK",
        "LABEL",
        "MAINTAINER",
        "ONBUILD",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    }
)

_CHAINGUARD = re.compile(
    r"^cgr\.dev/(?P<org>[a-z0-9][a-z0-9._-]*)/(?P<name>[a-z0-9][a-z0-9._/-]*?)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@sha256:(?P<digest>[0-9a-f]{64}))?$"
)
# Chainguard images meant for build stages: they ship a shell and/or apk.
TOOLCHAIN_IMAGES = frozenset({"wolfi-base", "busybox", "go", "maven", "gradle"})
_PACKAGE_MANAGER = re.compile(
    r"(?<![\w.-])(apt-get|apt|aptitude|apk|yum|dnf|microdnf|zypper|pip|pip3|npm|npx|yarn|pnpm)"
    r"(?![\w.-])"
)
PACKAGE_MANAGERS = frozenset(
    {"apt-get", "apt", "apk", "yum", "dnf", "microdnf", "zypper", "pip", "pip3", "npm", "npx"}
    | {"yarn", "pnpm"}
)
SHELLS = frozenset({"sh", "bash", "ash", "dash", "zsh", "busybox"})
_COPY_FLAG = re.compile(r"^--[a-z-]+(=.*)?$")
_REMOTE = ("http://", "https://", "git@", "git://", "ssh://")


class BuildEngine(Protocol):
    """A container engine able to build a context; ``build`` returns (ok, detail)."""

    @property
    def name(self) -> str:
        """Short engine name reported in the analysis (e.g. ``docker``)."""

    def build(self, context: Path, timeout_s: float) -> tuple[bool, str]:
        """Build ``context/Dockerfile``; never raise for a failed build."""


@dataclass(frozen=True)
class DockerEngine:
    """The ``docker`` CLI talking to a working daemon."""

    executable: str
    name: str = "docker"

    def build(self, context: Path, timeout_s: float) -> tuple[bool, str]:
        """Run ``docker build`` on the context and remove the image afterwards."""
        with tempfile.TemporaryDirectory() as tmp:
            iidfile = Path(tmp) / "iid"
            cmd = [self.executable, "build", "--iidfile", str(iidfile)]
            cmd += ["-f", str(context / "Dockerfile"), str(context)]
            try:
                proc = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=timeout_s, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                return False, f"docker build did not finish: {type(exc).__name__}: {exc}"
            if iidfile.is_file():
                image_id = iidfile.read_text(encoding="utf-8").strip()
                subprocess.run(
                    [self.executable, "image", "rm", "-f", image_id],
                    capture_output=True,
                    timeout=30,
                    check=False,
                )
        if proc.returncode != 0:
            return False, f"docker build exited {proc.returncode}: {proc.stderr[-400:]}"
        return True, "docker build succeeded"


def detect_engine(timeout_s: float = 5.0) -> DockerEngine | None:
    """A working engine: ``docker`` on PATH *and* ``docker info`` succeeding in time."""
    exe = shutil.which("docker")
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, "info"], capture_output=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return DockerEngine(exe) if proc.returncode == 0 else None


@dataclass
class Instr:
    """One instruction: dockerfile-parse's name and value of one BuildKit logical line.

    ``line`` is the 1-based physical line the instruction starts on.
    """

    instruction: str
    value: str
    line: int


@dataclass
class Stage:
    """One build stage: from its FROM up to the next FROM."""

    index: int
    image: str
    name: str | None
    line: int
    parent: int | None = None
    instrs: list[Instr] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"stage {self.index} ({self.name or self.image}, line {self.line})"


@dataclass
class Analysis:
    """What the rubric found: breakdown, failure modes and the score they give."""

    breakdown: dict[str, float]
    failure_modes: list[dict[str, str]]
    engine: str = "static"

    @property
    def codes(self) -> list[str]:
        return [fm["code"] for fm in self.failure_modes]

    @property
    def score(self) -> float:
        if any(code in BLOCK_CODES for code in self.codes):
            return 0.0
        total = sum(WEIGHTS[BreakdownKey(k)] * v for k, v in self.breakdown.items())
        return round(min(1.0, max(0.0, total)), 6)

    def to_result(self, case_id: str) -> dict[str, Any]:
        return {
            "case_id": case_id,
            "score": self.score,
            "breakdown": dict(self.breakdown),
            "failure_modes": list(self.failure_modes),
        }


class _Unparseable(Exception):
    """The Dockerfile cannot be judged; carries the failure code and detail."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _zero_breakdown() -> dict[str, float]:
    return {str(key): 0.0 for key in BreakdownKey}


def _substitute_args(image: str, args: Mapping[str, str]) -> str:
    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return args.get(name, match.group(0))

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", repl, image)


def _parse_arg(value: str) -> tuple[str, str] | None:
    name, sep, default = value.strip().partition("=")
    if not sep:
        return None
    return name.strip(), default.strip().strip("\"'")


# -- BuildKit's reading of the file ------------------------------------------------------------
#
# dockerfile-parse (2.0.1) and BuildKit, the builder that really runs the file, do not build
# the same instructions from the same text. Every difference is a way to make the rubric judge
# a file other than the one that is built, so the rubric first rebuilds BuildKit's logical
# instructions (moby/buildkit frontend/dockerfile/parser: parser.go ``Parse`` and
# directives.go ``DetectSyntax``) and hands dockerfile-parse one logical line at a time.

_UTF8_BOM = "\ufeff"
_GO_SPACE = "[\t\n\f\r ]"  # Go regexp's \s (Python's \s also matches \v and Unicode spaces)
_DIRECTIVE = re.compile(rf"([a-zA-Z][a-zA-Z0-9]*){_GO_SPACE}*={_GO_SPACE}*(.+?){_GO_SPACE}*\Z")
_DIRECTIVE_KEYS = frozenset({"syntax", "escape", "check"})
_CMD_SEPARATOR = re.compile(r"[\t\v\f\r ]+")  # parser.go reWhitespace
_HEREDOC_WORD = re.compile(r"\d*<<-?[^<]+")
_HEREDOC_INSTRUCTIONS = frozenset({"RUN", "COPY", "ADD", "ONBUILD"})
_MAX_LINE_BYTES = 65535  # bufio.Scanner's default token limit (ErrTooLong)
# The standard frontend: Docker's docker/dockerfile image (stable or labs channel, optionally
# digest-pinned). Its releases share BuildKit's parser, so the rules below hold for them.
_STANDARD_FRONTEND = re.compile(
    r"(?:docker\.io/)?docker/dockerfile"
    r"(?::(?:latest|labs|[0-9]+(?:\.[0-9]+){0,2}(?:-labs)?))?"
    r"(?:@sha256:[0-9a-f]{64})?"
)


def _go_is_space(ch: str) -> bool:
    """Go's ``unicode.IsSpace``; ``str.isspace`` also counts U+001C..U+001F, Go does not."""
    return ch in "\t\n\v\f\r \x85\xa0" or (ch > "\xff" and ch.isspace())


def _go_lstrip(text: str) -> str:
    """``bytes.TrimLeftFunc(text, unicode.IsSpace)``."""
    start = 0
    while start < len(text) and _go_is_space(text[start]):
        start += 1
    return text[start:]


def _go_trim_space(text: str) -> str:
    """``strings.TrimSpace``."""
    end = len(text)
    while end > 0 and _go_is_space(text[end - 1]):
        end -= 1
    return _go_lstrip(text[:end])


def _directive(line: str, prefix: str) -> tuple[str, str] | None:
    """``DirectiveParser.ParseLine``: (lower-case key, value) of a directive line, else None."""
    if not line.startswith(prefix):
        return None
    match = _DIRECTIVE.match(_go_lstrip(line[len(prefix) :]))
    if match is None or match.group(1).lower() not in _DIRECTIVE_KEYS:
        return None
    return match.group(1).lower(), match.group(2)


def _detect_syntax(text: str) -> str | None:
    """``DetectSyntax``: the ``syntax`` value that picks the frontend, or None.

    BOM and a first-line ``#!`` shebang are discarded; the leading block of ``#`` directive
    lines (no indentation allowed here) is searched, then a block of ``//`` directive lines,
    then a file that is one JSON object with a ``"syntax"`` string.
    """
    first, newline, rest = text.partition("\n")
    if first.startswith("#!"):
        text = rest if newline else ""
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    for prefix in ("#", "//"):
        seen: set[str] = set()
        for line in lines:
            found = _directive(line, prefix)
            if found is None or found[0] in seen:
                break
            seen.add(found[0])
            if found[0] == "syntax":
                return found[1]
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if isinstance(document, dict) and isinstance(document.get("syntax"), str):
        return str(document["syntax"])
    return None


def _check_frontend(value: str, how: str) -> None:
    """Refuse a file whose ``syntax`` directive names a frontend other than docker/dockerfile."""
    ref = value.split(" ", 1)[0]
    if _STANDARD_FRONTEND.fullmatch(ref) is None:
        raise _Unparseable(
            "dockerfile.untrusted_frontend",
            f"{how} names the BuildKit frontend {ref!r}: the file is parsed by that image's "
            "code, not by docker/dockerfile, so the rubric cannot know what it builds",
        )


@dataclass(frozen=True)
class _Logical:
    """One BuildKit logical instruction: its text and the physical line it starts on."""

    line: int
    text: str


def buildkit_logical_lines(text: str) -> list[_Logical]:
    """The instructions BuildKit builds from ``text``, one logical line each.

    Raises :class:`_Unparseable` where BuildKit refuses the file (or hands it to another
    frontend). The loop is parser.go's ``Parse``, rule for rule:

    * the text is split on ``\\n`` only; trailing ``\\r`` are dropped; a UTF-8 BOM is dropped;
      a line longer than 65535 bytes is an error (``bufio.Scanner``);
    * parser directives (``syntax``, ``escape``, ``check``; key case-insensitive) are only read
      from the leading block of ``# key=value`` lines (indentation allowed); the first blank
      line, other comment, unknown key or instruction ends the block. A repeated directive
      and an escape token other than ``\\`` or a backtick are errors;
    * a line is continued when it ends with the escape token followed only by spaces/tabs
      and not preceded by another escape token (``([^E])E[ \\t]*$|^E[ \\t]*$``); the token
      and the spaces are removed;
    * inside a continuation, comment lines (``#`` after leading whitespace) and empty or
      whitespace-only lines are skipped: the instruction goes on after them (BuildKit only
      warns "empty continuation line"); continuation lines keep their leading whitespace;
    * outside a continuation, comment and blank lines are dropped.

    The frontend is chosen before that, by ``DetectSyntax`` (:func:`_detect_syntax`); any
    ``syntax`` other than docker/dockerfile is ``dockerfile.untrusted_frontend``. So is one
    only the parser's directive block sees (an indented ``# syntax=``, which DetectSyntax
    skips): a stricter reading, since no honest Dockerfile names another frontend.

    What dockerfile-parse (2.0.1) gets wrong, and this function therefore does itself: it ends
    an instruction at an empty or blank continuation line; it continues a line ending in an
    escaped escape token (``\\\\``) or in the token followed by other whitespace (``\\f``); it
    stops reading directives at ``# check=``, so a later ``# escape=`` is ignored; it ignores
    repeated and invalid directives, the BOM and the syntax directive. What it gets right and
    still does (:func:`_parse_logical`): splitting each logical line into instruction and
    value.
    """
    text = text.removeprefix(_UTF8_BOM)
    syntax = _detect_syntax(text)
    if syntax is not None:
        _check_frontend(syntax, "the syntax directive")
    physical = text.split("\n")
    if text.endswith("\n"):
        physical.pop()
    for number, raw in enumerate(physical, start=1):
        if len(raw.encode("utf-8")) > _MAX_LINE_BYTES:
            raise _Unparseable(
                "dockerfile.unparseable", f"line {number}: longer than {_MAX_LINE_BYTES} bytes"
            )

    escape = "\\"
    seen: set[str] = set()
    directives_done = False

    def continuation(line: str) -> tuple[str, bool]:
        """``trimContinuationCharacter``: (line without the token, whether it continues)."""
        token = re.escape(escape)
        match = re.search(rf"([^{token}]){token}[ \t]*\Z|^{token}[ \t]*\Z", line)
        if match is None:
            return line, False
        return line[: match.start()] + (match.group(1) or ""), True

    logical: list[_Logical] = []
    index = 0
    while index < len(physical):
        token = _go_lstrip(physical[index].rstrip("\r"))
        index += 1
        if not directives_done:
            found = _directive(token, "#")
            if found is None:
                directives_done = True
            else:
                key, value = found
                if key in seen:
                    raise _Unparseable(
                        "dockerfile.unparseable",
                        f"line {index}: only one {key} parser directive can be used",
                    )
                seen.add(key)
                if key == "escape":
                    if value not in ("\\", "`"):
                        raise _Unparseable(
                            "dockerfile.unparseable",
                            f"line {index}: invalid escape token {value!r} (only ` or \\)",
                        )
                    escape = value
                elif key == "syntax":
                    _check_frontend(value, f"line {index}: the syntax directive")
        if token.startswith("#"):
            token = ""
        start = index
        line, continues = continuation(token)
        if not continues and not line:
            continue
        parts = [line]
        # Any line before this one ended the directive block: no directive can follow.
        while continues and index < len(physical):
            raw = physical[index].rstrip("\r")
            index += 1
            stripped = _go_lstrip(raw)
            if stripped.startswith("#") or not stripped:
                continue
            line, continues = continuation(raw)
            parts.append(line)
        logical.append(_Logical(start, "".join(parts)))
    return logical


def _check_heredoc(item: _Logical) -> None:
    """Refuse a heredoc (``RUN <<EOF``), found on BuildKit's logical line.

    BuildKit looks for heredoc words (``^\\d*<<-?\\s*[^<]*$``, non-empty name) in RUN, COPY,
    ADD and ONBUILD lines; this checks every whitespace-separated word of such a line (a
    superset: a quoted ``"a <<b"`` is refused too). A here-string ``<<<`` is not a heredoc.
    """
    words = _CMD_SEPARATOR.split(_go_trim_space(item.text))
    if words[0].upper() not in _HEREDOC_INSTRUCTIONS:
        return
    for word in words[1:]:
        if _HEREDOC_WORD.fullmatch(word):
            raise _Unparseable(
                "dockerfile.heredoc_unsupported",
                f"line {item.line}: heredoc {word!r}: dockerfile-parse misparses heredocs "
                "(issue #145)",
            )


def _parse_logical(item: _Logical) -> Instr:
    """dockerfile-parse's instruction and value of one BuildKit logical line.

    The line has no continuation left, but dockerfile-parse would still continue one that
    ends in its escape character, so such a line is given to it with ``# escape=`` set to
    the backtick. Its instruction must be BuildKit's (the first word, split on
    ``[ \\t\\v\\f\\r]``): dockerfile-parse also splits on other whitespace (``USER\\u00a0root``
    is an unknown instruction to BuildKit) and takes a ``\\x1c#`` line for a comment.
    """
    command = _CMD_SEPARATOR.split(_go_trim_space(item.text), maxsplit=1)[0]
    head = "# escape=`\n" if item.text.rstrip().endswith("\\") else ""
    try:
        data = (head + item.text + "\n").encode("utf-8")
        parser = DockerfileParser(fileobj=io.BytesIO(data), env_replace=False)
        found = [i for i in parser.structure if i["instruction"] != "COMMENT"]
    except Exception as exc:  # the parser's own errors are not a stable API
        raise _Unparseable("dockerfile.unparseable", f"dockerfile-parse failed: {exc}") from exc
    if len(found) != 1 or str(found[0]["instruction"]).upper() != command.upper():
        raise _Unparseable(
            "dockerfile.unparseable", f"line {item.line}: unknown instruction {command!r}"
        )
    return Instr(command.upper(), str(found[0]["value"]), item.line)


def parse_stages(text: str) -> list[Stage]:
    """Split a Dockerfile into stages; raises :class:`_Unparseable` when it cannot.

    The instructions are BuildKit's (:func:`buildkit_logical_lines`), each split into
    instruction and value by dockerfile-parse.
    """
    logical = buildkit_logical_lines(text)
    for item in logical:
        _check_heredoc(item)
    stages: list[Stage] = []
    global_args: dict[str, str] = {}
    for item in logical:
        instr = _parse_logical(item)
        if instr.instruction not in KNOWN_INSTRUCTIONS:
            raise _Unparseable(
                "dockerfile.unparseable",
                f"line {instr.line}: unknown instruction {instr.instruction}",
            )
        if instr.instruction == "FROM":
            tokens = [t for t in instr.value.split() if not t.startswith("--")]
            if len(tokens) not in (1, 3) or (len(tokens) == 3 and tokens[1].lower() != "as"):
                raise _Unparseable(
                    "dockerfile.unparseable", f"line {instr.line}: malformed FROM {instr.value!r}"
                )
            image = _substitute_args(tokens[0], global_args)
            name = tokens[2].lower() if len(tokens) == 3 else None
            stage = Stage(len(stages), image, name, instr.line)
            for earlier in stages:
                if earlier.name is not None and earlier.name == image.lower():
                    stage.parent = earlier.index
            stages.append(stage)
            continue
        if not stages:
            if instr.instruction != "ARG":
                raise _Unparseable(
                    "dockerfile.unparseable",
                    f"line {instr.line}: {instr.instruction} before the first FROM",
                )
            parsed = _parse_arg(instr.value)
            if parsed is not None:
                global_args[parsed[0]] = parsed[1]
            continue
        stages[-1].instrs.append(instr)
    if not stages:
        raise _Unparseable("dockerfile.unparseable", "no FROM instruction")
    return stages


def chainguard_ref(image: str) -> re.Match[str] | None:
    """The match of a ``cgr.dev/<org>/<name>[:tag][@sha256:…]`` reference, else None."""
    return _CHAINGUARD.match(image)


def _final_chain(stages: Sequence[Stage]) -> list[Stage]:
    """The final stage and the stages it derives from (``FROM <stage>``), root first."""
    chain = [stages[-1]]
    while chain[-1].parent is not None:
        chain.append(stages[chain[-1].parent])
    return list(reversed(chain))


def _exec_list(value: str) -> list[str] | None:
    """The JSON list of a value in exec form, None for shell form; raises on bad JSON."""
    stripped = value.strip()
    if not stripped.startswith("["):
        return None
    try:
        parsed = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg}") from exc
    if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
        raise ValueError("not a JSON list of strings")
    return parsed


def _copy_args(value: str) -> tuple[dict[str, str], list[str]]:
    """Flags and paths of a COPY/ADD value (JSON or whitespace form)."""
    tokens = value.split()
    flags: dict[str, str] = {}
    while tokens and _COPY_FLAG.match(tokens[0]):
        key, _, val = tokens.pop(0)[2:].partition("=")
        flags[key.lower()] = val
    rest = " ".join(tokens)
    try:
        parsed = _exec_list(rest)
    except ValueError:
        parsed = None
    return flags, (parsed if parsed is not None else tokens)


def _context_sources(stages: Sequence[Stage]) -> list[tuple[Stage, Instr, list[str]]]:
    found = []
    for stage in stages:
        for instr in stage.instrs:
            if instr.instruction not in ("COPY", "ADD"):
                continue
            flags, paths = _copy_args(instr.value)
            if "from" in flags:
                continue
            found.append((stage, instr, paths[:-1]))
    return found


def _normalise_source(src: str) -> str:
    return posixpath.normpath(src.lstrip("/") or ".")


def _glob_covers(pattern: str, wanted: str) -> bool:
    """Docker-style glob (``*`` stays within one path segment) matching wanted or a parent."""
    p_parts, w_parts = pattern.split("/"), wanted.split("/")
    if len(w_parts) < len(p_parts):
        return False
    return all(fnmatch.fnmatchcase(w, p) for w, p in zip(w_parts, p_parts, strict=False))


def _covers(source: str, wanted: str) -> bool:
    """Whether an output COPY source brings in the input's ``wanted`` path."""
    if source in (".", wanted) or wanted.startswith(source + "/"):
        return True
    return any(c in source for c in "*?[") and _glob_covers(source, wanted)


_NOT_APP = ("Dockerfile", ".dockerignore")
_NOT_APP_DIRS = (".codegenie", ".git")


def _expand(source: str, context: Path | None) -> list[str]:
    """The files an input COPY source brings in, relative to the input directory.

    Without the input directory (or when nothing matches) the source itself is returned,
    so a literal path is still compared by name.
    """
    if context is None or not context.is_dir():
        return [source]
    if any(c in source for c in "*?["):
        roots = list(context.glob(source))
    else:
        roots = [context / source] if (context / source).exists() else []
    found: list[str] = []
    for root in roots:
        paths = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in paths:
            if not path.is_file():
                continue
            rel = path.relative_to(context).as_posix()
            if rel in _NOT_APP or rel.split("/", 1)[0] in _NOT_APP_DIRS:
                continue
            found.append(rel)
    return found or [source]


class _Findings:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, code: str, detail: str) -> None:
        self.items.append({"code": code, "detail": detail})

    def any(self, *prefixes: str) -> bool:
        return any(item["code"].startswith(prefixes) for item in self.items)


def _check_bases(stages: Sequence[Stage], chain: Sequence[Stage], found: _Findings) -> float:
    ok = True
    for stage in stages:
        if stage.parent is not None or stage.image.lower() == "scratch":
            continue
        if chainguard_ref(stage.image) is None:
            ok = False
            found.add("base.not_chainguard", f"{stage.label}: {stage.image} is not cgr.dev/<org>/")
    root = chain[0]
    if root.image.lower() == "scratch":
        ok = False
        found.add("base.not_chainguard", f"final image is built FROM scratch ({root.label})")
    return 1.0 if ok else 0.0


def _check_shell_free(chain: Sequence[Stage], found: _Findings) -> float:
    ok = True
    for stage in chain:
        for instr in stage.instrs:
            if instr.instruction != "RUN":
                continue
            ok = False
            text = instr.value
            manager = _PACKAGE_MANAGER.search(text)
            if manager is not None:
                found.add(
                    "final.has_package_manager",
                    f"line {instr.line}: RUN uses {manager.group(1)} in the final image",
                )
            else:
                found.add("final.has_run", f"line {instr.line}: RUN {text[:80]!r} in final image")
    match = chainguard_ref(chain[0].image)
    if match is not None:
        tag = match.group("tag") or ""
        name = match.group("name")
        if tag == "dev" or tag.endswith("-dev") or name.endswith("-dev"):
            ok = False
            found.add("final.dev_image", f"final image {chain[0].image} is a -dev variant")
        elif name.rsplit("/", 1)[-1] in TOOLCHAIN_IMAGES:
            ok = False
            found.add("final.dev_image", f"final image {chain[0].image} is a toolchain image")
    return 1.0 if ok else 0.0


def _last(chain: Sequence[Stage], instruction: str) -> Instr | None:
    hits = [i for stage in chain for i in stage.instrs if i.instruction == instruction]
    return hits[-1] if hits else None


def _check_exec_form(chain: Sequence[Stage], found: _Findings) -> float:
    ok = True
    checks: list[tuple[str, Instr, str]] = []
    for kind in ("ENTRYPOINT", "CMD"):
        instr = _last(chain, kind)
        if instr is not None:
            checks.append((kind, instr, instr.value))
    health = _last(chain, "HEALTHCHECK")
    if health is not None and health.value.strip().upper() != "NONE":
        tokens = health.value.split()
        while tokens and tokens[0].startswith("--"):
            tokens.pop(0)
        if tokens and tokens[0].upper() == "CMD":
            checks.append(("HEALTHCHECK CMD", health, health.value.split("CMD", 1)[-1]))
    for kind, instr, value in checks:
        try:
            argv = _exec_list(value)
        except ValueError:
            argv = None
        if argv is None:
            ok = False
            found.add("final.has_shell_form", f"line {instr.line}: {kind} is in shell form")
            continue
        program = posixpath.basename(argv[0]) if argv else ""
        if program in SHELLS:
            ok = False
            found.add("final.has_shell_form", f"line {instr.line}: {kind} runs {argv[0]}")
        elif program in PACKAGE_MANAGERS:
            ok = False
            found.add(
                "final.has_package_manager",
                f"line {instr.line}: {kind} starts the app through {program}",
            )
    return 1.0 if ok else 0.0


def _check_user(chain: Sequence[Stage], found: _Findings) -> float:
    user = _last(chain, "USER")
    if user is None:
        return 1.0
    value = user.value.strip()
    if not _LITERAL_USER.fullmatch(value):
        # BuildKit expands quotes, escapes and variables in USER before it applies it
        # ("root", r\oot, ${U:-0} are all root): a value that needs expanding cannot be shown
        # to be non-root, so it counts as root. Write the user literally.
        found.add(
            "final.runs_as_root",
            f"line {user.line}: USER {value} is not a literal user (quotes, escapes or "
            "variables are expanded by the builder); write it literally",
        )
        return 0.0
    name = value.split(":", 1)[0]
    if name == "root" or (name.isdigit() and int(name) == 0):
        found.add("final.runs_as_root", f"line {user.line}: USER {value}")
        return 0.0
    return 1.0


_LITERAL_USER = re.compile(r"[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?")
"""A USER value the builder applies as written: a name or uid, optionally ``:group``."""


def _resolve_from(
    stages: Sequence[Stage], stage: Stage, target: str
) -> tuple[int | None, str | None]:
    """Index of the stage a ``--from`` names, or (None, failure code)."""
    target = target.strip().strip("\"'").lower()
    if target.isdigit():
        index = int(target)
        if index < stage.index:
            return index, None
        return None, "copy.dangling_from"
    for earlier in stages[: stage.index]:
        if earlier.name == target:
            return earlier.index, None
    if any(c in target for c in "/:@."):
        return None, "copy.from_external_image"
    return None, "copy.dangling_from"


def _check_copy_from(stages: Sequence[Stage], found: _Findings) -> dict[int, set[int]]:
    """Validate every ``--from``; returns stage index -> indices of stages it copies from."""
    sources: dict[int, set[int]] = {s.index: set() for s in stages}
    names = {s.name: s.index for s in stages if s.name}
    for stage in stages:
        for instr in stage.instrs:
            if instr.instruction not in ("COPY", "ADD"):
                continue
            flags, _paths = _copy_args(instr.value)
            if "from" not in flags:
                continue
            index, code = _resolve_from(stages, stage, flags["from"])
            if index is not None:
                sources[stage.index].add(index)
                continue
            target = flags["from"]
            if code == "copy.from_external_image":
                detail = f"line {instr.line}: --from={target} is an external image"
            elif target.lower() in names and names[target.lower()] >= stage.index:
                detail = f"line {instr.line}: --from={target} is not an earlier stage"
            else:
                detail = f"line {instr.line}: --from={target} names no stage"
            found.add(code or "copy.dangling_from", detail)
    return sources


def _has_run(stages: Sequence[Stage], index: int) -> bool:
    seen: set[int] = set()
    current: int | None = index
    while current is not None and current not in seen:
        seen.add(current)
        if any(i.instruction == "RUN" for i in stages[current].instrs):
            return True
        current = stages[current].parent
    return False


def _check_multi_stage(
    stages: Sequence[Stage],
    chain: Sequence[Stage],
    copies: Mapping[int, set[int]],
    build_required: bool,
    found: _Findings,
) -> float:
    in_chain = {s.index for s in chain}
    for stage in chain:
        for src in copies.get(stage.index, set()):
            if src not in in_chain and _has_run(stages, src):
                return 1.0
    if not build_required:
        return 1.0
    found.add(
        "stage.build_dropped",
        "the input Dockerfile builds (RUN) but no build stage's outputs are copied into the "
        "final image",
    )
    return 0.0


def _check_exec_json(stages: Sequence[Stage], found: _Findings) -> bool:
    ok = True
    for stage in stages:
        for instr in stage.instrs:
            if instr.instruction not in ("RUN", "CMD", "ENTRYPOINT", "SHELL"):
                continue
            try:
                _exec_list(instr.value)
            except ValueError as exc:
                ok = False
                found.add(
                    "dockerfile.malformed_exec_json",
                    f"line {instr.line}: {instr.instruction} {exc}",
                )
    return ok


def _check_context(stages: Sequence[Stage], context: Path | None, found: _Findings) -> bool:
    if context is None:
        return False
    ok = True
    root = context.resolve()
    for _stage, instr, sources in _context_sources(stages):
        if not sources:
            ok = False
            found.add(
                "dockerfile.unparseable",
                f"line {instr.line}: {instr.instruction} needs a source and a destination",
            )
            continue
        for raw in sources:
            if instr.instruction == "ADD" and raw.startswith(_REMOTE):
                continue
            where = f"line {instr.line}: {instr.instruction} source {raw!r}"
            if "$" in raw:
                ok = False
                found.add("build.context_missing", f"{where} uses a variable")
                continue
            src = _normalise_source(raw)
            if src == ".." or src.startswith("../"):
                ok = False
                found.add("build.context_missing", f"{where} leaves the build context")
                continue
            if any(c in src for c in "*?["):
                present = any(p.resolve().is_relative_to(root) for p in root.glob(src))
            else:
                target = (root / src).resolve()
                present = target.is_relative_to(root) and target.exists()
            if not present:
                ok = False
                found.add("build.context_missing", f"{where} is not in the build context")
    return ok


def _check_app_preserved(
    stages: Sequence[Stage],
    input_text: str | None,
    input_context: Path | None,
    found: _Findings,
) -> float:
    if input_text is None:
        return 1.0
    try:
        before = parse_stages(input_text)
    except _Unparseable:
        return 1.0
    wanted = {
        path
        for _st, _i, srcs in _context_sources(before)
        for src in srcs
        for path in _expand(_normalise_source(src), input_context)
    }
    have = {_normalise_source(s) for _st, _i, srcs in _context_sources(stages) for s in srcs}
    missing = sorted(w for w in wanted if not any(_covers(h, w) for h in have))
    if missing:
        found.add("app.sources_dropped", f"no longer copied: {', '.join(missing)}")
        return 0.0
    return 1.0


def _input_builds(input_text: str | None) -> bool:
    if input_text is None:
        return False
    try:
        before = parse_stages(input_text)
    except _Unparseable:
        return False
    return any(i.instruction == "RUN" for s in before for i in s.instrs)


def analyse(
    text: str | None,
    context: Path | None,
    *,
    input_text: str | None = None,
    input_context: Path | None = None,
    engine: BuildEngine | None = None,
    build_timeout_s: float = 45.0,
) -> Analysis:
    """Judge a Dockerfile.

    ``text`` is the migrated Dockerfile (None when missing), ``context`` the build context
    (the workspace), ``input_text`` the case's original Dockerfile (for MULTI_STAGE and
    APP_PRESERVED; None disables those comparisons), ``input_context`` the case's
    ``input/`` directory (expands ``COPY .`` and globs of the original) and ``engine`` a
    working container engine (None: BUILD_PASSES is the static check and
    ``build.static_only`` is added).
    """
    found = _Findings()
    engine_name = engine.name if engine is not None else "static"
    if text is None:
        found.add("dockerfile.missing", "no Dockerfile at the workspace root")
        return Analysis(_zero_breakdown(), found.items, engine_name)
    try:
        stages = parse_stages(text)
    except _Unparseable as exc:
        found.add(exc.code, exc.detail)
        return Analysis(_zero_breakdown(), found.items, engine_name)

    chain = _final_chain(stages)
    breakdown = _zero_breakdown()
    breakdown[BreakdownKey.BASE_IMAGE_SWAPPED] = _check_bases(stages, chain, found)
    breakdown[BreakdownKey.SHELL_FREE] = _check_shell_free(chain, found)
    breakdown[BreakdownKey.EXEC_FORM] = _check_exec_form(chain, found)
    breakdown[BreakdownKey.NON_ROOT] = _check_user(chain, found)
    copies = _check_copy_from(stages, found)
    breakdown[BreakdownKey.MULTI_STAGE] = _check_multi_stage(
        stages, chain, copies, _input_builds(input_text), found
    )
    breakdown[BreakdownKey.APP_PRESERVED] = _check_app_preserved(
        stages, input_text, input_context, found
    )

    static_ok = _check_exec_json(stages, found)
    static_ok = _check_context(stages, context, found) and static_ok
    static_ok = static_ok and not found.any("copy.")
    build_ok = static_ok
    if engine is None:
        found.add(
            "build.static_only",
            "no working container engine: BUILD_PASSES is the static buildability check "
            f"({'passed' if static_ok else 'failed'})",
        )
    elif static_ok and context is not None:
        build_ok, detail = engine.build(context, build_timeout_s)
        if not build_ok:
            found.add("build.failed", detail)
    breakdown[BreakdownKey.BUILD_PASSES] = 1.0 if build_ok else 0.0
    return Analysis(breakdown, found.items, engine_name)


def _read_text(path: Path) -> str | None:
    if not path.is_file():
        return None
    return path.read_bytes().decode("utf-8", errors="strict")


def score(case: CaseInfo, out: HarnessOutput) -> dict[str, Any]:
    """Protocol entry point: judge ``{workspace}/Dockerfile`` for one case."""
    try:
        text = _read_text(out.workspace / "Dockerfile")
    except UnicodeDecodeError as exc:
        found = _Findings()
        found.add("dockerfile.unparseable", f"Dockerfile is not UTF-8: {exc.reason}")
        return Analysis(_zero_breakdown(), found.items).to_result(case.case_id)
    try:
        input_text = _read_text(case.input_dir / "Dockerfile")
    except UnicodeDecodeError:
        input_text = None
    timeout = float(case.raw.get("rubric_timeout_s", 60.0))
    analysis = analyse(
        text,
        out.workspace,
        input_text=input_text,
        input_context=case.input_dir,
        engine=detect_engine(),
        build_timeout_s=max(10.0, timeout - 15.0),
    )
    return analysis.to_result(case.case_id)


if __name__ == "__main__":
    serve(score)
