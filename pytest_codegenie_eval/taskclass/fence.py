"""Static fence over task class directories: the bench contract, checked without importing.

Every check here is pure file reading: Python files are parsed with :mod:`ast`, ``case.toml``
with :mod:`tomllib` and YAML with ``yaml.compose``/``yaml.safe_load``. No bench code runs, so
the fence is safe to point at an untrusted or half-written bench and fast enough for every
session (a few milliseconds per task class).

Rules (each violation is one line: ``<path>: [rule] message``). Each violation also has a
kind: ``contract`` (the loader refuses the task class too: the two apply the same rules,
from :mod:`.contract`), ``policy`` (it runs, but can never be promoted: too few cases, no
declared floor) or ``static`` (a form only an import could read, such as a computed name):

``directory-contract``
    registration.py, rubric.py, breakdown_keys.py, failure_modes.yaml, cases/ and
    cases/digests.yaml exist.
``registration``
    ``@register_task_class(...)`` is called exactly once, decorating a module-level class,
    with a string-literal name equal to the directory name.
``min-case-count``
    the number of case directories (subdirectories of cases/ holding a case.toml) is at
    least the smallest floor in ``min_cases_for_promotion`` (a dict literal of tier → int);
    a task class declaring only ``bronze`` may ship at the seed floor of :data:`SEED_FLOOR`.
``held-out-floor``
    a task class declaring a tier at or above silver has at least :data:`HELD_OUT_FLOOR`
    valid cases with ``curation_class = "held-out"``.
``breakdown-key-ban``
    breakdown_keys.py defines ``class BreakdownKey`` whose member names and string values
    contain none of :data:`BANNED_SUBSTRINGS` (case-insensitive).
``failure-modes``
    failure_modes.yaml is YAML with ``version: 1`` and a ``failure_modes`` mapping of unique
    codes (duplicate keys are detected on the node graph), each with a severity of
    block|warn|info and a non-empty description, none under a reserved prefix.
``case-id-unique``
    no two case directories of the task class declare the same ``case_id``.
``case-toml``
    every case directory has a case.toml that parses and validates as a :class:`BenchCase`.
``digest-pins``
    every case directory is pinned in cases/digests.yaml, no pin is stale and no pin names a
    directory that does not exist.
``bench-root``
    the bench root exists and is a directory.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pytest_codegenie_eval import defaults
from pytest_codegenie_eval.errors import BenchCaseLoadError, DigestsFileInvalid
from pytest_codegenie_eval.models import BenchCase
from pytest_codegenie_eval.registry import SCORE_KINDS
from pytest_codegenie_eval.taskclass.contract import (
    BANNED_SUBSTRINGS,
    KNOWN_TIERS,
    RESERVED_PREFIXES,
    banned_in,
    describe_case_errors,
    failure_modes_problems,
    floor_problems,
    read_bench_text,
    read_case_toml,
    strict_yaml,
)
from pytest_codegenie_eval.taskclass.digests import (
    case_digest,
    check_input_links,
    orphan_pins,
    pin_mismatch,
    read_digests,
)
from pytest_codegenie_eval.taskclass.layout import (
    BREAKDOWN_KEYS,
    CASE_TOML,
    CASES,
    DIGESTS_FILE,
    FAILURE_MODES,
    NOT_CASE_DIRS,
    REGISTRATION,
    RUBRIC,
    TASK_MD,
)

__all__ = [
    "BANNED_SUBSTRINGS",
    "HELD_OUT_FLOOR",
    "RESERVED_PREFIXES",
    "RULES",
    "SEED_FLOOR",
    "Violation",
    "check_bench_root",
    "check_task_class",
    "format_violations",
    "main",
    "task_class_dirs",
]

SEED_FLOOR = 3
"""Cases a bronze-only task class must ship with, whatever its declared bronze floor."""

HELD_OUT_FLOOR = 5
"""Held-out cases a task class needs once it declares a tier at or above silver."""

RULES: tuple[str, ...] = (
    "bench-root",
    "directory-contract",
    "registration",
    "min-case-count",
    "held-out-floor",
    "breakdown-key-ban",
    "failure-modes",
    "case-id-unique",
    "case-toml",
    "digest-pins",
)

_DECORATOR = "register_task_class"
_SILVER = KNOWN_TIERS.index("silver")
_SKIP_CASE_DIRS = NOT_CASE_DIRS


@dataclass(frozen=True)
class Violation:
    """One broken rule: the file or directory at fault, the rule id and what is wrong."""

    path: Path
    rule: str
    message: str
    kind: str = "contract"
    """``contract``: the loader refuses the task class too. ``policy``: it loads and runs,
    but can never be promoted (the gate says so again). ``static``: a form the fence cannot
    read without importing (the loader may accept it)."""

    def format(self, root: Path | None = None) -> str:
        """``<path relative to root>: [rule] message`` on a single line."""
        shown = self.path
        if root is not None:
            try:
                shown = self.path.relative_to(root)
            except ValueError:
                shown = self.path
        message = " ".join(self.message.split())
        return f"{shown.as_posix()}: [{self.rule}] {message}"


def format_violations(violations: Sequence[Violation], root: Path | None = None) -> str:
    """All violations, one line each (empty string when there are none)."""
    return "\n".join(v.format(root) for v in violations)


# --------------------------------------------------------------------------------------------
# helpers


def _parse_python(path: Path, rule: str, out: list[Violation]) -> ast.Module | None:
    """Parse a Python file; a read or syntax error becomes a violation under *rule*."""
    try:
        return ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as exc:
        out.append(Violation(path, rule, f"not valid Python (line {exc.lineno}): {exc.msg}"))
    except (OSError, ValueError) as exc:
        out.append(Violation(path, rule, f"cannot be read: {exc}"))
    return None


def _decorator_names(tree: ast.Module) -> frozenset[str]:
    """Local names bound to ``register_task_class`` (``from ... import x as y`` included)."""
    names = {_DECORATOR}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name == _DECORATOR and alias.asname:
                    names.add(alias.asname)
    return frozenset(names)


def _is_register_call(node: ast.Call, names: frozenset[str]) -> bool:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id in names
    return isinstance(func, ast.Attribute) and func.attr == _DECORATOR


def _tier_word(tiers: Sequence[str]) -> str:
    return ", ".join(tiers) if tiers else "none"


@dataclass(frozen=True)
class _Registration:
    """What the fence reads from registration.py: the declared promotion floors."""

    floors: Mapping[str, int] | None  # None when they could not be read (already reported)


@dataclass(frozen=True)
class _Case:
    """One case directory as read from disk."""

    directory: Path
    has_toml: bool
    case_id: str | None = None
    curation_class: str | None = None
    valid: bool = False


# --------------------------------------------------------------------------------------------
# rule 1: directory contract


def _check_contract(directory: Path, out: list[Violation]) -> None:
    for name in (REGISTRATION, RUBRIC, BREAKDOWN_KEYS, FAILURE_MODES):
        path = directory / name
        if not path.is_file():
            what = "is not a file" if path.exists() else "is missing"
            out.append(Violation(path, "directory-contract", f"{what}: every task class needs it"))
    cases = directory / CASES
    if not cases.is_dir():
        what = "is not a directory" if cases.exists() else "is missing"
        out.append(Violation(cases, "directory-contract", f"{what}: every task class needs cases/"))
        return
    task_md = directory / TASK_MD
    if task_md.exists():
        _text, unreadable = read_bench_text(task_md)
        if unreadable is not None:
            out.append(Violation(task_md, "directory-contract", unreadable))
    digests = cases / DIGESTS_FILE
    if not digests.is_file():
        what = "is not a file" if digests.exists() else "is missing"
        out.append(
            Violation(
                digests,
                "directory-contract",
                f"{what}: pin every case with `codegenie-eval digests --task-class "
                f"{directory.name} --write`",
            )
        )


# --------------------------------------------------------------------------------------------
# rule 4 (and the input of rules 2 and 3): registration


def _read_floors(path: Path, call: ast.Call, out: list[Violation]) -> Mapping[str, int] | None:
    """``min_cases_for_promotion`` of the registration call, validated as tier → int."""
    keyword = next((k for k in call.keywords if k.arg == "min_cases_for_promotion"), None)
    if keyword is None:
        if any(k.arg is None for k in call.keywords):
            out.append(
                Violation(
                    path,
                    "min-case-count",
                    "min_cases_for_promotion is passed through **kwargs; write it as a dict "
                    "literal keyword so it can be read without importing",
                    kind="static",
                )
            )
        else:
            out.append(
                Violation(
                    path,
                    "min-case-count",
                    "declares no min_cases_for_promotion; add e.g. "
                    f'min_cases_for_promotion={{"bronze": {SEED_FLOOR}}}',
                    kind="policy",
                )
            )
        return None
    value: Any
    try:
        value = ast.literal_eval(keyword.value) if isinstance(keyword.value, ast.Dict) else None
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        value = None
    if not isinstance(value, dict):
        out.append(
            Violation(
                path,
                "min-case-count",
                f"min_cases_for_promotion (line {keyword.value.lineno}) must be a dict literal "
                "of tier name -> int",
                kind="static",
            )
        )
        return None
    problems = floor_problems(value)
    if problems:
        out.append(
            Violation(path, "min-case-count", "min_cases_for_promotion: " + "; ".join(problems))
        )
        return None
    if not value:
        out.append(
            Violation(
                path,
                "min-case-count",
                "min_cases_for_promotion is empty; declare at least the bronze floor",
                kind="policy",
            )
        )
        return None
    return {tier: value[tier] for tier in KNOWN_TIERS if tier in value}


def _check_registration(directory: Path, out: list[Violation]) -> _Registration:
    path = directory / REGISTRATION
    if not path.is_file():
        return _Registration(None)  # reported by directory-contract
    tree = _parse_python(path, "registration", out)
    if tree is None:
        return _Registration(None)
    names = _decorator_names(tree)
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and _is_register_call(node, names)
    ]
    calls.sort(key=lambda c: (c.lineno, c.col_offset))
    if not calls:
        out.append(
            Violation(
                path,
                "registration",
                f"never calls @register_task_class; decorate one class with "
                f'@register_task_class("{directory.name}", ...)',
            )
        )
        return _Registration(None)
    if len(calls) > 1:
        lines = ", ".join(str(c.lineno) for c in calls)
        out.append(
            Violation(
                path,
                "registration",
                f"calls register_task_class {len(calls)} times (lines {lines}); "
                "a task class directory registers exactly one",
            )
        )
        return _Registration(None)
    call = calls[0]
    decorates_class = any(
        isinstance(node, ast.ClassDef) and call in node.decorator_list for node in tree.body
    )
    if not decorates_class:
        out.append(
            Violation(
                path,
                "registration",
                f"register_task_class (line {call.lineno}) must decorate a module-level class",
                kind="static",
            )
        )
    name_node: ast.expr | None = call.args[0] if call.args else None
    if name_node is None:
        name_node = next((k.value for k in call.keywords if k.arg == "name"), None)
    if name_node is None:
        out.append(
            Violation(path, "registration", f"register_task_class (line {call.lineno}) has no name")
        )
    elif not (isinstance(name_node, ast.Constant) and isinstance(name_node.value, str)):
        out.append(
            Violation(
                path,
                "registration",
                f"the task class name (line {name_node.lineno}) must be a string literal, "
                f"not `{ast.unparse(name_node)}`",
                kind="static",
            )
        )
    elif name_node.value != directory.name:
        out.append(
            Violation(
                path,
                "registration",
                f"registers {name_node.value!r} but lives in directory {directory.name!r}; "
                "the name and the directory must match",
            )
        )
    _check_scores(path, call, out)
    return _Registration(_read_floors(path, call, out))


def _check_scores(path: Path, call: ast.Call, out: list[Violation]) -> None:
    """``scores=``, when given, is a string literal the registry accepts."""
    keyword = next((k for k in call.keywords if k.arg == "scores"), None)
    if keyword is None:
        return
    value = keyword.value
    if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
        out.append(
            Violation(
                path,
                "registration",
                f"scores (line {value.lineno}) must be a string literal: "
                f"{' or '.join(repr(k) for k in SCORE_KINDS)}",
                kind="static",
            )
        )
    elif value.value not in SCORE_KINDS:
        out.append(
            Violation(
                path,
                "registration",
                f"scores must be one of {', '.join(SCORE_KINDS)}, got {value.value!r}",
            )
        )


# --------------------------------------------------------------------------------------------
# rules 7 and case-toml: reading the cases


def _read_cases(cases_dir: Path, out: list[Violation]) -> list[_Case]:
    cases: list[_Case] = []
    children = sorted(
        p for p in cases_dir.iterdir() if p.is_dir() and p.name not in _SKIP_CASE_DIRS
    )
    for child in children:
        toml_path = child / CASE_TOML
        if not toml_path.is_file():
            out.append(
                Violation(
                    child, "case-toml", "case directory has no case.toml; add one or remove it"
                )
            )
            cases.append(_Case(child, has_toml=False))
            continue
        try:
            data = read_case_toml(toml_path)
        except BenchCaseLoadError as exc:
            out.append(Violation(toml_path, "case-toml", exc.problem))
            cases.append(_Case(child, has_toml=True))
            continue
        raw_id = data.get("case_id")
        raw_class = data.get("curation_class")
        valid = True
        try:
            BenchCase.model_validate(data)
        except ValidationError as exc:
            valid = False
            out.append(Violation(toml_path, "case-toml", describe_case_errors(exc)[1]))
        cases.append(
            _Case(
                child,
                has_toml=True,
                case_id=raw_id if isinstance(raw_id, str) else None,
                curation_class=raw_class if isinstance(raw_class, str) else None,
                valid=valid,
            )
        )
    return cases


def _check_case_ids(cases: Sequence[_Case], out: list[Violation]) -> None:
    first: dict[str, Path] = {}
    for case in cases:
        if case.case_id is None:
            continue
        seen = first.get(case.case_id)
        if seen is None:
            first[case.case_id] = case.directory
            continue
        out.append(
            Violation(
                case.directory / CASE_TOML,
                "case-id-unique",
                f"case_id {case.case_id!r} is already used by {seen.parent.name}/{seen.name}",
            )
        )


# --------------------------------------------------------------------------------------------
# rules 2 and 3: case count and held-out floor


def _check_counts(
    directory: Path, floors: Mapping[str, int], cases: Sequence[_Case], out: list[Violation]
) -> None:
    path = directory / REGISTRATION
    tiers = list(floors)
    count = sum(1 for c in cases if c.has_toml)
    if tiers == ["bronze"]:
        required, why = SEED_FLOOR, f"the seed floor of a bronze-only task class ({SEED_FLOOR})"
    else:
        low = min(floors, key=lambda t: floors[t])
        required, why = floors[low], f"the smallest declared floor ({low}: {floors[low]})"
    if count < required:
        out.append(
            Violation(
                directory / CASES,
                "min-case-count",
                f"has {count} case director{'y' if count == 1 else 'ies'}, fewer than {why} "
                f"declared in {path.name} (tiers: {_tier_word(tiers)})",
                kind="policy",
            )
        )
    high = [t for t in tiers if KNOWN_TIERS.index(t) >= _SILVER]
    if high:
        held_out = sum(1 for c in cases if c.valid and c.curation_class == "held-out")
        if held_out < HELD_OUT_FLOOR:
            out.append(
                Violation(
                    directory / CASES,
                    "held-out-floor",
                    f'has {held_out} valid curation_class = "held-out" case(s); declaring '
                    f"{_tier_word(high)} needs at least {HELD_OUT_FLOOR}",
                    kind="policy",
                )
            )


# --------------------------------------------------------------------------------------------
# rule 5: breakdown keys


def _check_breakdown_keys(directory: Path, out: list[Violation]) -> None:
    path = directory / BREAKDOWN_KEYS
    if not path.is_file():
        return  # reported by directory-contract
    tree = _parse_python(path, "breakdown-key-ban", out)
    if tree is None:
        return
    cls = next(
        (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "BreakdownKey"), None
    )
    if cls is None:
        out.append(
            Violation(path, "breakdown-key-ban", "must define `class BreakdownKey(StrEnum)`")
        )
        return
    members = 0
    for stmt in cls.body:
        targets: list[ast.expr]
        value: ast.expr | None
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign):
            targets, value = [stmt.target], stmt.value
        else:
            continue
        for target in targets:
            if not isinstance(target, ast.Name) or target.id.startswith("_"):
                continue
            members += 1
            banned = banned_in(target.id)
            if banned:
                out.append(
                    Violation(
                        path,
                        "breakdown-key-ban",
                        f"BreakdownKey.{target.id} (line {stmt.lineno}) contains banned "
                        f"substring {banned!r}: breakdown keys must be observable properties, "
                        "not self-reports",
                    )
                )
        for node in ast.walk(value) if value is not None else ():
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                banned = banned_in(node.value)
                if banned:
                    out.append(
                        Violation(
                            path,
                            "breakdown-key-ban",
                            f"BreakdownKey value {node.value!r} (line {stmt.lineno}) contains "
                            f"banned substring {banned!r}",
                        )
                    )
    if members == 0:
        out.append(Violation(path, "breakdown-key-ban", "BreakdownKey has no members"))


# --------------------------------------------------------------------------------------------
# rule 6: failure-mode taxonomy


def _check_failure_modes(directory: Path, out: list[Violation]) -> None:
    path = directory / FAILURE_MODES
    if not path.is_file():
        return  # reported by directory-contract

    def bad(message: str) -> None:
        out.append(Violation(path, "failure-modes", message))

    text, unreadable = read_bench_text(path)
    if unreadable is not None:
        bad(unreadable)
        return
    try:
        data, duplicates = strict_yaml(text)
    except yaml.YAMLError as exc:
        bad(f"not valid YAML: {exc}")
        return
    for message in duplicates:
        bad(message)
    for problem in failure_modes_problems(data)[1]:
        bad(problem.plain())


# --------------------------------------------------------------------------------------------
# bonus rule: digest pins


def _check_digests(cases_dir: Path, cases: Sequence[_Case], out: list[Violation]) -> None:
    pins_path = cases_dir / DIGESTS_FILE
    if not pins_path.is_file():
        return  # reported by directory-contract
    try:
        pins = read_digests(cases_dir)
    except DigestsFileInvalid as exc:
        out.append(Violation(pins_path, "digest-pins", exc.problem))
        return
    task_class = cases_dir.parent.name
    present = set()
    for case in cases:
        if not case.has_toml:
            continue
        name = case.directory.name
        present.add(name)
        try:
            check_input_links(case.directory / "input")
        except BenchCaseLoadError as exc:
            out.append(Violation(exc.path, "input-links", exc.problem))
        try:
            actual = case_digest(case.directory)
        except BenchCaseLoadError as exc:
            out.append(Violation(exc.path, "digest-pins", exc.problem))
            continue
        mismatch = pin_mismatch(pins, name, actual)
        if mismatch is not None:
            out.append(Violation(case.directory, "digest-pins", mismatch.describe(task_class)))
    for orphan in orphan_pins(pins, present):
        out.append(Violation(pins_path, "digest-pins", orphan.describe(task_class)))


# --------------------------------------------------------------------------------------------
# entry points


def check_task_class(directory: Path) -> list[Violation]:
    """Every violation of the bench contract in one task class directory (no import)."""
    out: list[Violation] = []
    if not directory.is_dir():
        return [Violation(directory, "directory-contract", "is not a directory")]
    _check_contract(directory, out)
    registration = _check_registration(directory, out)
    cases_dir = directory / CASES
    cases = _read_cases(cases_dir, out) if cases_dir.is_dir() else []
    if registration.floors is not None and cases_dir.is_dir():
        _check_counts(directory, registration.floors, cases, out)
    _check_breakdown_keys(directory, out)
    _check_failure_modes(directory, out)
    _check_case_ids(cases, out)
    if cases_dir.is_dir():
        _check_digests(cases_dir, cases, out)
    return out


def _looks_like_task_class(directory: Path) -> bool:
    return (
        (directory / REGISTRATION).is_file()
        or (directory / RUBRIC).is_file()
        or (directory / CASES).is_dir()
    )


def task_class_dirs(bench_root: Path) -> list[Path]:
    """Subdirectories of the bench root that look like task classes, sorted by name."""
    if not bench_root.is_dir():
        return []
    return sorted(p for p in bench_root.iterdir() if p.is_dir() and _looks_like_task_class(p))


def check_bench_root(bench_root: Path) -> list[Violation]:
    """Violations of every task class under *bench_root*, task classes in name order.

    A subdirectory is a task class when it has registration.py, rubric.py or cases/; a
    missing bench root is a single ``bench-root`` violation.
    """
    if not bench_root.is_dir():
        what = "is not a directory" if bench_root.exists() else "does not exist"
        return [Violation(bench_root, "bench-root", f"bench root {what}")]
    out: list[Violation] = []
    for directory in task_class_dirs(bench_root):
        out.extend(check_task_class(directory))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pytest_codegenie_eval.taskclass.fence [BENCH_ROOT]``: print violations, exit 1
    if any."""
    parser = argparse.ArgumentParser(
        prog="python -m pytest_codegenie_eval.taskclass.fence",
        description="Statically check every task class under a bench root (no bench import).",
    )
    parser.add_argument("bench_root", nargs="?", default=defaults.BENCH_ROOT, type=Path)
    args = parser.parse_args(argv)
    root: Path = args.bench_root
    started = time.perf_counter()
    violations = check_bench_root(root)
    elapsed = time.perf_counter() - started
    if violations:
        print(format_violations(violations, root))
    n = len(task_class_dirs(root))
    print(
        f"fence: {len(violations)} violation(s) in {n} task class(es) under {root} "
        f"({elapsed:.3f}s)",
        file=sys.stderr,
    )
    return 1 if violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
