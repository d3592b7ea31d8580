"""Rubric of the ``vuln-remediation`` task class (run as ``python -I rubric.py``).

Protocol (docs/bench-authoring.md): one JSON request on stdin, one BenchScore JSON on stdout.
The rubric is deterministic, offline and self-contained (its only local import is
``breakdown_keys.py``) so that the rubric digest covers everything that decides a score.

What it trusts: the advisory, the original project and the reference fix are read from the
*case directory* (``input/advisory.json``, ``input/``, ``expected/``), never from the
workspace, which the agent could have edited. Only the SUT's result is read from the
workspace.

Version semantics are the ecosystem's own: PEP 440 (``packaging.version``) with PEP 503 name
normalisation for PyPI, node-semver (``nodesemver``) for npm. OSV ranges of type ECOSYSTEM or
SEMVER are evaluated as the OSV spec describes: ``introduced`` inclusive (``"0"`` = from the
first version), ``fixed`` exclusive, ``last_affected`` inclusive, plus explicit ``versions``.
Manifests are read with their tools' grammar: ``requirements.txt`` as pip reads it (mirrored
from pip's ``req_file.py``: continuations are joined *before* comments are stripped),
``pyproject.toml`` dependencies as PEP 508 strings.

Score (integer weights, so a perfect result is exactly 1.0)::

    score = (40*VULN_RESOLVED + 20*MINIMAL_UPGRADE + 15*NO_COLLATERAL_CHANGES
             + 10*MANIFEST_VALID + 15*LOCKFILE_CONSISTENT) / 100

forced to 0.0 when ``vuln.still_present``, ``vuln.package_removed``,
``vuln.version_not_published`` or ``manifest.unparseable`` is reported. Every breakdown value
is 0.0 or 1.0 except MINIMAL_UPGRADE, which is 0.5 for an unaffected but not minimal version
on the fix's own major line (``upgrade.not_minimal``) and 0.0 for a major bump the advisory
did not force or for a downgrade (``upgrade.downgrade``). Calendar versions (certifi
2023.7.22) have no major lines.

Besides the project, the rubric reads ``expected/published_versions.json`` of the case (every
published version of the vulnerable package, fetched from the registry when the case was
written): a version that is not in it cannot be installed, whatever the version ordering says
(node-semver ignores build metadata, so ``6.3.1+evil`` compares equal to ``6.3.1``).
"""

from __future__ import annotations

import importlib.util
import json
import optparse
import os
import re
import shlex
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cmp_to_key
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import nodesemver
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pytest_codegenie_eval.rubric import CaseInfo, HarnessOutput, serve

HERE = Path(__file__).resolve().parent

if TYPE_CHECKING:
    from breakdown_keys import BreakdownKey
else:

    def _load_breakdown_keys() -> type:
        # ``python -I`` leaves this directory off sys.path, and two benches both ship a
        # ``breakdown_keys`` module: load ours by path under a name no other bench uses.
        spec = importlib.util.spec_from_file_location(
            "_codegenie_vuln_remediation_breakdown_keys", HERE / "breakdown_keys.py"
        )
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {HERE / 'breakdown_keys.py'}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.BreakdownKey

    BreakdownKey = _load_breakdown_keys()

__all__ = ["WEIGHTS", "ZEROING_MODES", "score"]

#: Integer weights (sum 100) of the weighted mean; see the module docstring.
WEIGHTS: dict[str, int] = {
    BreakdownKey.VULN_RESOLVED: 40,
    BreakdownKey.MINIMAL_UPGRADE: 20,
    BreakdownKey.NO_COLLATERAL_CHANGES: 15,
    BreakdownKey.MANIFEST_VALID: 10,
    BreakdownKey.LOCKFILE_CONSISTENT: 15,
}
#: Block modes that force the score to 0.0 (the project is still vulnerable or unusable).
ZEROING_MODES = frozenset(
    {
        "vuln.still_present",
        "vuln.package_removed",
        "vuln.version_not_published",
        "manifest.unparseable",
    }
)

NPM_MANIFESTS = ("package.json", "package-lock.json")
PYPI_MANIFESTS = ("requirements.txt", "pyproject.toml")
KNOWN_MANIFESTS = frozenset(NPM_MANIFESTS + PYPI_MANIFESTS)
# Harness bookkeeping and installer/interpreter artifacts are not part of the project.
IGNORED_DIRS = frozenset({".codegenie", "node_modules", "__pycache__", ".venv", ".git"})
DEP_SECTIONS = ("dependencies", "devDependencies", "optionalDependencies", "peerDependencies")
NPM_REGISTRY = "https://registry.npmjs.org/"
_SRI = re.compile(r"^sha(1|256|384|512)-[A-Za-z0-9+/]+={0,2}$")
PUBLISHED_VERSIONS = "published_versions.json"
#: A first release component from this year on reads as a calendar version (2023.7.22).
CALVER_MIN_YEAR = 1990
#: Fields of a lock entry that npm copies from the package's own manifest at that version.
DECLARED_FIELDS = (
    "dependencies",
    "optionalDependencies",
    "peerDependencies",
    "peerDependenciesMeta",
    "bin",
)


class ManifestError(ValueError):
    """A manifest or lockfile cannot be parsed."""


# --------------------------------------------------------------------------- versions


@dataclass(frozen=True)
class Scheme:
    """One ecosystem's version ordering."""

    name: str
    validate: Callable[[str], None]
    compare: Callable[[str, str], int]
    release: Callable[[str], tuple[int, ...]]

    def is_valid(self, version: str) -> bool:
        try:
            self.validate(version)
        except ValueError:
            return False
        return True

    def line(self, version: str) -> tuple[int, ...]:
        """The breaking release line: components up to the first non-zero one (6.x, 0.2.x).

        Calendar versions (a year-like first component: certifi 2023.7.22, 20240202) carry
        no compatibility promise between releases, so they all share one line: moving to a
        later year is not a major bump.
        """
        parts = self.release(version)
        if parts and parts[0] >= CALVER_MIN_YEAR:
            return ()
        for index, part in enumerate(parts):
            if part != 0:
                return parts[: index + 1]
        return parts


def _pep440_validate(version: str) -> None:
    Version(version)


def _pep440_compare(a: str, b: str) -> int:
    va, vb = Version(a), Version(b)
    return (va > vb) - (va < vb)


def _pep440_release(version: str) -> tuple[int, ...]:
    return tuple(Version(version).release)


def _semver_validate(version: str) -> None:
    nodesemver.make_semver(version, False)


