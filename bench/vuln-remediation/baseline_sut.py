"""Deterministic baseline SUT of ``vuln-remediation`` (no LLM, no network).

Run as ``python -I baseline_sut.py WORKSPACE`` with cwd = WORKSPACE. It reads
``WORKSPACE/advisory.json`` (an OSV record), finds the project's manifests and moves every
affected copy of the vulnerable package to the ``fixed`` version of the range that contains
its pinned version (the minimal fix on that release line), touching nothing else:

* PyPI: rewrites the ``==`` pin in ``requirements.txt`` and/or ``pyproject.toml``
  ``[project]`` dependency strings in place (the rest of each line is kept byte for byte).
* npm: rewrites the lock entries (``version``; ``resolved`` to the registry tarball URL when
  the lock records one; ``integrity`` is **dropped**, because the hash of the new tarball is
  not knowable offline and npm fills it in on the next install; ``license``,
  ``dependencies``, ``bin``, ``engines`` … to what the new version declares, from
  ``registry_snapshot.py``, the baseline's offline registry cache), locks a dependency the
  new version adds that nothing locked satisfies (from the same cache), raises a direct
  dependency's range in ``package.json`` and the lock root so that it no longer admits the
  version it replaced (``^4.17.20`` -> ``^4.17.21``, operator kept), and pins a transitive
  one with an ``overrides`` entry. JSON is written back with the file's own indent and final
  newline.

Known limits: a version missing from ``registry_snapshot.py`` keeps the old version's
fields (a warning on stderr says so); a dependency the new version drops is left in the lock;
copies of one package on different release lines get one flat override at the highest fix.

The version logic is written independently of rubric.py on purpose: a baseline that shared
the grader's code could not catch the grader's mistakes.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import tomllib
from collections.abc import Callable, Mapping
from functools import cmp_to_key
from pathlib import Path
from typing import Any

import nodesemver
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

Compare = Callable[[str, str], int]
DEP_SECTIONS = ("dependencies", "devDependencies", "optionalDependencies")
REGISTRY = "https://registry.npmjs.org/"
_SIMPLE_RANGE = re.compile(r"^(\^|~|=|>=)?v?(\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]*)?)$")
_PIN = re.compile(r"(===?\s*)([^\s,;\\#]+)")
#: Lock entry fields that describe where a copy sits, not what the package declares.
PLACEMENT_FLAGS = ("dev", "optional", "devOptional", "peer")
PLACEMENT = ("version", "resolved", "integrity", *PLACEMENT_FLAGS)
HERE = Path(__file__).resolve().parent


def load_registry_snapshot() -> dict[str, dict[str, Any]]:
    """``registry_snapshot.NPM_MANIFESTS``, loaded by path (``python -I`` drops this dir)."""
    path = HERE / "registry_snapshot.py"
    spec = importlib.util.spec_from_file_location("_vuln_remediation_registry_snapshot", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    manifests: dict[str, dict[str, Any]] = module.NPM_MANIFESTS
    return manifests


def pep440_compare(a: str, b: str) -> int:
    """PEP 440 ordering."""
    va, vb = Version(a), Version(b)
    return (va > vb) - (va < vb)


def semver_compare(a: str, b: str) -> int:
    """node-semver ordering."""
    return int(nodesemver.compare(a, b, False))


class Advisory:
    """The affected ranges of one ecosystem of an OSV record."""

    def __init__(self, record: Mapping[str, Any], ecosystem: str, compare: Compare) -> None:
        self.compare = compare
        self.ecosystem = ecosystem
        self.ranges: dict[str, list[list[Mapping[str, str]]]] = {}
        for affected in record.get("affected", []):
            package = affected.get("package", {})
            if package.get("ecosystem") != ecosystem:
                continue
            name = self.key(str(package["name"]))
            for rng in affected.get("ranges", []):
                if rng.get("type") in ("ECOSYSTEM", "SEMVER"):
                    self.ranges.setdefault(name, []).append(list(rng.get("events", [])))

    def key(self, name: str) -> str:
        """How package names are compared in this ecosystem."""
        return canonicalize_name(name) if self.ecosystem == "PyPI" else name

    def _in_range(self, events: list[Mapping[str, str]], version: str) -> bool:
        # OSV: walk the events in version order; introduced opens, fixed/last_affected close.
        def order(event: Mapping[str, str]) -> str:
            for kind in ("introduced", "fixed", "last_affected", "limit"):
                if kind in event:
                    return str(event[kind])
            return "0"

        def cmp(a: Mapping[str, str], b: Mapping[str, str]) -> int:
            va, vb = order(a), order(b)
            if "0" in (va, vb):
                return (va != "0") - (vb != "0")
            return self.compare(va, vb)

        inside = False
        for event in sorted(events, key=cmp_to_key(cmp)):
            if "introduced" in event:
                if event["introduced"] == "0" or self.compare(version, event["introduced"]) >= 0:
                    inside = True
            elif "fixed" in event:
                if self.compare(version, event["fixed"]) >= 0:
                    inside = False
            elif "last_affected" in event and self.compare(version, event["last_affected"]) > 0:
                inside = False
        return inside

    def affected(self, name: str, version: str) -> bool:
        """Whether ``name@version`` is inside one of the advisory's ranges."""
        return any(self._in_range(ev, version) for ev in self.ranges.get(self.key(name), []))

    def fix_for(self, name: str, version: str) -> str | None:
        """The lowest fix for ``version``'s own range (None when it is not affected/unfixed)."""
        current = version
        for _ in range(32):
            if not self.affected(name, current):
                return None if current == version else current
            fixes = [
                str(event["fixed"])
                for events in self.ranges.get(self.key(name), [])
                if self._in_range(events, current)
                for event in events
                if "fixed" in event and self.compare(str(event["fixed"]), current) > 0
            ]
            if not fixes:
                return None
            current = min(fixes, key=cmp_to_key(self.compare))
        return None


