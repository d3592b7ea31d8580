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
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from pytest_codegenie_eval.errors import CodegenieEvalError, TierConfigInvalid
from pytest_codegenie_eval.models import SUT_ISOLATIONS
from pytest_codegenie_eval.registry import KNOWN_TIERS
from pytest_codegenie_eval.taskclass.contract import compose_bounded

__all__ = [
    "KNOWN_TIERS",
    "TierConfig",
    "UnknownTier",
    "load_tier_config",
]

DEFAULT_SUT_ISOLATION = "bwrap"
_NO_TIER = "none"


class UnknownTier(CodegenieEvalError, ValueError):
    """A tier was asked for that the tier configuration or a task class does not declare.

    It is a :class:`ValueError` (not a :class:`KeyError`, whose message pytest and ``str()``
    render quoted) so that the message naming the tier and what *is* declared reads cleanly.
    :mod:`pytest_codegenie_eval.evidence.promotion` re-exports it as the gate's unknown-tier error.
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


def _fail(message: str, **context: Any) -> PydanticCustomError:
    return PydanticCustomError("tiers.invalid", message, context)


def _is_number(value: object) -> bool:
    # bool is an int subclass; ``silver: yes`` must not become 1.0.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _schema_version(value: object) -> object:
    if not isinstance(value, int) or isinstance(value, bool) or value != 1:
        raise _fail("unsupported schema_version {got} (expected 1)", got=repr(value))
    return value


def _boolean(value: object) -> object:
    if not isinstance(value, bool):
        raise _fail("must be true or false, got {got}", got=repr(value))
    return value


def _thresholds(value: object) -> object:
    if not isinstance(value, Mapping):
        raise _fail("must be a mapping of tier name to threshold")
    if not value:
        raise _fail("must name at least one tier")
    return value


def _known_tier(value: object) -> object:
    if value not in KNOWN_TIERS:
        raise _fail("unknown tier {got} (known tiers: {known})", got=repr(value), known=_KNOWN)
    return value


def _threshold(value: object) -> object:
    if not _is_number(value):
        raise _fail("threshold must be a number in [0, 1], got {got}", got=repr(value))
    assert isinstance(value, int | float)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise _fail("threshold {got} is outside [0, 1]", got=repr(value))
    return value


def _current_tiers(value: object) -> object:
    # The file spells "no tier" as ``none`` for readability; null means the same.
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail("must be a mapping of task class name to tier or none")
    return {k: (None if v == _NO_TIER else v) for k, v in value.items()}


def _task_class_name(value: object) -> object:
    if not isinstance(value, str) or not value:
        raise _fail("task class name must be a non-empty string, got {got}", got=repr(value))
    return value


def _window(value: object) -> object:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _fail("must be an integer >= 1, got {got}", got=repr(value))
    return value


def _isolation(value: object) -> object:
    if value not in SUT_ISOLATIONS:
        raise _fail("must be one of {allowed}, got {got}", allowed=_ALLOWED, got=repr(value))
    return value


def _tier_list(value: object) -> object:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _fail("must be a list of tier names, got {got}", got=repr(value))
    return value


def _required_isolation(value: object) -> object:
    if isinstance(value, Mapping):
        return value  # each entry is checked against the thresholds in _across_fields
    if isinstance(value, str):
        return _isolation(value)
    raise _fail("must be one of {allowed}, or a mapping of tier to one of them", allowed=_ALLOWED)


_KNOWN = ", ".join(KNOWN_TIERS)
_ALLOWED = ", ".join(SUT_ISOLATIONS)
_Tier = Annotated[str, BeforeValidator(_known_tier)]


class TierConfig(BaseModel):
    """The parsed ``docs/trust-tiers.yaml``.

    ``thresholds`` maps tier name to the ``lower_bound_95`` a run must reach;
    ``current_tiers`` maps task class name to the tier a human has granted (``None`` for
    none); ``evidence_window`` is how many most recent reports of a task class are judged
    together. ``uncalibrated`` is true until the thresholds are backed by a calibration study.

    Every rule of the file lives on this model, so the YAML loader (which adds the line) and
    direct construction can never disagree on what is valid.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Annotated[Literal[1], BeforeValidator(_schema_version)]
    uncalibrated: Annotated[bool, BeforeValidator(_boolean)] = True
    thresholds: Annotated[
        dict[_Tier, Annotated[float, BeforeValidator(_threshold)]], BeforeValidator(_thresholds)
    ]
    current_tiers: Annotated[
        dict[Annotated[str, BeforeValidator(_task_class_name)], str | None],
        BeforeValidator(_current_tiers),
    ] = Field(default_factory=dict)
    evidence_window: Annotated[int, BeforeValidator(_window)] = 1
    required_sut_isolation: Annotated[
        str | dict[str, Any], BeforeValidator(_required_isolation)
    ] = DEFAULT_SUT_ISOLATION
    # tiers whose evidence must have been measured through the model gateway: every scored
    # case with metered cost and a kept transcript
    requires_metered_cost: Annotated[list[str], BeforeValidator(_tier_list)] = Field(
        default_factory=list
    )

    @model_validator(mode="after")
    def _across_fields(self) -> TierConfig:
        def fail(key: str, problem: str) -> PydanticCustomError:
            return PydanticCustomError(
                "tiers.across", "{key}: {problem}", {"key": key, "problem": problem}
            )

        # Tiers are ordered: asking more of a lower tier than of a higher one is a typo, and
        # it would make "highest sufficient tier" meaningless.
        thresholds = self.thresholds
        ordered = self.tiers
        for lower, higher in pairwise(ordered):
            if thresholds[higher] < thresholds[lower]:
                raise fail(
                    f"thresholds.{higher}",
                    f"{higher} threshold {thresholds[higher]} is below {lower} threshold "
                    f"{thresholds[lower]} (tiers are ordered {' < '.join(KNOWN_TIERS)})",
                )
        for task_class, tier in self.current_tiers.items():
            if tier is not None and tier not in thresholds:
                raise fail(
                    f"current_tiers.{task_class}",
                    f"unknown tier {tier!r} (use one of the tiers in thresholds: "
                    f"{', '.join(ordered)}, or {_NO_TIER})",
                )
        for index, tier in enumerate(self.requires_metered_cost):
            if tier not in thresholds:
                raise fail(f"requires_metered_cost[{index}]", f"tier {tier!r} has no threshold")
        if isinstance(self.required_sut_isolation, Mapping):
            for tier, value in self.required_sut_isolation.items():
                key = f"required_sut_isolation.{tier}"
                if tier not in thresholds:
                    raise fail(key, f"tier {tier!r} has no threshold in thresholds")
                if value not in SUT_ISOLATIONS:
                    raise fail(key, f"must be one of {_ALLOWED}, got {value!r}")
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
        return str(required.get(tier, DEFAULT_SUT_ISOLATION))

    def isolation_suffices(self, tier: str, isolation: str) -> bool:
        """Whether a case run with *isolation* counts for *tier*."""
        if isolation not in SUT_ISOLATIONS:
            return False  # unrecorded (older reports) or unknown: never evidence
        needed = SUT_ISOLATIONS.index(self.required_isolation(tier))
        return SUT_ISOLATIONS.index(isolation) <= needed

    def metering_required(self, tier: str) -> bool:
        """Whether *tier*'s evidence must be metered by the model gateway."""
        return tier in self.requires_metered_cost

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
        root = compose_bounded(text)
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
        return TierConfig.model_validate(data)
    except ValidationError as exc:
        key, problem = _first_problem(exc)
        # A missing key has no line of its own: point at the mapping that should hold it.
        line = lines.get(key, _line(root)) if key else _line(root)
        raise TierConfigInvalid(path, problem, key=key, line=line) from None


def _first_problem(exc: ValidationError) -> tuple[str | None, str]:
    """The dotted key and the wording of the first problem pydantic found."""
    err = exc.errors()[0]
    loc = [str(part) for part in err["loc"] if part != "[key]"]
    key = ".".join(loc) or None
    ctx = err.get("ctx") or {}
    if err["type"] == "tiers.across":
        return str(ctx["key"]), str(ctx["problem"])
    if err["type"] == "extra_forbidden":
        return key, f"unknown key {loc[-1]!r} (allowed: {', '.join(TierConfig.model_fields)})"
    if err["type"] == "missing":
        return key, f"missing required key {loc[-1]!r}"
    return key, err["msg"]