def _semver_compare(a: str, b: str) -> int:
    return int(nodesemver.compare(a, b, False))


def _semver_release(version: str) -> tuple[int, ...]:
    parsed = nodesemver.make_semver(version, False)
    return (int(parsed.major), int(parsed.minor), int(parsed.patch))


PYPI = Scheme("PyPI", _pep440_validate, _pep440_compare, _pep440_release)
NPM = Scheme("npm", _semver_validate, _semver_compare, _semver_release)


def normalize_name(ecosystem: str, name: str) -> str:
    """PEP 503 normalisation for PyPI; npm names are compared as published."""
    return canonicalize_name(name) if ecosystem == "PyPI" else name


@dataclass(frozen=True)
class Affected:
    """The affected ranges of one package in an OSV record."""

    ranges: tuple[tuple[Mapping[str, str], ...], ...]
    versions: tuple[str, ...]


def affected_packages(advisory: Mapping[str, Any], ecosystem: str) -> dict[str, list[Affected]]:
    """Normalised package name -> its affected entries, for one ecosystem of the record."""
    found: dict[str, list[Affected]] = {}
    for entry in advisory.get("affected", []):
        package = entry.get("package", {})
        if package.get("ecosystem") != ecosystem:
            continue
        ranges = tuple(
            tuple(rng.get("events", []))
            for rng in entry.get("ranges", [])
            if rng.get("type") in ("ECOSYSTEM", "SEMVER")
        )
        versions = tuple(str(v) for v in entry.get("versions", []))
        name = normalize_name(ecosystem, str(package["name"]))
        found.setdefault(name, []).append(Affected(ranges, versions))
    return found


def _event_version(event: Mapping[str, str]) -> str:
    for kind in ("introduced", "fixed", "last_affected", "limit"):
        if kind in event:
            return str(event[kind])
    raise ValueError(f"OSV event without a version: {event!r}")


def _sorted_events(events: Iterable[Mapping[str, str]], scheme: Scheme) -> list[Mapping[str, str]]:
    def cmp(a: Mapping[str, str], b: Mapping[str, str]) -> int:
        va, vb = _event_version(a), _event_version(b)
        if va == vb:
            return 0
        if va == "0":
            return -1
        if vb == "0":
            return 1
        return scheme.compare(va, vb)

    return sorted(events, key=cmp_to_key(cmp))


def range_affects(events: Iterable[Mapping[str, str]], version: str, scheme: Scheme) -> bool:
    """OSV range evaluation over events sorted by version."""
    affected = False
    for event in _sorted_events(events, scheme):
        if "introduced" in event:
            start = str(event["introduced"])
            if start == "0" or scheme.compare(version, start) >= 0:
                affected = True
        elif "fixed" in event:
            if scheme.compare(version, str(event["fixed"])) >= 0:
                affected = False
        elif "last_affected" in event and scheme.compare(version, event["last_affected"]) > 0:
            affected = False
    return affected


def is_affected(version: str, entries: Iterable[Affected], scheme: Scheme) -> bool:
    """Whether ``version`` lies in any affected range or explicit version list."""
    for entry in entries:
        if any(scheme.compare(version, listed) == 0 for listed in entry.versions):
            return True
        if any(range_affects(events, version, scheme) for events in entry.ranges):
            return True
    return False


def minimal_fix(version: str, entries: list[Affected], scheme: Scheme) -> str | None:
    """The lowest unaffected version the advisory names for ``version``'s range.

    That is the ``fixed`` of the range containing ``version`` (semver 6.2.0 -> 6.3.1), or,
    when that fix is itself affected by another range, the fix of that range in turn
    (a forced jump). ``version`` itself when it is not affected; None when no fix is known.
    """
    current = version
    for _ in range(32):
        if not is_affected(current, entries, scheme):
            return current
        candidates = [
            str(event["fixed"])
            for entry in entries
            for events in entry.ranges
            if range_affects(events, current, scheme)
            for event in events
            if "fixed" in event and scheme.compare(str(event["fixed"]), current) > 0
        ]
        if not candidates:
            return None
        current = min(candidates, key=cmp_to_key(scheme.compare))
    return None


@dataclass(frozen=True)
class Published:
    """Every published version of the case's vulnerable package (expected/)."""

    ecosystem: str
    name: str
    versions: frozenset[str]

    def has(self, version: str) -> bool:
        """Whether ``version`` was published: exact text for npm, PEP 440 equality for PyPI.

        npm resolves a lock entry by its exact version string, and node-semver ignores build
        metadata (``6.3.1+evil`` == ``6.3.1``), so only the text is safe. PEP 440 ``==``
        matches ``1.26.18.0`` to ``1.26.18`` but never a local version (``2.31.0+evil``).
        """
        if version in self.versions:
            return True
        if self.ecosystem != "PyPI":
            return False
        try:
            wanted = Version(version)
        except InvalidVersion:
            return False
        return any(_pep440_equal(wanted, listed) for listed in self.versions)


def _pep440_equal(wanted: Version, listed: str) -> bool:
    try:
        return Version(listed) == wanted
    except InvalidVersion:
        return False