# --------------------------------------------------------------------------- npm


def _json_style(text: str) -> tuple[int | str, str]:
    match = re.search(r"\n([ \t]+)\S", text)
    indent: int | str = 2
    if match:
        ws = match.group(1)
        indent = len(ws) if set(ws) == {" "} else ws
    return indent, "\n" if text.endswith("\n") else ""


def _dump(path: Path, data: Any, original: str) -> None:
    indent, tail = _json_style(original)
    path.write_text(json.dumps(data, indent=indent, ensure_ascii=False) + tail, encoding="utf-8")


def _admits(version: str, spec: str) -> bool:
    return nodesemver.valid_range(spec, False) is not None and bool(
        nodesemver.satisfies(version, spec)
    )


def _new_range(spec: str, target: str, replaced: list[str]) -> str:
    """The range npm would write: the operator kept, the version moved to the fix.

    A compound range (``^4.17.0 || ^5``) is kept only when it admits the fix and none of the
    versions it replaced; otherwise it becomes ``^target``, as ``npm install PKG@FIX`` does.
    """
    match = _SIMPLE_RANGE.match(spec.strip())
    if match:
        return f"{match.group(1) or ''}{target}"
    if _admits(target, spec) and not any(_admits(old, spec) for old in replaced):
        return spec
    return f"^{target}"


def _tarball(name: str, version: str) -> str:
    return f"{REGISTRY}{name}/-/{name.rpartition('/')[2]}-{version}.tgz"


def _declare(entry: dict[str, Any], declared: Mapping[str, Any]) -> dict[str, Any]:
    """``entry`` with its manifest-derived fields replaced by ``declared`` (npm's key order)."""
    head = {k: entry[k] for k in PLACEMENT if k in entry}
    return {**head, **{k: v for k, v in declared.items() if k not in PLACEMENT}}


def _lookup(packages: Mapping[str, Any], from_path: str, dep: str) -> str | None:
    """Node's module lookup: ``from/node_modules/dep``, then each ancestor's."""
    base = from_path
    while True:
        candidate = f"{base}/node_modules/{dep}" if base else f"node_modules/{dep}"
        if candidate in packages:
            return candidate
        if not base:
            return None
        head, sep, _ = base.rpartition("/node_modules/")
        base = head if sep else ""


