"""Trust tiers: the thresholds of ``docs/trust-tiers.yaml`` and the tiers currently granted.

The file is read, never written, by the harness: which tier a task class holds is a human
decision made through review (see ``docs/adr/0003-uncalibrated-trust-tiers.md``). Every
problem with the file is a :class:`~pytest_codegenie_eval.errors.TierConfigInvalid` naming
the offending key (``thresholds.silver``) and its line, because a promotion decision resting
on a silently misread threshold would be worse than no decision at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pytest_codegenie_eval.errors import CodegenieEvalError, TierConfigInvalid
from pytest_codegenie_eval.registry import KNOWN_TIERS

__all__ = [
    "KNOWN_TIERS",
    "TierConfig",
    "UnknownTier",
    "load_tier_config",
]

_TOP_LEVEL_KEYS = (
    "schema_version",
    "uncalibrated",
    "thresholds",
    "current_tiers",
    "evidence_window",
    "required_sut_isolation",
)
# How a SUT may have been isolated, strongest first; a tier requiring one accepts any
# stronger. "in-process" (the pluggy hook) counts only where a tier names it explicitly.
SUT_ISOLATIONS = ("bwrap", "env-only", "in-process")
DEFAULT_SUT_ISOLATION = "bwrap"
_REQUIRED_KEYS = ("schema_version", "thresholds")
_NO_TIER = "none"

# Strict so that ``"0.8"`` (a string) or ``true`` is rejected instead of coerced; ints are
# still accepted because YAML reads ``1`` as an int and ``gold: 1`` means exactly 1.0.
_Threshold = Annotated[float, Field(strict=True, ge=0.0, le=1.0, allow_inf_nan=False)]


class UnknownTier(CodegenieEvalError, ValueError):
    """A tier was asked for that the tier configuration or a task class does not declare.

    It is a :class:`ValueError` (not a :class:`KeyError`, whose message pytest and ``str()``
    render quoted) so that the message naming the tier and what *is* declared reads cleanly.
    :mod:`pytest_codegenie_eval.promotion` re-exports it as the gate's unknown-tier error.
    """

    def __init__(
        self,
        tier: str,
        *,
        declared: Iterable[str],
        where: str,
        task_class: str | None = None,
        hint: str = "",
    ) -> None:
        self.tier = tier
        self.declared = tuple(declared)
        self.where = where
        self.task_class = task_class
        listing = ", ".join(self.declared) or "none"
        subject = f" for task class {task_class!r}" if task_class is not None else ""
        advice = f"; {hint}" if hint else ""
        super().__init__(
            f"tier {tier!r}{subject} is not declared in {where} (declared: {listing}){advice}"
        )


class _Problem(Exception):
    """One violation of the tier file's contract, with the dotted key it concerns."""

    def __init__(self, key: str | None, problem: str) -> None:
        super().__init__(problem)
        self.key = key
        self.problem = problem


