"""Rules of the task-class contract that the loader and the fence apply alike.

The loader raises the first problem it meets and the fence collects them all, but both
take their rules from here: YAML is read through :func:`strict_yaml`, ``failure_modes.yaml``
is validated by :class:`FailureModesFile`, promotion floors by :func:`floor_problems`,
breakdown keys by :func:`banned_in`, and pydantic errors are worded by
:func:`describe_errors`. A file one of them refuses, the other refuses too (the property is
tested over generated task classes). File names and the path layout are in :mod:`.layout`;
digest pins in :mod:`.digests`.

Rules only the fence applies, because they are about whether a task class can ever be
promoted rather than whether it can run (the promotion gate applies them again when it
decides): ``min-case-count`` (a declared floor, enough case directories) and
``held-out-floor``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

# the floor rules live with the decorator, which must stay light: the child process that
# imports registration.py loads it without pydantic
from pytest_codegenie_eval.codes import RESERVED_PREFIXES
from pytest_codegenie_eval.errors import BenchCaseLoadError
from pytest_codegenie_eval.registry import KNOWN_TIERS, floor_problems

SEVERITIES: tuple[str, ...] = ("block", "warn", "info")

BANNED_SUBSTRINGS: tuple[str, ...] = ("confidence", "llm", "self_reported", "model_says")
"""Breakdown keys must be observable properties, never the agent's or a model's self-report."""


# --------------------------------------------------------------------------------------------
# YAML


def duplicate_keys(node: yaml.Node, where: str = "") -> Iterator[str]:
    """Every repeated key of every mapping in the node graph, as a message naming the
    dotted key and both lines (PyYAML would silently keep only the last)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                line = key.start_mark.line + 1
                label = f"{where}.{key.value}" if where else str(key.value)
                if key.value in seen:
                    yield (
                        f"duplicate key {label!r} on line {line} (first on line "
                        f"{seen[key.value]}); YAML keeps only the last"
                    )
                else:
                    seen[key.value] = line
                yield from duplicate_keys(value, label)
            else:
                yield from duplicate_keys(value, where)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from duplicate_keys(item, where)


MAX_YAML_DEPTH = 64
"""How deeply a contract YAML file may nest; the real files nest three levels."""


class YamlRefused(yaml.YAMLError):
    """YAML that parses but that a contract file may not use: aliases, deep nesting."""


def compose_bounded(text: str) -> yaml.Node | None:
    """The node graph of a YAML document, refused before it is built when it nests deeper
    than :data:`MAX_YAML_DEPTH` or uses an alias.

    PyYAML composes recursively (5,000 nested brackets are a RecursionError), and aliases
    share nodes, so a few lines of anchors ("billion laughs") expand exponentially in every
    walk over the result. The event stream is read first: PyYAML's parser keeps its own
    stack, so this check is linear in the text and cannot recurse. No contract file needs
    an alias, so every alias is refused, not only the explosive ones.
    """
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise YamlRefused(f"nested deeper than {MAX_YAML_DEPTH} levels (line {line})")
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            line = event.start_mark.line + 1 if event.start_mark else "?"
            raise YamlRefused(
                f"uses the alias *{event.anchor} on line {line}: anchors and aliases are not "
                "allowed in this file"
            )
    return yaml.compose(text, Loader=yaml.SafeLoader)


def strict_yaml(text: str) -> tuple[Any, list[str]]:
    """The value of a YAML document (safe constructors only) and its duplicate keys.

    Raises :class:`yaml.YAMLError` when the text is not YAML, nests too deeply or uses an
    alias (:func:`compose_bounded`). The document is composed once: the value is
    constructed from the same node graph the duplicates are read from.
    """
    root = compose_bounded(text)
    if root is None:
        return None, []
    duplicates = list(duplicate_keys(root))
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(root), duplicates
    finally:
        loader.dispose()


MAX_BENCH_FILE_BYTES = 8 * 1024 * 1024
"""The largest bench-author file the harness parses (case.toml, task.md, the YAML files)."""