def lock_missing_dependencies(
    packages: dict[str, dict[str, Any]],
    path: str,
    snapshot: Mapping[str, Mapping[str, Any]],
    changes: list[str],
) -> None:
    """Lock each dependency of ``packages[path]`` that no locked copy satisfies.

    The version is the highest one in the snapshot that satisfies the range (what npm picks
    from the registry); it goes to the root ``node_modules`` when that place is free, else
    beside the dependent. Placement flags (``dev``, ``optional``) follow the dependent.
    """
    entry = packages[path]
    for section in ("dependencies", "optionalDependencies"):
        for dep, spec in sorted((entry.get(section) or {}).items()):
            found = _lookup(packages, path, dep)
            if found is not None and _admits(str(packages[found].get("version")), spec):
                continue
            versions = [
                key.rpartition("@")[2]
                for key in snapshot
                if key.rpartition("@")[0] == dep and _admits(key.rpartition("@")[2], spec)
            ]
            if not versions:
                print(f"warning: {path} needs {dep}@{spec}, not in the snapshot", file=sys.stderr)
                continue
            version = max(versions, key=cmp_to_key(semver_compare))
            place = f"node_modules/{dep}"
            if place in packages:
                place = f"{path}/node_modules/{dep}"
            new: dict[str, Any] = {"version": version, "resolved": _tarball(dep, version)}
            new.update((k, entry[k]) for k in PLACEMENT_FLAGS if k in entry)
            packages[place] = _declare(new, snapshot[f"{dep}@{version}"])
            changes.append(f"{place}: added {dep}@{version} (needed by {path})")
            lock_missing_dependencies(packages, place, snapshot, changes)


def _in_lock_order(packages: dict[str, Any], known: list[str]) -> dict[str, Any]:
    """The entries in their original order, each added one before the first greater path."""
    order = list(known)
    for path in sorted(set(packages) - set(known)):
        index = next((i for i, k in enumerate(order) if k and k > path), len(order))
        order.insert(index, path)
    return {path: packages[path] for path in order}


def fix_npm(workspace: Path, advisory: Advisory) -> list[str]:
    """Upgrade the vulnerable npm package in package-lock.json and package.json."""
    manifest_path, lock_path = workspace / "package.json", workspace / "package-lock.json"
    manifest_text = manifest_path.read_text(encoding="utf-8")
    lock_text = lock_path.read_text(encoding="utf-8")
    manifest = json.loads(manifest_text)
    lock = json.loads(lock_text)
    packages: dict[str, dict[str, Any]] = lock.get("packages", {})
    snapshot = load_registry_snapshot()
    changes: list[str] = []
    targets: dict[str, list[str]] = {}
    replaced: dict[str, list[str]] = {}
    moved: list[str] = []
    for path, entry in list(packages.items()):
        if "node_modules/" not in path or entry.get("link"):
            continue
        name = entry.get("name") or path.rpartition("node_modules/")[2]
        version = str(entry.get("version", ""))
        target = advisory.fix_for(name, version) if version else None
        if target is None:
            if version and advisory.affected(name, version):
                changes.append(f"{path}: {name}@{version} has no known fix")
            continue
        entry["version"] = target
        if str(entry.get("resolved", "")).startswith(REGISTRY):
            entry["resolved"] = _tarball(name, target)
        entry.pop("integrity", None)
        declared = snapshot.get(f"{name}@{target}")
        if declared is None:
            print(
                f"warning: no registry metadata for {name}@{target} in registry_snapshot.py; "
                f"{path} keeps the dependencies of {version}",
                file=sys.stderr,
            )
        else:
            packages[path] = _declare(entry, declared)
            moved.append(path)
        targets.setdefault(name, []).append(target)
        replaced.setdefault(name, []).append(version)
        changes.append(f"{path}: {name} {version} -> {target}")
    known = list(packages)
    for path in moved:
        lock_missing_dependencies(packages, path, snapshot, changes)
    if len(packages) != len(known):
        lock["packages"] = packages = _in_lock_order(packages, known)
    root = packages.get("", {})
    for name, found in targets.items():
        target = max(found, key=cmp_to_key(advisory.compare))
        direct = [s for s in DEP_SECTIONS if name in (manifest.get(s) or {})]
        for section in direct:
            spec = manifest[section][name]
            new = _new_range(spec, target, replaced[name])
            if new != spec:
                manifest[section][name] = new
                if name in (root.get(section) or {}):
                    root[section][name] = new
                changes.append(f"package.json {section}.{name}: {spec} -> {new}")
        if not direct:
            manifest.setdefault("overrides", {})[name] = target
            changes.append(f"package.json overrides.{name} = {target}")
    if targets:
        _dump(manifest_path, manifest, manifest_text)
        _dump(lock_path, lock, lock_text)
    return changes


