"""Loading a task class directory: registration, taxonomy, breakdown keys and cases.

Nothing here raises for a single broken case: every case directory becomes a
:class:`CaseEntry` holding either the validated :class:`BenchCase` or the typed error that
keeps it from running, so one bad case fails one item and never the run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from pydantic import ValidationError

from pytest_codegenie_eval.codes import HARNESS_FAILURE_MODES
from pytest_codegenie_eval.errors import (
    BenchCaseDigestMismatch,
    BenchCaseIDCollision,
    BenchCaseLoadError,
    BenchRootMissing,
    CodegenieEvalError,
    DigestsFileInvalid,
    TaskClassInvalid,
    TaskClassLoadError,
    TaskClassNotFound,
)
from pytest_codegenie_eval.hashing import hash_tree
from pytest_codegenie_eval.models import BenchCase, Severity
from pytest_codegenie_eval.registry import TaskClass
from pytest_codegenie_eval.taskclass.bench_import import DEFAULT_IMPORT_TIMEOUT_S, import_modules
from pytest_codegenie_eval.taskclass.contract import (
    banned_in,
    describe_case_errors,
    failure_modes_problems,
    read_bench_text,
    read_case_toml,
    read_contract_yaml,
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
    FAILURE_MODES,
    NOT_CASE_DIRS,
    REGISTRATION,
    RUBRIC,
    TASK_MD,
    is_task_class_dir,
    task_class_dir_of_case,
)


@dataclass(frozen=True)
class CaseEntry:
    """One case directory of a task class, loaded or not."""

    directory: Path
    name: str
    case: BenchCase | None = None
    digest: str = ""
    error: CodegenieEvalError | None = None

    @property
    def case_id(self) -> str:
        return self.case.case_id if self.case is not None else self.name


@dataclass(frozen=True)
class LoadedTaskClass:
    """Everything the harness needs about a task class, read once per session."""

    task_class: TaskClass
    directory: Path
    breakdown_keys: frozenset[str]
    failure_modes: Mapping[str, tuple[Severity, str]]
    rubric_path: Path
    rubric_digest: str
    task_md: str
    cases: tuple[CaseEntry, ...]
    orphan_pins: tuple[str, ...] = ()
    by_dir: Mapping[str, CaseEntry] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.task_class.name

    def severity_of(self, code: str) -> Severity | None:
        if code in HARNESS_FAILURE_MODES:
            return "block"
        entry = self.failure_modes.get(code)
        return entry[0] if entry else None


def load_registration(
    directory: Path, *, import_timeout_s: float = DEFAULT_IMPORT_TIMEOUT_S
) -> TaskClass:
    """The single task class ``registration.py`` registers (imported in a child process,
    once per content: see :mod:`.bench_import`)."""
    path = directory / REGISTRATION
    if not path.is_file():
        raise TaskClassInvalid(path, "missing: every task class needs a registration.py")
    modules = import_modules(directory, timeout_s=import_timeout_s)
    if modules.registration_error is not None or modules.registered is None:
        raise TaskClassLoadError(path, modules.registration_error or "cannot be imported")
    registered = modules.registered
    if len(registered) != 1:
        raise TaskClassInvalid(
            path, f"must register exactly one task class, registered {len(registered)}"
        )
    task_class = registered[0]
    if task_class.name != directory.name:
        raise TaskClassInvalid(
            path,
            f"registers {task_class.name!r} but lives in directory {directory.name!r}; "
            "the name and the directory must match",
        )
    return task_class


def load_breakdown_keys(
    directory: Path, *, import_timeout_s: float = DEFAULT_IMPORT_TIMEOUT_S
) -> frozenset[str]:
    """The values of ``BreakdownKey`` in ``breakdown_keys.py``."""
    path = directory / BREAKDOWN_KEYS
    if not path.is_file():
        raise TaskClassInvalid(path, "missing: every task class needs breakdown_keys.py")
    modules = import_modules(directory, timeout_s=import_timeout_s)
    if modules.breakdown_error is not None or modules.breakdown_keys is None:
        error = modules.breakdown_error or "cannot be imported"
        cls = TaskClassLoadError if error.startswith(("import", "importing")) else TaskClassInvalid
        raise cls(path, error)
    members = modules.breakdown_keys
    if not members:
        raise TaskClassInvalid(path, "BreakdownKey has no members")
    for name, value in members:
        banned = banned_in(name) or banned_in(value)
        if banned:
            raise TaskClassInvalid(
                path,
                f"BreakdownKey.{name} contains banned substring {banned!r}: breakdown "
                "keys must be observable properties, not self-reports",
            )
    return frozenset(value for _name, value in members)


def load_failure_modes(directory: Path) -> dict[str, tuple[Severity, str]]:
    """Parse and validate ``failure_modes.yaml`` into code → (severity, description)."""
    path = directory / FAILURE_MODES
    if not path.is_file():
        raise TaskClassInvalid(path, "missing: every task class needs failure_modes.yaml")
    data, problem = read_contract_yaml(path)
    if problem is not None:
        raise TaskClassInvalid(path, problem)
    parsed, problems = failure_modes_problems(data)
    if parsed is None:
        raise TaskClassInvalid(path, problems[0].bracketed())
    return {code: (spec.severity, spec.description) for code, spec in parsed.failure_modes.items()}


_NOT_TASK_DEFINITION = frozenset({CASES, "tests", "__pycache__"})


def rubric_digest(directory: Path) -> str:
    """Digest of the task class definition: every file of its directory except the cases
    (digested one by one), the author's tests and READMEs.

    That covers the rubric, the helper modules it may import, the breakdown keys, the
    taxonomy and task.md (what the agent is told), so editing any of them misses the
    cache; over-invalidating on a baseline edit is the safe direction.
    """
    return hash_tree(definition_files(directory), domain=b"pytest-codegenie-eval task class v1\0")


def definition_files(directory: Path) -> list[tuple[str, Path]]:
    """The files :func:`rubric_digest` covers, as (relative POSIX name, path)."""
    files = []
    # pruned while walking: re-digested after every SUT run, it must not visit the cases
    for dirpath, dirnames, filenames in os.walk(directory):
        current = Path(dirpath)
        top = current == directory
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".")
            and d != "__pycache__"
            and not (top and d in _NOT_TASK_DEFINITION)
        )
        for name in filenames:
            path = current / name
            if name.startswith(".") or path.suffix in (".pyc", ".pyo") or not path.is_file():
                continue
            if top and name.lower().startswith("readme"):
                continue
            files.append((path.relative_to(directory).as_posix(), path))
    return files


def parse_case_toml(path: Path) -> BenchCase:
    """Read and validate one case.toml; every problem is a BenchCaseLoadError naming it."""
    if not path.exists():
        raise BenchCaseLoadError(path, "missing: every case directory needs a case.toml")
    data = read_case_toml(path)
    try:
        return BenchCase.model_validate(data)
    except ValidationError as exc:
        fld, message = describe_case_errors(exc)
        raise BenchCaseLoadError(path, message, field=fld) from exc


Pins = tuple[dict[str, str], DigestsFileInvalid | None]


def read_pins(cases_dir: Path) -> Pins:
    """The pins of ``cases_dir/digests.yaml``, or none and why that file is refused."""
    try:
        return read_digests(cases_dir), None
    except DigestsFileInvalid as exc:
        return {}, exc


def load_cases(
    cases_dir: Path, pins_read: Pins | None = None
) -> tuple[tuple[CaseEntry, ...], tuple[str, ...]]:
    """Load every case directory; returns the entries and pins naming no directory. The
    pins are read from ``cases_dir`` unless ``pins_read`` holds them already."""
    pins, pins_error = pins_read if pins_read is not None else read_pins(cases_dir)
    entries: list[CaseEntry] = []
    seen: dict[str, Path] = {}
    children = sorted(p for p in cases_dir.iterdir() if p.is_dir() and p.name not in NOT_CASE_DIRS)
    for child in children:
        case: BenchCase | None = None
        try:
            case = parse_case_toml(child / CASE_TOML)
            digest = case_digest(child)
            check_input_links(child / "input")
            if pins_error is not None:
                raise pins_error
            if pin_mismatch(pins, child.name, digest) is not None:
                raise BenchCaseDigestMismatch(child, pins.get(child.name), digest)
            if case.case_id in seen:
                raise BenchCaseIDCollision(case.case_id, seen[case.case_id], child)
        except CodegenieEvalError as exc:
            # a colliding entry is named by its directory, so both stay distinguishable
            keep = None if isinstance(exc, BenchCaseIDCollision) else case
            entries.append(CaseEntry(child, child.name, keep, "", exc))
            continue
        seen[case.case_id] = child
        entries.append(CaseEntry(child, child.name, case, digest))
    orphans = tuple(m.name for m in orphan_pins(pins, (child.name for child in children)))
    return tuple(entries), orphans


def load_task_class(
    directory: Path, *, import_timeout_s: float = DEFAULT_IMPORT_TIMEOUT_S
) -> LoadedTaskClass:
    """Load a task class directory (raises TaskClassInvalid when the contract is broken)."""
    directory = directory.resolve()
    task_class = load_registration(directory, import_timeout_s=import_timeout_s)
    keys = load_breakdown_keys(directory, import_timeout_s=import_timeout_s)
    modes = load_failure_modes(directory)
    rubric = directory / RUBRIC
    if not rubric.is_file():
        raise TaskClassInvalid(rubric, "missing: every task class needs rubric.py")
    cases_dir = directory / CASES
    if not cases_dir.is_dir():
        raise TaskClassInvalid(cases_dir, "missing: every task class needs a cases/ directory")
    task_md_path = directory / TASK_MD
    task_md = ""
    if task_md_path.exists():
        task_md, problem = read_bench_text(task_md_path)
        if problem is not None:
            raise TaskClassInvalid(task_md_path, problem)
    cases, orphans = load_cases(cases_dir)
    return LoadedTaskClass(
        task_class=task_class,
        directory=directory,
        breakdown_keys=keys,
        failure_modes=MappingProxyType(modes),
        rubric_path=rubric,
        rubric_digest=rubric_digest(directory),
        task_md=task_md,
        cases=cases,
        orphan_pins=orphans,
        by_dir=MappingProxyType({entry.name: entry for entry in cases}),
    )


def available_task_classes(bench_root: Path) -> list[str]:
    """Names of the directories under the bench root that hold a registration.py."""
    if not bench_root.is_dir():
        return []
    return sorted(p.name for p in bench_root.iterdir() if is_task_class_dir(p))


def resolve_task_class_dir(bench_root: Path, name: str) -> Path:
    """The directory of a task class, or the typed error saying what exists instead."""
    if not bench_root.is_dir():
        raise BenchRootMissing(bench_root)
    candidate = bench_root / name
    if not is_task_class_dir(candidate):
        raise TaskClassNotFound(name, bench_root, available_task_classes(bench_root))
    return candidate


__all__ = [
    "HARNESS_FAILURE_MODES",
    "CaseEntry",
    "LoadedTaskClass",
    "available_task_classes",
    "load_cases",
    "load_registration",
    "load_task_class",
    "parse_case_toml",
    "resolve_task_class_dir",
    "rubric_digest",
    "task_class_dir_of_case",
]