def read_bench_text(path: Path) -> tuple[str, str | None]:
    """A bench author's text file, bounded: its text, or ``""`` and the first reason it
    cannot be read (not a regular file, larger than ``MAX_BENCH_FILE_BYTES``, unreadable,
    not UTF-8). The caller raises its own typed error naming the file."""
    try:
        if not path.is_file():
            return "", "is a directory, not a file" if path.is_dir() else "is not a regular file"
        with path.open("rb") as handle:
            raw = handle.read(MAX_BENCH_FILE_BYTES + 1)
    except OSError as exc:
        return "", f"cannot be read: {exc.strerror or exc}"
    if len(raw) > MAX_BENCH_FILE_BYTES:
        return "", f"is larger than {MAX_BENCH_FILE_BYTES // (1024 * 1024)} MiB"
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return "", f"not UTF-8 (byte {exc.start}: {exc.reason})"


def read_contract_yaml(path: Path) -> tuple[Any, str | None]:
    """A contract YAML file's value, or the first reason it cannot be used (not a readable
    UTF-8 file, not YAML, too deep, an alias, a repeated key); the caller raises its own
    typed error."""
    text, problem = read_bench_text(path)
    if problem is not None:
        return None, problem
    try:
        data, duplicates = strict_yaml(text)
    except yaml.YAMLError as exc:
        return None, f"not valid YAML: {exc}"
    if duplicates:
        return None, duplicates[0]
    return data, None


# --------------------------------------------------------------------------------------------
# problems and their wording


@dataclass(frozen=True)
class Problem:
    """One broken rule inside a file: where (the key path) and what is wrong."""

    loc: tuple[str, ...]
    message: str

    def bracketed(self) -> str:
        """The loader's style: ``[failure_modes.CODE].severity must be ...`` (the table and
        its entry in brackets, so a code holding dots stays one name)."""
        if not self.loc:
            return self.message
        head = f"[{'.'.join(self.loc[:2])}]" + "".join(f".{part}" for part in self.loc[2:])
        return f"{head} {self.message}"

    def plain(self) -> str:
        """The fence's style: ``failure_modes.CODE.severity must be ...``."""
        return f"{'.'.join(self.loc)} {self.message}" if self.loc else self.message


def _loc(raw: Sequence[int | str]) -> tuple[str, ...]:
    return tuple(str(part) for part in raw if part != "[key]")


def describe_errors(exc: ValidationError) -> list[Problem]:
    """A pydantic validation error as problems, in the order pydantic found them."""
    problems = []
    for err in exc.errors():
        loc = _loc(err["loc"])
        if err["type"] == "extra_forbidden":
            where = "top-level key" if len(loc) == 1 else "key"
            problems.append(Problem(loc[:-1], f"unknown {where} {loc[-1]!r}"))
        elif err["type"] == "missing":
            problems.append(Problem(loc[:-1], f"missing required key {loc[-1]!r}"))
        elif err["type"].startswith("contract."):
            problems.append(Problem(loc, err["msg"]))
        else:
            problems.append(Problem(loc, f"{err['msg']} (got {err.get('input')!r})"))
    return problems


def read_case_toml(path: Path) -> dict[str, Any]:
    """The table a ``case.toml`` holds, read as the loader and the fence both read it:
    UTF-8, not empty, valid TOML. Every problem is a :class:`BenchCaseLoadError` naming the
    file (validating the table as a ``BenchCase`` is the caller's next step)."""
    text, problem = read_bench_text(path)
    if problem is not None:
        raise BenchCaseLoadError(path, problem)
    if text.startswith("\ufeff"):
        raise BenchCaseLoadError(
            path, "starts with a byte-order mark (U+FEFF): save it as UTF-8 without one"
        )
    if not text.strip():
        raise BenchCaseLoadError(path, "is empty")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BenchCaseLoadError(path, f"not valid TOML: {exc}") from exc
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively
        raise BenchCaseLoadError(path, "nests arrays or tables too deeply to parse") from None