# --------------------------------------------------------------------------- PyPI


def _bump_requirement(text: str, advisory: Advisory) -> str | None:
    """The requirement string with its ``==`` pin moved to the fix, or None if unchanged."""
    head = re.split(r"\s+(?=--)|\s#|\s*\\$", text.strip(), maxsplit=1)[0]
    try:
        req = Requirement(head)
    except InvalidRequirement:
        return None
    specs = list(req.specifier)
    if len(specs) != 1 or specs[0].operator not in ("==", "===") or "*" in specs[0].version:
        return None
    target = advisory.fix_for(req.name, specs[0].version)
    if target is None:
        return None
    match = _PIN.search(text)
    if match is None:
        return None
    return text[: match.start(2)] + target + text[match.end(2) :]


def fix_requirements(path: Path, advisory: Advisory) -> list[str]:
    """Rewrite matching ``==`` pins of requirements.txt line by line."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    changes: list[str] = []
    continued = False
    for index, line in enumerate(lines):
        body = line.rstrip("\r\n")
        stripped = body.strip()
        was_continued, continued = continued, body.endswith("\\")
        if was_continued or not stripped or stripped.startswith(("#", "-")):
            continue
        new = _bump_requirement(body, advisory)
        if new is not None and new != body:
            lines[index] = new + line[len(body) :]
            changes.append(f"{path.name}: {stripped} -> {new.strip()}")
    if changes:
        path.write_text("".join(lines), encoding="utf-8")
    return changes


def fix_pyproject(path: Path, advisory: Advisory) -> list[str]:
    """Rewrite matching pins among ``[project]`` dependency strings, in the TOML text."""
    text = path.read_text(encoding="utf-8")
    project = tomllib.loads(text).get("project", {})
    items: list[str] = list(project.get("dependencies", []))
    for group in (project.get("optional-dependencies") or {}).values():
        items.extend(group)
    changes: list[str] = []
    for item in items:
        new = _bump_requirement(item, advisory)
        if new is None:
            continue
        for quote in ('"', "'"):
            literal = f"{quote}{item}{quote}"
            if literal in text:
                text = text.replace(literal, f"{quote}{new}{quote}", 1)
                changes.append(f"{path.name}: {item} -> {new}")
                break
    if changes:
        path.write_text(text, encoding="utf-8")
    return changes


def main(argv: list[str]) -> int:
    """Entry point: ``baseline_sut.py WORKSPACE``."""
    if len(argv) != 2:
        print("usage: baseline_sut.py WORKSPACE", file=sys.stderr)
        return 2
    workspace = Path(argv[1]).resolve()
    record = json.loads((workspace / "advisory.json").read_text(encoding="utf-8"))
    changes: list[str] = []
    if (workspace / "package.json").is_file():
        changes += fix_npm(workspace, Advisory(record, "npm", semver_compare))
    else:
        advisory = Advisory(record, "PyPI", pep440_compare)
        if (workspace / "requirements.txt").is_file():
            changes += fix_requirements(workspace / "requirements.txt", advisory)
        if (workspace / "pyproject.toml").is_file():
            changes += fix_pyproject(workspace / "pyproject.toml", advisory)
    for change in changes:
        print(change)
    if not changes:
        print(f"{record.get('id')}: nothing to change")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