def _is_number(value: object) -> bool:
    # bool is an int subclass; ``silver: yes`` must not become 1.0.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check(data: Mapping[str, Any]) -> None:
    """Raise :class:`_Problem` for the first contract violation of the parsed tier file.

    One function serves both the YAML loader (which maps the key to a line) and direct
    construction of :class:`TierConfig`, so the two can never disagree on what is valid.
    """
    for key in data:
        if key not in _TOP_LEVEL_KEYS:
            raise _Problem(
                str(key),
                f"unknown key {key!r} (allowed: {', '.join(_TOP_LEVEL_KEYS)})",
            )
    for key in _REQUIRED_KEYS:
        if key not in data:
            raise _Problem(key, f"missing required key {key!r}")

    version = data["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version != 1:
        raise _Problem("schema_version", f"unsupported schema_version {version!r} (expected 1)")

    if "uncalibrated" in data and not isinstance(data["uncalibrated"], bool):
        raise _Problem("uncalibrated", f"must be true or false, got {data['uncalibrated']!r}")

    thresholds = data["thresholds"]
    if not isinstance(thresholds, Mapping):
        raise _Problem("thresholds", "must be a mapping of tier name to threshold")
    if not thresholds:
        raise _Problem("thresholds", "must name at least one tier")
    for tier, value in thresholds.items():
        key = f"thresholds.{tier}"
        if tier not in KNOWN_TIERS:
            raise _Problem(key, f"unknown tier {tier!r} (known tiers: {', '.join(KNOWN_TIERS)})")
        if not _is_number(value):
            raise _Problem(key, f"threshold must be a number in [0, 1], got {value!r}")
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise _Problem(key, f"threshold {value!r} is outside [0, 1]")
    # Tiers are ordered: asking more of a lower tier than of a higher one is a typo, and it
    # would make "highest sufficient tier" meaningless.
    ordered = [tier for tier in KNOWN_TIERS if tier in thresholds]
    for lower, higher in pairwise(ordered):
        if thresholds[higher] < thresholds[lower]:
            raise _Problem(
                f"thresholds.{higher}",
                f"{higher} threshold {thresholds[higher]} is below {lower} threshold "
                f"{thresholds[lower]} (tiers are ordered {' < '.join(KNOWN_TIERS)})",
            )

    current = data.get("current_tiers", {})
    if current is None:
        current = {}
    if not isinstance(current, Mapping):
        raise _Problem("current_tiers", "must be a mapping of task class name to tier or none")
    for task_class, tier in current.items():
        key = f"current_tiers.{task_class}"
        if not isinstance(task_class, str) or not task_class:
            raise _Problem(key, f"task class name must be a non-empty string, got {task_class!r}")
        if tier is None or tier == _NO_TIER:
            continue
        if tier not in thresholds:
            declared = ", ".join(ordered)
            raise _Problem(
                key,
                f"unknown tier {tier!r} (use one of the tiers in thresholds: {declared}, "
                f"or {_NO_TIER})",
            )

    if "required_sut_isolation" in data:
        required = data["required_sut_isolation"]
        allowed = ", ".join(SUT_ISOLATIONS)
        if isinstance(required, str):
            if required not in SUT_ISOLATIONS:
                raise _Problem(
                    "required_sut_isolation", f"must be one of {allowed}, got {required!r}"
                )
        elif isinstance(required, Mapping):
            for tier, value in required.items():
                key = f"required_sut_isolation.{tier}"
                if tier not in thresholds:
                    raise _Problem(key, f"tier {tier!r} has no threshold in thresholds")
                if value not in SUT_ISOLATIONS:
                    raise _Problem(key, f"must be one of {allowed}, got {value!r}")
        else:
            raise _Problem(
                "required_sut_isolation",
                f"must be one of {allowed}, or a mapping of tier to one of them",
            )

    if "evidence_window" in data:
        window = data["evidence_window"]
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise _Problem("evidence_window", f"must be an integer >= 1, got {window!r}")


class TierConfig(BaseModel):
    """The parsed ``docs/trust-tiers.yaml``.

    ``thresholds`` maps tier name to the ``lower_bound_95`` a run must reach;
    ``current_tiers`` maps task class name to the tier a human has granted (``None`` for
    none); ``evidence_window`` is how many most recent reports of a task class are judged
    together. ``uncalibrated`` is true until the thresholds are backed by a calibration study.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1]
    uncalibrated: bool = True
    thresholds: dict[str, _Threshold]
    current_tiers: dict[str, str | None] = Field(default_factory=dict)
    evidence_window: Annotated[int, Field(strict=True, ge=1)] = 1
    required_sut_isolation: str | dict[str, str] = DEFAULT_SUT_ISOLATION

    @field_validator("current_tiers", mode="before")
    @classmethod
    def _none_spelled_out(cls, value: object) -> object:
        # The file spells "no tier" as ``none`` for readability; null means the same.
        if value is None:
            return {}
        if isinstance(value, Mapping):
            return {k: (None if v == _NO_TIER else v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _contract(self) -> TierConfig:
        try:
            _check(self.model_dump())
        except _Problem as exc:
            raise ValueError(f"{exc.key}: {exc.problem}" if exc.key else exc.problem) from None
        return self

    @property
    def tiers(self) -> tuple[str, ...]:
        """The configured tiers, lowest first."""
        return tuple(tier for tier in KNOWN_TIERS if tier in self.thresholds)

    def threshold(self, tier: str) -> float:
        """The ``lower_bound_95`` threshold of *tier*.

        Raises :class:`UnknownTier` (a ``ValueError``) when *tier* has no threshold.
        """
        try:
            return self.thresholds[tier]
        except KeyError:
            raise UnknownTier(
                tier, declared=self.tiers, where="the thresholds of the trust tier config"
            ) from None

    def required_isolation(self, tier: str) -> str:
        """The weakest SUT isolation a case may have had to count as evidence for *tier*
        (``bwrap`` unless the file says otherwise)."""
        required = self.required_sut_isolation
        if isinstance(required, str):
            return required
        return required.get(tier, DEFAULT_SUT_ISOLATION)

    def isolation_suffices(self, tier: str, isolation: str) -> bool:
        """Whether a case run with *isolation* counts for *tier*."""
        if isolation not in SUT_ISOLATIONS:
            return False  # unrecorded (older reports) or unknown: never evidence
        needed = SUT_ISOLATIONS.index(self.required_isolation(tier))
        return SUT_ISOLATIONS.index(isolation) <= needed

    def current_tier(self, task_class: str) -> str | None:
        """The tier a human has granted *task_class*, or ``None``."""
        return self.current_tiers.get(task_class)

    def next_tier(self, current: str | None) -> str | None:
        """The configured tier directly above *current* (the lowest one for ``None``).

        Returns ``None`` when *current* is already the highest configured tier; raises
        :class:`UnknownTier` when *current* is not a configured tier.
        """
        tiers = self.tiers
        if current is None:
            return tiers[0]
        if current not in tiers:
            raise UnknownTier(
                current, declared=tiers, where="the thresholds of the trust tier config"
            )
        index = tiers.index(current) + 1
        return tiers[index] if index < len(tiers) else None

    def rank(self, tier: str | None) -> int:
        """Order of *tier* among the known tiers: -1 for ``None``, 0 for bronze, and up."""
        if tier is None:
            return -1
        if tier not in KNOWN_TIERS:
            raise UnknownTier(tier, declared=KNOWN_TIERS, where="the known tiers")
        return KNOWN_TIERS.index(tier)


# --- loading ------------------------------------------------------------------------------


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _key_text(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else f"<{node.tag}>"


def _construct(node: yaml.Node) -> Any:
    # Build the Python value with the safe constructor from a node we already hold, so the
    # value and its line number come from the same parse.
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _walk(node: yaml.Node, prefix: str, lines: dict[str, int], path: Path) -> Any:
    """Construct *node*'s value, recording each mapping key's line and rejecting duplicates.

    PyYAML keeps the last of two equal keys without a word; for a file that grants trust,
    a second ``silver:`` silently winning is exactly the kind of edit review must see.
    """
    # A tagged mapping (``!!python/object {}``) goes to the safe constructor, which rejects it.
    if not isinstance(node, yaml.MappingNode) or node.tag != "tag:yaml.org,2002:map":
        return _construct(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = _construct(key_node)
        dotted = f"{prefix}{_key_text(key_node)}"
        try:
            duplicate = key in result
        except TypeError:  # an unhashable complex key: not a valid key for this file anyway
            raise TierConfigInvalid(
                path, "mapping keys must be plain scalars", key=dotted, line=_line(key_node)
            ) from None
        if duplicate:
            raise TierConfigInvalid(
                path,
                f"duplicate key {dotted!r} (first defined on line {lines[dotted]})",
                key=dotted,
                line=_line(key_node),
            )
        lines[dotted] = _line(key_node)
        result[key] = _walk(value_node, f"{dotted}.", lines, path)
    return result


def load_tier_config(path: Path) -> TierConfig:
    """Read and validate the trust tier file at *path*.

    Every failure is :class:`~pytest_codegenie_eval.errors.TierConfigInvalid` carrying the
    dotted key (``thresholds.silver``) and the 1-based line where one is known.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TierConfigInvalid(path, "file does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TierConfigInvalid(path, f"cannot read file: {exc}") from None

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        raise TierConfigInvalid(path, f"invalid YAML: {problem}", line=line) from None
    except yaml.YAMLError as exc:
        raise TierConfigInvalid(path, f"invalid YAML: {exc}") from None

    if not isinstance(root, yaml.MappingNode):
        kinds = {yaml.SequenceNode: "a sequence", yaml.ScalarNode: "a scalar"}
        found = "an empty document" if root is None else kinds.get(type(root), "no mapping")
        raise TierConfigInvalid(
            path,
            f"must be a mapping with schema_version and thresholds, found {found}",
            line=_line(root) if root is not None else None,
        )

    lines: dict[str, int] = {}
    try:
        data = _walk(root, "", lines, path)
    except yaml.MarkedYAMLError as exc:  # e.g. an unknown tag such as !!python/object
        mark = exc.problem_mark or exc.context_mark
        raise TierConfigInvalid(
            path,
            f"invalid YAML: {exc.problem or exc}",
            line=mark.line + 1 if mark is not None else None,
        ) from None

    try:
        _check(data)
    except _Problem as exc:
        # A missing key has no line of its own: point at the mapping that should hold it.
        line = lines.get(exc.key, _line(root)) if exc.key else _line(root)
        raise TierConfigInvalid(path, exc.problem, key=exc.key, line=line) from None

    try:
        return TierConfig.model_validate(data)
    except ValidationError as exc:  # pragma: no cover - _check guards every field first
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or None
        line = lines.get(key, _line(root)) if key else _line(root)
        raise TierConfigInvalid(path, first["msg"], key=key, line=line) from None