def describe_case_errors(exc: ValidationError) -> tuple[str | None, str]:
    """A ``case.toml`` validation error as (first field, one-line message), the wording
    both the loader and the fence print."""
    parts = []
    first: str | None = None
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        first = first or loc
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {loc!r}")
        elif err["type"] == "missing":
            parts.append(f"missing required key {loc!r}")
        else:
            parts.append(f"{loc}: {err['msg']} (got {err.get('input')!r})")
    return first, "; ".join(parts)


def _fail(message: str, **context: Any) -> PydanticCustomError:
    return PydanticCustomError("contract.invalid", message, context)


# --------------------------------------------------------------------------------------------
# failure_modes.yaml


def _version(value: object) -> int:
    if isinstance(value, bool) or value != 1:  # `version: true` is not 1
        raise _fail("must be 1, got {got}", got=repr(value))
    return 1


def _code(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _fail("code must be a non-empty string, got {got}", got=repr(value))
    if value.startswith(RESERVED_PREFIXES):
        raise _fail(
            "the prefixes {prefixes} are reserved for the harness",
            prefixes=", ".join(RESERVED_PREFIXES),
        )
    return value


def _severity(value: object) -> str:
    if not isinstance(value, str) or value not in SEVERITIES:
        raise _fail("must be block, warn or info, got {got}", got=repr(value))
    return value


def _description(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail("must be a non-empty string, got {got}", got=repr(value))
    return value


_SHAPE = "{severity, description}"


def _modes(value: object) -> object:
    if not isinstance(value, Mapping):
        raise _fail("must map codes to {shape}, got {got}", shape=_SHAPE, got=repr(value))
    return value


class FailureModeSpec(BaseModel):
    """One code of the taxonomy: how bad it is and what it means."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    severity: Annotated[
        Literal["block", "warn", "info"], BeforeValidator(_severity), Field(validate_default=True)
    ] = None  # type: ignore[assignment]  # validated: a missing severity is reported
    description: Annotated[str, BeforeValidator(_description), Field(validate_default=True)] = None  # type: ignore[assignment]

    @model_validator(mode="before")
    @classmethod
    def _is_mapping(cls, value: object) -> object:
        if not isinstance(value, Mapping):
            raise _fail("must be {shape}, got {got}", shape=_SHAPE, got=repr(value))
        return value


class FailureModesFile(BaseModel):
    """``failure_modes.yaml``: ``version: 1`` and the task class's failure-mode codes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Annotated[int, BeforeValidator(_version), Field(validate_default=True)] = None  # type: ignore[assignment]
    failure_modes: Annotated[
        dict[Annotated[str, BeforeValidator(_code)], FailureModeSpec],
        BeforeValidator(_modes),
        Field(validate_default=True),
    ] = None  # type: ignore[assignment]


def failure_modes_problems(data: object) -> tuple[FailureModesFile | None, list[Problem]]:
    """Validate the parsed ``failure_modes.yaml``: the model, or every problem found."""
    if not isinstance(data, Mapping):
        return None, [Problem((), "must be a mapping with `version: 1` and `failure_modes`")]
    try:
        return FailureModesFile.model_validate(data), []
    except ValidationError as exc:
        return None, describe_errors(exc)


# --------------------------------------------------------------------------------------------
# breakdown keys


def banned_in(text: str) -> str | None:
    """The banned substring a breakdown key's name or value contains, if any."""
    lowered = text.lower()
    return next((b for b in BANNED_SUBSTRINGS if b in lowered), None)


__all__ = [
    "BANNED_SUBSTRINGS",
    "KNOWN_TIERS",
    "MAX_YAML_DEPTH",
    "RESERVED_PREFIXES",
    "SEVERITIES",
    "FailureModeSpec",
    "FailureModesFile",
    "Problem",
    "YamlRefused",
    "banned_in",
    "compose_bounded",
    "describe_case_errors",
    "describe_errors",
    "duplicate_keys",
    "failure_modes_problems",
    "floor_problems",
    "read_contract_yaml",
    "strict_yaml",
]
