"""The rubric reads requirements.txt as pip does: pip's own parser is the oracle.

The rubric mirrors pip/_internal/req/req_file.py (it runs ``python -I`` and must not import
pip's internals); these tests may, and compare the two on hand-picked differential texts and
on hypothesis-generated ones: comments, trailing backslashes, blank lines, ``--hash``
continuation lines, ``-r``/``-c``/``-e`` and other option lines, ``${VAR}`` references.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from pip._internal.cli import cmdoptions
from pip._internal.exceptions import CommandError
from pip._internal.req import req_file as pip_req_file
from pip._internal.utils.hashes import STRONG_HASHES

BENCH = Path(__file__).resolve().parent.parent


def _load_rubric() -> ModuleType:
    name = "_vuln_remediation_rubric_pip_oracle"
    spec = importlib.util.spec_from_file_location(name, BENCH / "rubric.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


RUBRIC = _load_rubric()
#: ${VAR} names the generated texts use; pip expands set ones, the rubric reads them unset
UNSET = "CODEGENIE_ORACLE_UNSET"

#: (name, specifier, marker, hashes) of a requirement; the option lines as text
Reading = tuple[list[tuple[str, str, str, tuple[str, ...]]], list[str]]


class PipRefuses(Exception):
    """pip (or the rubric, where it is stricter) refuses the file."""


def pip_reading(text: str) -> Reading:
    """What pip makes of a requirements file, in the rubric's terms.

    pip's ``preprocess`` and line parser; the requirement string goes through packaging's
    ``Requirement`` (pip's ``get_requirement``). Where the rubric is documented to be stricter
    than pip (``${VAR}`` or options other than ``--hash`` on a requirement line) the expected
    outcome is a refusal too.
    """
    parse_line = pip_req_file.get_line_parser(None)
    requirements: list[tuple[str, str, str, tuple[str, ...]]] = []
    options: list[str] = []
    for _number, line in pip_req_file.preprocess(text):
        # pip's --use-feature shares its default list between lines: defaults as of now
        defaults = copy.deepcopy(vars(parse_line("")[1]))
        try:
            args, opts = parse_line(line)
        except (pip_req_file.OptionParsingError, CommandError) as exc:
            raise PipRefuses(line) from exc
        if not args:
            options.append(" ".join(line.split()))
            continue
        if pip_req_file.ENV_VAR_RE.search(line):
            raise PipRefuses(f"{line}: depends on the environment")
        changed = {k for k, v in vars(opts).items() if v != defaults[k]}
        if changed - {"hashes"}:
            raise PipRefuses(f"{line}: options pip ignores or misreads: {changed}")
        try:
            req = Requirement(args)
        except InvalidRequirement as exc:
            raise PipRefuses(args) from exc
        hashes = tuple(sorted(f"{a}:{d}" for a, ds in (opts.hashes or {}).items() for d in ds))
        marker = str(req.marker or "")
        requirements.append((canonicalize_name(req.name), str(req.specifier), marker, hashes))
    return requirements, options


def rubric_reading(text: str) -> Reading:
    try:
        reqs, options = RUBRIC.parse_requirements_txt(text, "requirements.txt")
    except RUBRIC.ManifestError as exc:
        raise PipRefuses(str(exc)) from exc
    return [
        (r.name, str(r.req.specifier), str(r.req.marker or ""), r.hashes) for r in reqs
    ], options


def assert_same_reading(text: str) -> None:
    assert UNSET not in os.environ
    assert RUBRIC.requirements_lines(text) == list(pip_req_file.preprocess(text))
    try:
        expected = pip_reading(text)
    except PipRefuses:
        with pytest.raises(PipRefuses):
            rubric_reading(text)
        return
    assert rubric_reading(text) == expected


def test_the_mirrored_tables_are_pips() -> None:
    parser = pip_req_file.build_parser()
    pips = {tuple(o._short_opts + o._long_opts): o.takes_value() for o in parser.option_list}
    assert pips == RUBRIC.PIP_FILE_OPTIONS
    assert tuple(STRONG_HASHES) == RUBRIC.PIP_HASH_ALGORITHMS
    choices = cmdoptions.use_new_feature().choices
    assert choices is not None
    assert tuple(choices) == RUBRIC.PIP_FEATURES
    assert pip_req_file.COMMENT_RE.pattern == RUBRIC.PIP_COMMENT.pattern
    assert pip_req_file.ENV_VAR_RE.pattern.replace("?P<var>", "").replace("?P<name>", "") == (
        "(" + RUBRIC.PIP_ENV_VAR.pattern + ")"
    )


H1, H2, H3 = ("sha256:" + c * 64 for c in "abc")


@pytest.mark.parametrize(
    ("text", "names"),
    [
        # issue 25/11: the comment's backslash joins requests into the comment
        ("idna==3.4 # \\\nrequests==2.31.0\n", ["idna"]),
        ("idna==3.4 #\\\nrequests==2.31.0\n", ["idna"]),
        # a comment *line* never continues, and ends a continuation
        ("# note \\\nrequests==2.31.0\n", ["requests"]),
        ("    # via x \\\nrequests==2.31.0\n", ["requests"]),
        (
            f"idna==3.4 \\\n    --hash={H1} \\\n    # via -r requirements.in\nrequests==2.31.0\n",
            ["idna", "requests"],
        ),
        # pip-compile --generate-hashes: the trick on the last hash line
        (
            f"idna==3.4 \\\n    --hash={H1} # \\\nrequests==2.31.0 \\\n    --hash={H2}\n",
            ["idna"],
        ),
        (
            f"idna==3.4 \\\n    --hash={H1}\nrequests==2.31.0 \\\n    --hash={H2}\n",
            ["idna", "requests"],
        ),
        # "\ " is no continuation; "#" glued to a token is no comment
        ("idna==3.4 \\ \nrequests==2.31.0\n", None),
        ("requests==2.31.0#egg\n", None),
        # a tab is not pip's separator of requirement and options
        (f"requests==2.31.0\t--hash={H1}\n", None),
        (f"requests==2.31.0 --hash {H3}\n", ["requests"]),
        ("requests==2.31.0 -e .\n", None),
        ("requests==2.31.0 --hash=md5:abc\n", None),
        ("-r other.txt \\\nrequests==2.31.0\n", []),
        ("requests==2.31.0 \\", ["requests"]),
        ("\\\\requests==2.31.0\\\\\n", ["requests"]),
        ("requests==2.31.0\r\nidna==3.4 # \\\r\ncertifi==2023.7.22\r\n", ["requests", "idna"]),
    ],
)
def test_differential_cases(text: str, names: list[str] | None) -> None:
    """pip's reading, and where it matters the names pip installs (None: pip refuses)."""
    assert_same_reading(text)
    try:
        reqs, _ = pip_reading(text)
    except PipRefuses:
        assert names is None
    else:
        assert names is not None
        assert [r[0] for r in reqs] == names


NAMES = st.sampled_from(["requests", "idna", "Django", "zope.interface", "cffi"])
REQUIREMENTS = st.builds(
    "".join,
    st.tuples(
        st.one_of(NAMES, st.just("${" + UNSET + "}")),
        st.sampled_from(["", "==2.31.0", ">=1.0,<2", " == 3.4", "==${" + UNSET + "}", "[socks]"]),
        st.sampled_from(["", ' ; python_version >= "3.8"', ";sys_platform=='linux'"]),
    ),
)
HASHES = st.sampled_from([f"--hash={H1}", f"--hash {H2}", f"--ha={H3}"])
OPTIONS = st.sampled_from(
    [
        "--hash=md5:abc",
        "--hash=sha256",
        "-r other.txt",
        "-c constraints.txt",
        "--requirement=x.txt",
        "-e .",
        "-e",
        "--index-url https://pypi.org/simple",
        "-i https://h/${" + UNSET + "}/simple",
        "--extra-index-url=https://x",
        "--no-index",
        "--no-index=1",
        "--pre",
        "--require-hashes",
        "--prefer-binary",
        "--only-binary=:all:",
        "--no-binary -x",
        "--use-feature=truststore",
        "--use-feature=bogus",
        "-C key=val",
        "--config-settings novalue",
        "--all-releases=:all:",
        "-f ./wheels",
        "--trusted-host h",
        "--bogus",
        "--",
        "'unterminated",
        '"quoted value"',
    ]
)
COMMENTS = st.sampled_from(
    ["", "", " # comment", "#tight", " #", "\t# tab", " # \\", "#\\", " # via -r requirements.in"]
)
TAILS = st.sampled_from(["", "", "\\", " \\", "\\\\", " \\ "])
INDENTS = st.sampled_from(["", "", "    ", "\t", " "])
SEPARATORS = st.sampled_from([" ", " ", "  ", "\t"])


@st.composite
def requirement_line(draw: st.DrawFn) -> str:
    line = draw(REQUIREMENTS)
    for option in draw(st.lists(st.one_of(HASHES, HASHES, OPTIONS), max_size=3)):
        line += draw(SEPARATORS) + option
    return line


@st.composite
def lines(draw: st.DrawFn) -> str:
    body = draw(
        st.one_of(
            st.sampled_from(["", "   ", "\\", "#", "# a comment"]),
            requirement_line(),
            st.builds(" ".join, st.lists(OPTIONS, min_size=1, max_size=2)),
            HASHES,
        )
    )
    return draw(INDENTS) + body + draw(COMMENTS) + draw(TAILS)


@st.composite
def free_form_files(draw: st.DrawFn) -> str:
    """Lines of every kind, glued together at random."""
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = newline.join(draw(st.lists(lines(), max_size=10)))
    return text + draw(st.sampled_from(["", newline]))


@st.composite
def pip_compile_files(draw: st.DrawFn) -> str:
    """pip-compile --generate-hashes output, with the trailing-backslash tricks sprinkled in."""
    out = ["#", "#    pip-compile --generate-hashes requirements.in", "#"]
    for name in draw(st.lists(NAMES, min_size=1, max_size=5)):
        block = [f"{name}==2.31.0"]
        block += [
            f"    --hash={h}" for h in draw(st.lists(st.sampled_from([H1, H2, H3]), max_size=3))
        ]
        tails = [" \\"] * (len(block) - 1) + [""]
        if draw(st.booleans()):  # the trick: a comment ending in a backslash somewhere
            at = draw(st.integers(0, len(block) - 1))
            tails[at] = draw(st.sampled_from([" # \\", " #\\", "\\", " \\"]))
        out += [line + tail for line, tail in zip(block, tails, strict=True)]
        if draw(st.booleans()):
            out.append(draw(st.sampled_from(["    # via -r requirements.in", "    # via x \\"])))
    return "\n".join(out) + "\n"


@settings(max_examples=500)
@given(free_form_files())
def test_generated_requirements_files_read_as_pip_reads_them(text: str) -> None:
    assert_same_reading(text)


@settings(max_examples=300)
@given(pip_compile_files())
def test_generated_pip_compile_files_read_as_pip_reads_them(text: str) -> None:
    assert_same_reading(text)