def load_published(expected_dir: Path, ecosystem: str, names: Iterable[str]) -> Published:
    """Read ``expected/published_versions.json`` (a broken or missing file is a case error)."""
    path = expected_dir / PUBLISHED_VERSIONS
    if not path.is_file():
        raise ValueError(
            f"{path} is missing: every case lists its package's published versions "
            "(scripts/scaffold_bench_case.py --refresh-versions writes it)"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or set(data) != {"ecosystem", "name", "versions"}:
        raise ValueError(f"{path}: expected an object with ecosystem, name and versions")
    versions = data["versions"]
    if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
        raise ValueError(f"{path}: versions must be a list of strings")
    if data["ecosystem"] != ecosystem:
        raise ValueError(f"{path}: ecosystem {data['ecosystem']!r}, the case is {ecosystem}")
    name = normalize_name(ecosystem, str(data["name"]))
    if name not in set(names):
        raise ValueError(f"{path}: {data['name']!r} is not a package the advisory names")
    return Published(ecosystem, name, frozenset(versions))


# --------------------------------------------------------------------------- findings


@dataclass
class Findings:
    """Failure modes collected while scoring, one entry per code."""

    details: dict[str, list[str]] = field(default_factory=dict)

    def add(self, code: str, detail: str) -> None:
        bucket = self.details.setdefault(code, [])
        if detail not in bucket:
            bucket.append(detail)

    def has(self, code: str) -> bool:
        return code in self.details

    def as_list(self) -> list[dict[str, str]]:
        return [
            {"code": code, "detail": "; ".join(self.details[code])} for code in sorted(self.details)
        ]


#: location -> (normalised package name, resolved version or None when undeterminable)
Copies = dict[str, tuple[str, str | None]]


# --------------------------------------------------------------------------- npm


@dataclass
class NpmProject:
    """A parsed package.json with its package-lock.json (v2/v3 ``packages`` map)."""

    manifest: dict[str, Any]
    lock: dict[str, Any]

    @property
    def packages(self) -> dict[str, dict[str, Any]]:
        packages: dict[str, dict[str, Any]] = self.lock["packages"]
        return packages


def _load_json_object(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ManifestError(f"{path.name} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path.name} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path.name} must hold a JSON object")
    return data


def _is_str_map(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def lock_package_name(path: str, entry: Mapping[str, Any]) -> str:
    """The real package name of a lock entry (``name`` of an alias, else from its path)."""
    name = entry.get("name")
    if isinstance(name, str) and name and "node_modules/" in path:
        return name
    return path.rpartition("node_modules/")[2]


def _installed(path: str, entry: Mapping[str, Any]) -> bool:
    return "node_modules/" in path and not entry.get("link", False)


def load_npm(root: Path) -> NpmProject:
    """Parse and validate an npm project (raises ManifestError)."""
    manifest = _load_json_object(root / "package.json")
    for section in (*DEP_SECTIONS, "overrides"):
        if section in manifest and not isinstance(manifest[section], dict):
            raise ManifestError(f"package.json: {section} must be an object")
    for section in DEP_SECTIONS:
        if section in manifest and not _is_str_map(manifest[section]):
            raise ManifestError(f"package.json: {section} must map names to strings")
    lock = _load_json_object(root / "package-lock.json")
    if lock.get("lockfileVersion") not in (2, 3):
        raise ManifestError("package-lock.json: lockfileVersion must be 2 or 3")
    packages = lock.get("packages")
    if not isinstance(packages, dict) or not all(isinstance(e, dict) for e in packages.values()):
        raise ManifestError("package-lock.json: packages must map paths to objects")
    for path, entry in packages.items():
        if not _installed(path, entry):
            continue
        version = entry.get("version")
        if not isinstance(version, str) or not NPM.is_valid(version):
            raise ManifestError(f"package-lock.json: {path} has no valid semver version")
        for section in ("dependencies", "optionalDependencies", "peerDependencies"):
            if section in entry and not _is_str_map(entry[section]):
                raise ManifestError(f"package-lock.json: {path}.{section} must map to strings")
    return NpmProject(manifest, lock)


def npm_copies(project: NpmProject, names: Iterable[str]) -> Copies:
    """Every installed copy of the named packages, keyed by lock path."""
    wanted = set(names)
    copies: Copies = {}
    for path, entry in project.packages.items():
        if _installed(path, entry):
            name = lock_package_name(path, entry)
            if name in wanted:
                copies[path] = (name, str(entry["version"]))
    return copies


def resolve_node_path(packages: Mapping[str, Any], from_path: str, dep: str) -> str | None:
    """Node's lookup: ``from/node_modules/dep``, then each ancestor's ``node_modules``."""
    base = from_path
    while True:
        candidate = f"{base}/node_modules/{dep}" if base else f"node_modules/{dep}"
        if candidate in packages:
            return candidate
        if not base:
            return None
        head, sep, _tail = base.rpartition("/node_modules/")
        if sep:
            base = head
        elif base.startswith("node_modules/"):
            base = ""
        else:
            # a workspace folder: fall back to the root node_modules
            base = ""


def _edges(path: str, entry: Mapping[str, Any]) -> Iterator[tuple[str, str, bool]]:
    sections = ["dependencies", "optionalDependencies"]
    if path == "":
        sections.append("devDependencies")
    for section in sections:
        for dep, spec in (entry.get(section) or {}).items():
            yield dep, spec, section == "optionalDependencies"


def _override_name(key: str) -> str:
    at = key.find("@", 1)
    return key if at == -1 else key[:at]


def flat_overrides(manifest: Mapping[str, Any]) -> tuple[dict[str, str], set[str]]:
    """Top-level ``overrides`` as name -> spec, plus names overridden only under a parent."""
    flat: dict[str, str] = {}
    nested: set[str] = set()
    direct: dict[str, str] = {}
    for section in DEP_SECTIONS:
        direct.update(manifest.get(section) or {})

    def value_of(spec: str) -> str:
        return direct.get(spec[1:], spec) if spec.startswith("$") else spec

    def walk_nested(tree: Mapping[str, Any]) -> None:
        for key, value in tree.items():
            if key == ".":
                continue
            nested.add(_override_name(key))
            if isinstance(value, dict):
                walk_nested(value)

    for key, value in (manifest.get("overrides") or {}).items():
        name = _override_name(key)
        if isinstance(value, str):
            flat[name] = value_of(value)
        elif isinstance(value, dict):
            if isinstance(value.get("."), str):
                flat[name] = value_of(value["."])
            walk_nested(value)
    return flat, nested


def _satisfies(version: str, spec: str) -> bool | None:
    """node-semver ``satisfies``; None when ``spec`` is not a semver range (tag, URL, alias)."""
    if nodesemver.valid_range(spec, False) is None:
        return None
    return bool(nodesemver.satisfies(version, spec, loose=False))


def tarball_url(name: str, version: str) -> str:
    """The npm registry tarball URL of ``name@version``."""
    return f"{NPM_REGISTRY}{tarball_path(name, version)}"


def npm_closure(packages: Mapping[str, Any], starts: Iterable[str]) -> set[str]:
    """Lock paths reachable through dependency edges from ``starts`` (excluded)."""
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        path = todo.pop()
        entry = packages.get(path, {})
        for dep, _spec, _optional in _edges(path, entry):
            target = resolve_node_path(packages, path, dep)
            if target is not None and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen - set(starts)


def npm_lock_problems(
    before: NpmProject, after: NpmProject, reference: NpmProject | None
) -> list[str]:
    """Everything that makes the workspace lockfile disagree with its manifest or itself."""
    problems: list[str] = []
    packages = after.packages
    root = packages.get("")
    if not isinstance(root, dict):
        return ["package-lock.json has no root entry (packages[''])"]
    for section in DEP_SECTIONS:
        if (after.manifest.get(section) or {}) != (root.get(section) or {}):
            problems.append(f"lock root {section} does not mirror package.json {section}")
    overrides, nested = flat_overrides(after.manifest)
    for path in sorted(packages):
        entry = packages[path]
        if path != "" and not _installed(path, entry):
            continue
        for dep, spec, optional in _edges(path, entry):
            target = resolve_node_path(packages, path, dep)
            if target is None:
                if not optional:
                    problems.append(f"{path or 'root'} needs {dep}@{spec} but none is locked")
                continue
            if dep in nested and dep not in overrides:
                continue
            wanted = overrides.get(dep, spec)
            version = str(packages[target]["version"])
            ok = _satisfies(version, wanted)
            if ok is False:
                problems.append(
                    f"{target}@{version} does not satisfy {wanted!r} ({path or 'root'})"
                )
    problems.extend(npm_entry_problems(before, after, reference))
    return problems


def tarball_path(name: str, version: str) -> str:
    """``<name>/-/<basename>-<version>.tgz``, the registry's path of a tarball."""
    return f"{name}/-/{name.rpartition('/')[2]}-{version}.tgz"


def lock_registries(project: NpmProject) -> set[str]:
    """Registry prefixes the lock already resolves tarballs from (npm's, plus a mirror)."""
    registries = {NPM_REGISTRY}
    for path, entry in project.packages.items():
        resolved = entry.get("resolved")
        if not _installed(path, entry) or not isinstance(resolved, str):
            continue
        suffix = tarball_path(lock_package_name(path, entry), str(entry.get("version")))
        prefix = resolved[: -len(suffix)]
        if resolved.endswith(suffix) and prefix.startswith("https://") and prefix.endswith("/"):
            registries.add(prefix)
    return registries


def npm_entry_problems(
    before: NpmProject, after: NpmProject, reference: NpmProject | None
) -> list[str]:
    """Every lock entry that is new or changed must be what npm writes for its name@version.

    * ``resolved``, when present, is that version's tarball on a registry the input lock
      already uses (npm's by default): not another host, a lookalike, plain http, a git or
      file URL. Without ``resolved`` npm fetches name@version from the registry.
    * ``integrity``, when present, is a valid SRI string, equal to the hash the reference or
      the input records for that name@version and never another version's (stale). A missing
      one is tolerated (README, "The integrity decision"): with ``resolved`` pinned to the
      registry tarball, npm fetches the right file.
    * ``dependencies`` (and the other fields npm copies from the package's manifest) are
      the ones that version declares, where the reference or the input knows them: a moved
      entry that keeps the old version's map hides what the new version needs.
    """
    problems: list[str] = []
    registries = lock_registries(before)
    known_hash: dict[tuple[str, str], str] = {}
    hashes_of: dict[str, set[str]] = {}
    declared: dict[tuple[str, str], dict[str, Any]] = {}
    for project in (before, reference):
        if project is None:
            continue
        for path, entry in project.packages.items():
            if not _installed(path, entry):
                continue
            key = (lock_package_name(path, entry), str(entry["version"]))
            declared.setdefault(key, {f: entry[f] for f in DECLARED_FIELDS if f in entry})
            if isinstance(entry.get("integrity"), str):
                known_hash.setdefault(key, entry["integrity"])
                hashes_of.setdefault(key[0], set()).add(entry["integrity"])
    for path, entry in sorted(after.packages.items()):
        if not _installed(path, entry) or before.packages.get(path) == entry:
            continue
        name, version = lock_package_name(path, entry), str(entry["version"])
        resolved = entry.get("resolved")
        if resolved is not None:
            allowed = {f"{registry}{tarball_path(name, version)}" for registry in registries}
            if resolved not in allowed:
                problems.append(
                    f"{path}: resolved {resolved!r} is not the registry tarball of "
                    f"{name}@{version} ({sorted(allowed)[0]})"
                )
        want = declared.get((name, version))
        if want is not None:
            got = {f: entry[f] for f in DECLARED_FIELDS if f in entry}
            for field_name in DECLARED_FIELDS:
                if got.get(field_name) != want.get(field_name):
                    problems.append(
                        f"{path}: {field_name} {json.dumps(got.get(field_name))} are not the "
                        f"ones {name}@{version} declares ({json.dumps(want.get(field_name))})"
                    )
        integrity = entry.get("integrity")
        if integrity is None:
            continue
        if not isinstance(integrity, str) or not all(
            _SRI.match(part) for part in integrity.split()
        ):
            problems.append(f"{path}: integrity is not a valid SRI string")
            continue
        expected = known_hash.get((name, version))
        if expected is not None:
            if integrity != expected:
                problems.append(f"{path}: integrity does not match the {name}@{version} tarball")
        elif integrity in hashes_of.get(name, set()):
            problems.append(f"{path}: integrity belongs to another {name} version (stale)")
    return problems


def _override_specs(manifest: Mapping[str, Any], name: str) -> list[str]:
    """Every ``overrides`` value that applies to ``name`` (flat, ``name@range``, nested)."""
    direct: dict[str, str] = {}
    for section in DEP_SECTIONS:
        direct.update(manifest.get(section) or {})
    specs: list[str] = []

    def value_of(spec: str) -> str:
        return direct.get(spec[1:], spec) if spec.startswith("$") else spec

    def walk(tree: Mapping[str, Any]) -> None:
        for key, value in tree.items():
            if key == ".":
                continue
            if _override_name(key) == name:
                if isinstance(value, str):
                    specs.append(value_of(value))
                elif isinstance(value, dict) and isinstance(value.get("."), str):
                    specs.append(value_of(value["."]))
            if isinstance(value, dict):
                walk(value)

    walk(manifest.get("overrides") or {})
    return specs


def npm_range_problems(
    before: NpmProject,
    after: NpmProject,
    vulnerable: set[str],
    entries: Mapping[str, list[Affected]],
) -> tuple[list[str], list[str]]:
    """(stale ranges, missing overrides) of the vulnerable packages whose lock copies moved.

    What npm writes with the fix, and task.md asks for: a direct dependency's range is
    rewritten so that it no longer admits the vulnerable version it replaced (``^4.17.20`` ->
    ``^4.17.21``), and a transitive one gets an ``overrides`` entry that pins the fix, even
    when its dependents' ranges already admit it (a lockfile-only bump is not the fix).
    """
    stale: list[str] = []
    missing: list[str] = []
    old = npm_copies(before, vulnerable)
    new = npm_copies(after, vulnerable)
    direct_before = {n for s in DEP_SECTIONS for n in (before.manifest.get(s) or {})}
    for name in sorted(vulnerable):
        replaced = sorted(
            {
                str(v)
                for n, v in old.values()
                if n == name and v is not None and is_affected(v, entries[name], NPM)
            }
        )
        moved = {loc: v for loc, (n, v) in new.items() if n == name} != {
            loc: v for loc, (n, v) in old.items() if n == name
        }
        if not replaced or not moved:
            continue
        ranges = [
            (f"package.json {section}.{name}", str((after.manifest.get(section) or {})[name]))
            for section in DEP_SECTIONS
            if name in (after.manifest.get(section) or {})
        ]
        if name not in direct_before:
            overrides = _override_specs(after.manifest, name)
            if not overrides:
                missing.append(
                    f"{name} is a transitive dependency moved in package-lock.json only; "
                    f"pin the fix with an overrides entry in package.json"
                )
            ranges += [(f"package.json overrides.{name}", spec) for spec in overrides]
        for where, spec in ranges:
            admits = [v for v in replaced if _satisfies(v, spec)]
            if admits:
                stale.append(f"{where} = {spec!r} still admits the replaced {name}@{admits[0]}")
    return stale, missing


def _without(mapping: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    drop = set(keys)
    return {k: v for k, v in mapping.items() if k not in drop}


def npm_collateral(before: NpmProject, after: NpmProject, vulnerable: set[str]) -> list[str]:
    """Changes to anything but the vulnerable package in package.json and the lock."""
    changes: list[str] = []
    mb, ma = before.manifest, after.manifest
    if _without(mb, (*DEP_SECTIONS, "overrides")) != _without(ma, (*DEP_SECTIONS, "overrides")):
        changes.append("package.json fields other than dependencies/overrides changed")
    for section in DEP_SECTIONS:
        sb, sa = mb.get(section) or {}, ma.get(section) or {}
        for name in sorted(set(sb) | set(sa)):
            if name not in vulnerable and sb.get(name) != sa.get(name):
                changes.append(f"package.json {section}.{name}: {sb.get(name)} -> {sa.get(name)}")
    ob, oa = mb.get("overrides") or {}, ma.get("overrides") or {}
    for key in sorted(set(ob) | set(oa)):
        if _override_name(key) not in vulnerable and ob.get(key) != oa.get(key):
            changes.append(f"package.json overrides.{key} changed")
    if _without(before.lock, ["packages"]) != _without(after.lock, ["packages"]):
        changes.append("package-lock.json top-level fields changed")
    pb, pa = before.packages, after.packages
    if _without(pb.get("", {}), DEP_SECTIONS) != _without(pa.get("", {}), DEP_SECTIONS):
        changes.append("package-lock.json root entry changed")
    vuln_b = [
        p for p, e in pb.items() if _installed(p, e) and lock_package_name(p, e) in vulnerable
    ]
    vuln_a = [
        p for p, e in pa.items() if _installed(p, e) and lock_package_name(p, e) in vulnerable
    ]
    may_remove = npm_closure(pb, vuln_b)
    may_add = npm_closure(pa, vuln_a)
    for path in sorted((set(pb) | set(pa)) - {""}):
        eb, ea = pb.get(path), pa.get(path)
        entry = ea if ea is not None else eb
        assert entry is not None
        if lock_package_name(path, entry) in vulnerable:
            continue
        if eb is None:
            if path not in may_add:
                changes.append(f"lock entry {path} added")
        elif ea is None:
            if path not in may_remove:
                changes.append(f"lock entry {path} removed")
        elif eb != ea:
            changes.append(
                f"lock entry {path} changed ({eb.get('version')} -> {ea.get('version')})"
            )
    return changes


# --------------------------------------------------------------------------- PyPI


@dataclass(frozen=True)
class PyRequirement:
    """One requirement of requirements.txt or pyproject.toml."""

    source: str
    name: str
    req: Requirement
    hashes: tuple[str, ...] = ()

    @property
    def location(self) -> str:
        marker = f" ; {self.req.marker}" if self.req.marker else ""
        return f"{self.source}{marker}"

    def identity(self, with_version: bool) -> tuple[str, ...]:
        """Comparable form; without the version part for the vulnerable package."""
        parts: tuple[str, ...] = (
            self.source,
            self.name,
            ",".join(sorted(self.req.extras)),
            str(self.req.marker or ""),
            self.req.url or "",
        )
        if with_version:
            parts += (str(self.req.specifier), " ".join(self.hashes))
        return parts

    def pinned_version(self) -> str | None:
        """The exact version of an ``==``/``===`` pin; None for anything looser."""
        specs = list(self.req.specifier)
        if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
            return specs[0].version
        return None


@dataclass
class PyProject:
    """The PyPI manifests of a project."""

    requirements: list[PyRequirement]
    options: dict[str, list[str]]
    other: dict[str, Any]


# pip's requirements-file grammar, mirrored from pip/_internal/req/req_file.py (pip 26.3; the
# rubric runs ``python -I`` and must not import pip's internals, which are no API). pip reads a
# file in this order (``preprocess``): split lines, join ``\`` continuations (``join_lines``),
# *then* strip comments (``ignore_comments``), then expand ``${VAR}``. So ``idna==3.4 # \``
# swallows the next line into its comment. Each logical line is split at the first
# space-separated token starting with "-" (``break_args_options``): what comes before is the
# requirement, what follows is shlex-split and parsed with optparse against pip's option table.
# tests/test_requirements_pip_oracle.py checks all of this against pip's own parser.
PIP_COMMENT = re.compile(r"(^|\s+)#.*$")
PIP_ENV_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")
#: pip's requirements-file options (req_file.SUPPORTED_OPTIONS + SUPPORTED_OPTIONS_REQ):
#: option strings -> whether the option takes a value
PIP_FILE_OPTIONS: dict[tuple[str, ...], bool] = {
    ("-i", "--index-url", "--pypi-url"): True,
    ("--extra-index-url",): True,
    ("--no-index",): False,
    ("-c", "--constraint"): True,
    ("-r", "--requirement"): True,
    ("-e", "--editable"): True,
    ("-f", "--find-links"): True,
    ("--no-binary",): True,
    ("--only-binary",): True,
    ("--prefer-binary",): False,
    ("--require-hashes",): False,
    ("--no-require-hashes",): False,
    ("--pre",): False,
    ("--all-releases",): True,
    ("--only-final",): True,
    ("--trusted-host",): True,
    ("--use-feature",): True,
    ("--hash",): True,
    ("-C", "--config-settings"): True,
}
#: pip's STRONG_HASHES, the only algorithms ``--hash`` accepts
PIP_HASH_ALGORITHMS = ("sha256", "sha384", "sha512")
#: the choices of pip's ``--use-feature``
PIP_FEATURES = (
    "fast-deps",
    "inprocess-build-deps",
    "venv-isolation",
    "truststore",
    "no-binary-enable-wheel-cache",
    "build-constraint",
)


def requirements_lines(text: str) -> list[tuple[int, str]]:
    """pip's logical lines: (first physical line number, text), without ``${VAR}`` expansion.

    ``join_lines`` then ``ignore_comments``, step for step: a line ending in ``\\`` continues
    on the next one unless it is itself a comment line (``#`` first or after leading
    whitespace); a comment line ends a continuation; the backslashes are stripped from both
    ends of a continued line; comments go only after joining.
    """
    joined: list[tuple[int, str]] = []
    parts: list[str] = []
    first = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.endswith("\\") or PIP_COMMENT.match(line):
            if PIP_COMMENT.match(line):
                line = " " + line  # so that the comment is still one once joined
            if parts:
                joined.append((first, "".join(parts) + line))
                parts = []
            else:
                joined.append((number, line))
        else:
            if not parts:
                first = number
            parts.append(line.strip("\\"))
    if parts:
        joined.append((first, "".join(parts)))
    logical: list[tuple[int, str]] = []
    for number, line in joined:
        line = PIP_COMMENT.sub("", line).strip()
        if line:
            logical.append((number, line))
    return logical


def break_args_options(line: str) -> tuple[str, str]:
    """pip's split of a logical line into the requirement and its options."""
    tokens = line.split(" ")
    for index, token in enumerate(tokens):
        if token.startswith("-"):
            return " ".join(tokens[:index]), " ".join(tokens[index:])
    return line, ""


class _OptionError(Exception):
    pass


class _OptionParser(optparse.OptionParser):
    def error(self, msg: str) -> NoReturn:
        raise _OptionError(msg)


def _option_parser() -> optparse.OptionParser:
    parser = _OptionParser(add_help_option=False)
    for strings, takes_value in PIP_FILE_OPTIONS.items():
        dest = strings[-1].lstrip("-").replace("-", "_")
        if strings == ("--use-feature",):
            parser.add_option(*strings, dest=dest, action="append", choices=PIP_FEATURES)
        elif takes_value:
            parser.add_option(*strings, dest=dest, action="append")
        else:
            parser.add_option(*strings, dest=dest, action="store_true")
    return parser


def parse_pip_options(options: str) -> dict[str, list[str]]:
    """The options of one logical line as pip's parser reads them: dest -> values.

    Flags map to ``[]``. Raises ManifestError where pip refuses the line (unsplittable
    quoting, an unknown or ambiguous option, a missing value, a ``--hash`` that is not
    ``algorithm:digest`` of a strong algorithm, a ``--config-settings`` that is not
    ``KEY=VAL``, an unknown ``--use-feature``, a package list starting with "-").
    """
    try:
        tokens = shlex.split(options)
    except ValueError as exc:
        raise ManifestError(f"pip cannot split the options {options!r}: {exc}") from exc
    try:
        values, _positional = _option_parser().parse_args(tokens, optparse.Values())
    except _OptionError as exc:
        raise ManifestError(f"pip rejects the options {options!r}: {exc}") from exc
    parsed: dict[str, list[str]] = {}
    for dest, value in vars(values).items():
        if value is True:
            parsed[dest] = []
        elif isinstance(value, list):
            parsed[dest] = [str(v) for v in value]
    for value in parsed.get("hash", []):
        algorithm, sep, _digest = value.partition(":")
        if not sep or algorithm not in PIP_HASH_ALGORITHMS:
            raise ManifestError(f"pip rejects --hash={value} (want sha256/384/512:digest)")
    for value in parsed.get("config_settings", []):
        if "=" not in value:
            raise ManifestError(f"pip rejects --config-settings {value} (want KEY=VAL)")
    for dest in ("no_binary", "only_binary", "all_releases", "only_final"):
        for value in parsed.get(dest, []):
            if value.startswith("-"):
                raise ManifestError(f"pip rejects {value!r} as the value of --{dest}")
    return parsed


def parse_pep508(text: str, source: str) -> PyRequirement:
    """One PEP 508 requirement (a pyproject dependency, or the requirement of a pip line)."""
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise ManifestError(f"{source}: invalid requirement {text!r}: {exc}") from exc
    for spec in req.specifier:
        if not spec.version.strip():
            raise ManifestError(f"{source}: {text!r} has an operator without a version")
        if spec.operator == "==" and "*" not in spec.version:
            try:
                Version(spec.version)
            except InvalidVersion as exc:
                raise ManifestError(f"{source}: invalid version in {text!r}") from exc
    return PyRequirement(source, canonicalize_name(req.name), req)


def parse_requirements_txt(text: str, source: str) -> tuple[list[PyRequirement], list[str]]:
    """A requirements file as pip reads it: the requirements and the option lines.

    Stricter than pip where pip's reading depends on what the rubric cannot see or ignores
    silently: a requirement line naming an environment variable (``${VAR}``, expanded from
    the installer's environment) and a requirement line with options other than ``--hash``
    (pip ignores them, or reads the requirement as an editable with ``-e``) are
    ManifestErrors. Option lines (``-r``, ``-c``, ``-e``, ``--index-url``, ...) are kept as
    text, whitespace-normalised; their options must parse as pip's.
    """
    requirements: list[PyRequirement] = []
    options: list[str] = []
    for number, line in requirements_lines(text):
        where = f"{source} line {number}"
        args, option_text = break_args_options(line)
        try:
            parsed = parse_pip_options(option_text)
        except ManifestError as exc:
            raise ManifestError(f"{where}: {exc}") from exc
        if not args:
            options.append(" ".join(line.split()))
            continue
        variable = PIP_ENV_VAR.search(line)
        if variable is not None:
            raise ManifestError(
                f"{where}: pip expands ${{{variable.group(1)}}} from the installer's environment"
            )
        extra = sorted(set(parsed) - {"hash"})
        if extra:
            raise ManifestError(f"{where}: only --hash may follow a requirement (got {extra})")
        req = parse_pep508(args, where)
        hashes = tuple(sorted(parsed.get("hash", [])))
        requirements.append(PyRequirement(source, req.name, req.req, hashes))
    return requirements, options


def load_pypi(root: Path, files: Iterable[str]) -> PyProject:
    """Parse the PyPI manifests named in ``files`` (raises ManifestError)."""
    project = PyProject([], {}, {})
    for name in files:
        path = root / name
        if not path.is_file():
            raise ManifestError(f"{name} is missing")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestError(f"{name} is not UTF-8") from exc
        if name == "requirements.txt":
            reqs, options = parse_requirements_txt(text, name)
            project.requirements.extend(reqs)
            project.options[name] = options
            continue
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ManifestError(f"{name} is not valid TOML: {exc}") from exc
        proj = data.get("project", {})
        if not isinstance(proj, dict):
            raise ManifestError(f"{name}: [project] must be a table")
        groups: dict[str, Any] = {"dependencies": proj.get("dependencies", [])}
        optional = proj.get("optional-dependencies", {})
        if not isinstance(optional, dict):
            raise ManifestError(f"{name}: optional-dependencies must be a table")
        groups.update({f"optional-dependencies.{k}": v for k, v in optional.items()})
        for group, items in groups.items():
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ManifestError(f"{name}: {group} must be a list of strings")
            # PEP 621: each item is one PEP 508 string (no comments, continuations, options)
            project.requirements.extend(parse_pep508(i, f"{name}:{group}") for i in items)
        rest = dict(data)
        rest["project"] = _without(proj, ["dependencies", "optional-dependencies"])
        project.other[name] = rest
    return project


def pypi_copies(project: PyProject, names: Iterable[str]) -> Copies:
    """Pinned versions of the named packages, keyed by file (and marker)."""
    wanted = set(names)
    copies: Copies = {}
    for req in project.requirements:
        if req.name in wanted:
            location = req.location
            while location in copies:
                location += "+"
            copies[location] = (req.name, req.pinned_version())
    return copies


def pypi_collateral(before: PyProject, after: PyProject, vulnerable: set[str]) -> list[str]:
    """Changes to other requirements, pip options or other pyproject fields."""
    changes: list[str] = []

    def keyed(project: PyProject) -> Counter[tuple[str, ...]]:
        return Counter(
            r.identity(with_version=r.name not in vulnerable) for r in project.requirements
        )

    kb, ka = keyed(before), keyed(after)
    for key in sorted((kb - ka) + (ka - kb)):
        verb = "removed or changed" if kb[key] > ka[key] else "added or changed"
        changes.append(f"{key[0]}: requirement {key[1]} {verb}")
    if before.options != after.options:
        changes.append("pip option lines changed")
    if before.other != after.other:
        changes.append("pyproject.toml fields other than the dependency lists changed")
    return changes


def pypi_lock_problems(before: PyProject, after: PyProject, vulnerable: set[str]) -> list[str]:
    """Pinned files must stay a consistent lock: one pin per place, no stale hashes."""
    problems: list[str] = []
    seen: dict[tuple[str, str, str], str | None] = {}
    by_marker: dict[tuple[str, str], set[str | None]] = {}
    old = {(r.source, r.name, str(r.req.marker or "")): r for r in before.requirements}
    for req in after.requirements:
        if req.name not in vulnerable:
            continue
        marker = str(req.req.marker or "")
        key = (req.source, req.name, marker)
        if key in seen:
            problems.append(f"{req.source}: {req.name} is pinned more than once")
        seen[key] = req.pinned_version()
        by_marker.setdefault((req.name, marker), set()).add(req.pinned_version())
        previous = old.get(key)
        if previous is not None and previous.pinned_version() != req.pinned_version():
            if previous.hashes and not req.hashes:
                problems.append(f"{req.source}: new {req.name} pin lacks --hash (hash mode)")
            elif previous.hashes and req.hashes == previous.hashes:
                problems.append(f"{req.source}: {req.name} keeps the old version's hashes")
    for (name, _marker), versions in sorted(by_marker.items()):
        if len(versions) > 1:
            problems.append(f"{name} is pinned to different versions across files")
    return problems


# --------------------------------------------------------------------------- files


def project_files(root: Path) -> dict[str, Path]:
    """Relative POSIX path -> file, leaving out harness and installer folders."""
    files: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_DIRS)
        for name in filenames:
            path = Path(dirpath) / name
            files[path.relative_to(root).as_posix()] = path
    return files


def file_collateral(input_dir: Path, workspace: Path, manifests: set[str]) -> list[str]:
    """Files other than the manifests/lockfile that were added, removed or changed."""
    before, after = project_files(input_dir), project_files(workspace)
    changes: list[str] = []
    for rel in sorted(set(before) | set(after)):
        if rel in manifests:
            continue
        if rel not in after:
            changes.append(f"file {rel} removed")
        elif rel not in before:
            changes.append(f"file {rel} added")
        elif before[rel].read_bytes() != after[rel].read_bytes():
            changes.append(f"file {rel} changed")
    return changes


# --------------------------------------------------------------------------- scoring


def _reference_target(
    location: str, version: str, before: Copies, targets: dict[str, str | None], scheme: Scheme
) -> str | None:
    if location in targets:
        return targets[location]
    known = sorted({t for t in targets.values() if t is not None}, key=cmp_to_key(scheme.compare))
    if not known:
        return None
    same_line = [t for t in known if scheme.line(t) == scheme.line(version)]
    if same_line:
        return same_line[0]
    below = [t for t in known if scheme.compare(t, version) <= 0]
    return below[-1] if below else known[0]


def judge_versions(
    before: Copies,
    after: Copies,
    entries: dict[str, list[Affected]],
    scheme: Scheme,
    published: Published,
    findings: Findings,
) -> tuple[float, float]:
    """VULN_RESOLVED and MINIMAL_UPGRADE from the copies before and after."""
    if not after:
        names = ", ".join(sorted({name for name, _ in before.values()}))
        findings.add("vuln.package_removed", f"{names} no longer in the project")
        return 1.0, 0.0
    resolved = True
    for location, (name, version) in sorted(after.items()):
        if version is None:
            resolved = False
            findings.add(
                "vuln.still_present",
                f"{name} at {location} is not pinned to one version; cannot prove it is fixed",
            )
        elif name == published.name and not published.has(version):
            resolved = False
            hint = (
                " (semver ignores build metadata; the registry has no such version)"
                if scheme is NPM and "+" in version
                else ""
            )
            findings.add(
                "vuln.version_not_published",
                f"{name}@{version} at {location} was never published{hint}",
            )
        elif is_affected(version, entries[name], scheme):
            resolved = False
            findings.add("vuln.still_present", f"{name}@{version} at {location} is affected")
    if not resolved:
        return 0.0, 0.0
    targets = {
        loc: (minimal_fix(v, entries[n], scheme) if v is not None else None)
        for loc, (n, v) in before.items()
    }
    minimal = 1.0
    for location, (name, version) in sorted(after.items()):
        assert version is not None
        target = _reference_target(location, version, before, targets, scheme)
        replaced = _replaced_version(location, name, before, scheme)
        if replaced is not None and scheme.compare(version, replaced) < 0:
            minimal = 0.0
            findings.add(
                "upgrade.downgrade",
                f"{name}@{version} at {location} is older than the {replaced} it replaces"
                + (f"; the advisory's fix for it is {target}" if target else ""),
            )
            continue
        if target is None or scheme.compare(version, target) == 0:
            continue
        if scheme.compare(version, target) > 0 and scheme.line(version) != scheme.line(target):
            minimal = 0.0
            findings.add(
                "upgrade.major_bump",
                f"{name}@{version} at {location}: the advisory's fix for this line is {target}",
            )
        else:
            minimal = min(minimal, 0.5)
            findings.add(
                "upgrade.not_minimal",
                f"{name}@{version} at {location}: the minimal fix is {target}",
            )
    return 1.0, minimal


def _replaced_version(location: str, name: str, before: Copies, scheme: Scheme) -> str | None:
    """The version a copy replaced: the one at its location, else the package's lowest."""
    if location in before:
        return before[location][1]
    versions = [v for n, v in before.values() if n == name and v is not None]
    return min(versions, key=cmp_to_key(scheme.compare)) if versions else None


def _ecosystem_of(input_dir: Path) -> tuple[str, tuple[str, ...]]:
    if (input_dir / "package.json").is_file():
        return "npm", tuple(n for n in NPM_MANIFESTS if (input_dir / n).is_file())
    files = tuple(n for n in PYPI_MANIFESTS if (input_dir / n).is_file())
    if files:
        return "PyPI", files
    raise ValueError(f"{input_dir}: no package.json, requirements.txt or pyproject.toml")


def _result(case: CaseInfo, breakdown: dict[str, float], findings: Findings) -> dict[str, Any]:
    total = sum(WEIGHTS[key] * breakdown[key] for key in WEIGHTS) / sum(WEIGHTS.values())
    if any(findings.has(code) for code in ZEROING_MODES):
        total = 0.0
    return {
        "case_id": case.case_id,
        "score": round(min(1.0, max(0.0, total)), 6),
        "breakdown": {str(key): float(breakdown[key]) for key in WEIGHTS},
        "failure_modes": findings.as_list(),
    }


def score(case: CaseInfo, out: HarnessOutput) -> dict[str, Any]:
    """Score one SUT run of a vuln-remediation case."""
    input_dir = case.input_dir
    advisory = json.loads((input_dir / "advisory.json").read_text(encoding="utf-8"))
    ecosystem, manifests = _ecosystem_of(input_dir)
    scheme = NPM if ecosystem == "npm" else PYPI
    entries = affected_packages(advisory, ecosystem)
    if not entries:
        raise ValueError(f"advisory {advisory.get('id')} names no {ecosystem} package")
    findings = Findings()
    breakdown = {key: 0.0 for key in WEIGHTS}

    collateral = file_collateral(input_dir, out.workspace, set(manifests))
    # the case's own files must parse: a broken case is an error, not a score
    before_npm = after_npm = reference_npm = None
    before_py = after_py = None
    try:
        if ecosystem == "npm":
            before_npm = load_npm(input_dir)
        else:
            before_py = load_pypi(input_dir, manifests)
    except ManifestError as exc:
        raise ValueError(f"case {case.case_id}: input does not parse: {exc}") from exc
    try:
        if ecosystem == "npm":
            after_npm = load_npm(out.workspace)
        else:
            after_py = load_pypi(out.workspace, manifests)
    except ManifestError as exc:
        findings.add("manifest.unparseable", str(exc))
        breakdown[BreakdownKey.NO_COLLATERAL_CHANGES] = 0.0 if collateral else 1.0
        for change in collateral:
            findings.add("deps.collateral_change", change)
        return _result(case, breakdown, findings)
    breakdown[BreakdownKey.MANIFEST_VALID] = 1.0

    vulnerable = set(entries)
    published = load_published(case.expected_dir, ecosystem, vulnerable)
    stale: list[str] = []
    missing_overrides: list[str] = []
    if before_npm is not None and after_npm is not None:
        before = npm_copies(before_npm, vulnerable)
        after = npm_copies(after_npm, vulnerable)
        expected_dir = case.expected_dir
        if (expected_dir / "package-lock.json").is_file() and (
            expected_dir / "package.json"
        ).is_file():
            try:
                reference_npm = load_npm(expected_dir)
            except ManifestError:
                reference_npm = None
        collateral += npm_collateral(before_npm, after_npm, vulnerable)
        lock_problems = npm_lock_problems(before_npm, after_npm, reference_npm)
        stale, missing_overrides = npm_range_problems(before_npm, after_npm, vulnerable, entries)
    else:
        assert before_py is not None
        assert after_py is not None
        before = pypi_copies(before_py, vulnerable)
        after = pypi_copies(after_py, vulnerable)
        collateral += pypi_collateral(before_py, after_py, vulnerable)
        lock_problems = pypi_lock_problems(before_py, after_py, vulnerable)
    if not before:
        raise ValueError(f"case {case.case_id}: the input holds no package the advisory names")

    vuln, minimal = judge_versions(before, after, entries, scheme, published, findings)
    breakdown[BreakdownKey.VULN_RESOLVED] = vuln
    breakdown[BreakdownKey.MINIMAL_UPGRADE] = minimal
    breakdown[BreakdownKey.NO_COLLATERAL_CHANGES] = 0.0 if collateral else 1.0
    for change in collateral:
        findings.add("deps.collateral_change", change)
    in_sync = not (lock_problems or stale or missing_overrides)
    breakdown[BreakdownKey.LOCKFILE_CONSISTENT] = 1.0 if in_sync else 0.0
    for problem in lock_problems:
        findings.add("lockfile.out_of_sync", problem)
    for problem in stale:
        findings.add("manifest.stale_range", problem)
    for problem in missing_overrides:
        findings.add("manifest.override_missing", problem)
    return _result(case, breakdown, findings)


if __name__ == "__main__":
    serve(score)
