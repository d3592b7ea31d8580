"""Scaffold a new bench case directory (operator tool, see README.md).

Usage::

    python scripts/scaffold_bench_case.py --task-class vuln-remediation --cve CVE-2021-23337 \\
        [--advisory PATH/TO/OSV.json] [--bench-root bench] [--case-id ID] \\
        [--ecosystem npm|PyPI --package NAME] [--versions-from FILE]
    python scripts/scaffold_bench_case.py --task-class vuln-remediation --case-id ID \\
        --refresh-versions [--package NAME] [--versions-from FILE]

Writes ``<bench-root>/<task-class>/cases/<case-id>/`` with a stubbed ``case.toml`` (fresh
random ``cassette_canary_pin``, ``curation_class = "held-out"``, ``[metadata] cve``),
``input/advisory.json`` (copied from ``--advisory``, else an OSV skeleton with the CVE as
alias), ``expected/published_versions.json`` and ``expected/README.txt`` (a placeholder to
replace with the fixed files and ``fix.diff``). It refuses to overwrite an existing case and
prints the line to add to ``cases/digests.yaml`` (re-pin after you have finished editing the
case).

``expected/published_versions.json`` (``{"ecosystem", "name", "versions"}``) lists every
published version of the vulnerable package; the rubric blocks a version that is not in it.
It is fetched from the registry (``https://registry.npmjs.org/<name>``,
``https://pypi.org/pypi/<name>/json``) when the case is written, so the committed case stays
offline. ``--versions-from FILE`` reads a saved copy of that registry document (or a
``published_versions.json``) instead, for offline use. The package is the advisory's (first
``affected`` entry) unless ``--ecosystem``/``--package`` say otherwise; without either the file
is not written and a note says how to add it. ``--refresh-versions`` rewrites only that file
of an existing case (the package comes from ``[metadata]`` of its ``case.toml``).
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import shutil
import sys
import tomllib
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from functools import cmp_to_key
from pathlib import Path
from typing import Any

import nodesemver
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pytest_codegenie_eval.taskclass.digests import case_digest

_CVE = re.compile(r"^CVE-\d{4}-\d{4,}$")
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")

EXPECTED_README = """\
Placeholder written by scripts/scaffold_bench_case.py.

Replace this file with the fixed manifest(s)/lockfile of the minimal remediation and a
fix.diff (unified diff input -> expected). The rubric's unit tests require the expected
files to score 1.0, and the case must be re-pinned in cases/digests.yaml afterwards.
"""


ECOSYSTEMS = ("npm", "PyPI")
REGISTRY_URLS = {
    "npm": "https://registry.npmjs.org/{name}",
    "PyPI": "https://pypi.org/pypi/{name}/json",
}
PUBLISHED_VERSIONS = "published_versions.json"
FETCH_TIMEOUT_S = 60.0

#: ``fetch(url) -> parsed JSON``; replaced in tests so that they stay offline.
Fetch = Callable[[str], Any]


class RegistryError(RuntimeError):
    """The registry document cannot be fetched or does not list the package's versions."""


def registry_url(ecosystem: str, name: str) -> str:
    """The registry document that lists every published version of ``name``."""
    if ecosystem not in REGISTRY_URLS:
        raise RegistryError(f"unknown ecosystem {ecosystem!r} (expected one of {ECOSYSTEMS})")
    # a scoped npm name keeps its "@" and escapes its "/" (@scope%2Fname)
    quoted = urllib.parse.quote(name, safe="@")
    return REGISTRY_URLS[ecosystem].format(name=quoted)


def fetch_json(url: str) -> Any:
    """GET ``url`` and parse the JSON body (the registries need no credentials)."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:
            return json.loads(response.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise RegistryError(f"cannot fetch {url}: {exc}") from exc


def _npm_valid(version: str) -> bool:
    try:
        nodesemver.make_semver(version, False)
    except ValueError:
        return False
    return True


def _version_key(ecosystem: str) -> Callable[[str], Any]:
    if ecosystem == "npm":

        def npm_cmp(a: str, b: str) -> int:
            # the registry still lists a few pre-semver strings (express "1.0.0rc"): last, by text
            va, vb = _npm_valid(a), _npm_valid(b)
            if va and vb:
                return int(nodesemver.compare(a, b, False))
            if va != vb:
                return -1 if va else 1
            return (a > b) - (a < b)

        return cmp_to_key(npm_cmp)

    def pep440(version: str) -> tuple[int, Version | str]:
        try:
            return (0, Version(version))
        except InvalidVersion:  # pre-PEP 440 releases sort last, by text
            return (1, version)

    return pep440


def sort_versions(ecosystem: str, versions: Iterable[str]) -> list[str]:
    """Unique versions in the ecosystem's order (node-semver, PEP 440)."""
    return sorted(set(versions), key=_version_key(ecosystem))


def versions_from_document(ecosystem: str, name: str, document: Any) -> list[str]:
    """The published versions in a registry document or a ``published_versions.json``.

    npm: the keys of the packument's ``versions`` (an unpublished version is gone from it).
    PyPI: the ``releases`` that have at least one file (yanked files still install with an
    exact ``==`` pin, PEP 592; a release without files cannot be installed at all).
    """
    if not isinstance(document, dict):
        raise RegistryError(f"{ecosystem} document for {name!r} is not a JSON object")
    listed = document.get("versions")
    if isinstance(listed, list):
        found = (document.get("ecosystem"), str(document.get("name")))
        if found[0] != ecosystem or not _same_name(ecosystem, found[1], name):
            raise RegistryError(
                f"{PUBLISHED_VERSIONS} is for {found[0]} {found[1]!r}, not {ecosystem} {name!r}"
            )
        versions = [str(v) for v in listed]
    elif ecosystem == "npm" and isinstance(listed, dict):
        _check_document_name(ecosystem, name, document.get("name"))
        versions = [str(v) for v in listed]
    elif ecosystem == "PyPI" and isinstance(document.get("releases"), dict):
        info = document.get("info")
        _check_document_name(ecosystem, name, info.get("name") if isinstance(info, dict) else None)
        versions = [str(v) for v, files in document["releases"].items() if files]
    else:
        raise RegistryError(f"{ecosystem} document for {name!r} lists no versions")
    if not versions:
        raise RegistryError(f"{ecosystem} {name!r} has no published version")
    return sort_versions(ecosystem, versions)


def _same_name(ecosystem: str, a: str, b: str) -> bool:
    if ecosystem == "PyPI":
        return canonicalize_name(a) == canonicalize_name(b)
    return a == b


def _check_document_name(ecosystem: str, name: str, found: object) -> None:
    if isinstance(found, str) and not _same_name(ecosystem, found, name):
        raise RegistryError(f"registry document is for {found!r}, not {name!r}")


def published_versions(
    ecosystem: str, name: str, source: Path | None = None, fetch: Fetch = fetch_json
) -> dict[str, Any]:
    """``{"ecosystem", "name", "versions"}`` from ``source`` or, without it, the registry."""
    if source is not None:
        try:
            document = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RegistryError(f"cannot read {source}: {exc}") from exc
    else:
        document = fetch(registry_url(ecosystem, name))
    return {
        "ecosystem": ecosystem,
        "name": name,
        "versions": versions_from_document(ecosystem, name, document),
    }


def render_published_versions(data: dict[str, Any]) -> str:
    """The file's text: one version per line, so that a re-fetch diffs readably."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def advisory_package(advisory: dict[str, object] | None) -> tuple[str, str] | None:
    """(ecosystem, name) of the advisory's first affected package, when it is a real one."""
    affected = advisory.get("affected") if advisory else None
    if isinstance(affected, list) and affected and isinstance(affected[0], dict):
        package = affected[0].get("package")
        if isinstance(package, dict):
            ecosystem, name = package.get("ecosystem"), package.get("name")
            if ecosystem in ECOSYSTEMS and isinstance(name, str) and name:
                return str(ecosystem), name
    return None


def osv_skeleton(cve: str) -> dict[str, object]:
    """A stub OSV record to be completed by hand (ids and ranges from the real advisory)."""
    return {
        "schema_version": "1.4.0",
        "id": "GHSA-xxxx-xxxx-xxxx",
        "aliases": [cve],
        "summary": "TODO: copy the advisory summary",
        "affected": [
            {
                "package": {"ecosystem": "TODO: npm or PyPI", "name": "TODO"},
                "ranges": [
                    {
                        "type": "ECOSYSTEM",
                        "events": [{"introduced": "0"}, {"fixed": "TODO"}],
                    }
                ],
            }
        ],
    }


def case_toml(
    case_id: str,
    cve: str,
    pin: str,
    advisory_id: str,
    ecosystem: str = "TODO",
    package: str = "TODO",
) -> str:
    """The stub case.toml of a new held-out case."""
    return (
        f'case_id = "{case_id}"\n'
        f'title = "TODO: one line describing {cve}"\n'
        'curation_class = "held-out"\n'
        f'cassette_canary_pin = "{pin}"\n'
        "pass_threshold = 1.0\n"
        "sut_timeout_s = 120\n"
        "rubric_timeout_s = 60\n"
        "\n"
        "[metadata]\n"
        f'advisory = "{advisory_id}"\n'
        f'cve = "{cve}"\n'
        f'ecosystem = "{ecosystem}"\n'
        f'package = "{package}"\n'
        'kind = "TODO: direct or transitive"\n'
    )


def default_case_id(cve: str, advisory: dict[str, object] | None) -> str:
    """``<ecosystem>-<package>-<CVE>`` (e.g. ``npm-lodash-CVE-2021-23337``) when known."""
    affected = advisory.get("affected") if advisory else None
    if isinstance(affected, list) and affected and isinstance(affected[0], dict):
        package = affected[0].get("package")
        if isinstance(package, dict) and package.get("ecosystem") and package.get("name"):
            slug = f"{package['ecosystem']}-{package['name']}".lower()
            slug = re.sub(r"[^a-z0-9._+-]+", "-", slug).strip("-")
            return f"{slug}-{cve}"
    return f"case-{cve}"


def refresh_versions(case_dir: Path, package: str | None, source: Path | None, fetch: Fetch) -> int:
    """Rewrite ``expected/published_versions.json`` of an existing case."""
    toml_path = case_dir / "case.toml"
    if not toml_path.is_file():
        print(f"error: {toml_path} does not exist", file=sys.stderr)
        return 1
    metadata = tomllib.loads(toml_path.read_text(encoding="utf-8")).get("metadata", {})
    ecosystem = metadata.get("ecosystem")
    name = package or metadata.get("package")
    if ecosystem not in ECOSYSTEMS or not isinstance(name, str) or not name:
        print(
            f"error: {toml_path} needs [metadata] ecosystem (npm|PyPI) and package",
            file=sys.stderr,
        )
        return 1
    try:
        data = published_versions(str(ecosystem), name, source, fetch)
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    target = case_dir / "expected" / PUBLISHED_VERSIONS
    target.parent.mkdir(exist_ok=True)
    target.write_text(render_published_versions(data), encoding="utf-8")
    print(f"wrote {target} ({len(data['versions'])} versions)")
    print("re-pin the case: codegenie-eval digests --task-class NAME --write")
    return 0


def main(argv: list[str] | None = None, fetch: Fetch = fetch_json) -> int:
    """Create the case directory; exit 1 when it exists or the arguments are invalid."""
    parser = argparse.ArgumentParser(description="Scaffold a bench case directory.")
    parser.add_argument("--task-class", required=True)
    parser.add_argument("--cve", help="CVE-YYYY-NNNN (required unless --refresh-versions)")
    parser.add_argument("--advisory", type=Path, help="OSV JSON record to copy into input/")
    parser.add_argument("--bench-root", type=Path, default=Path("bench"))
    parser.add_argument("--case-id", help="default: <task-class-less slug>-<CVE>")
    parser.add_argument("--ecosystem", choices=ECOSYSTEMS, help="default: the advisory's")
    parser.add_argument("--package", help="vulnerable package; default: the advisory's")
    parser.add_argument(
        "--versions-from",
        type=Path,
        help="saved registry document (or published_versions.json) instead of fetching",
    )
    parser.add_argument(
        "--refresh-versions",
        action="store_true",
        help="only rewrite expected/published_versions.json of the existing --case-id",
    )
    args = parser.parse_args(argv)

    task_dir: Path = args.bench_root / args.task_class
    if args.refresh_versions:
        if not args.case_id:
            print("error: --refresh-versions needs --case-id", file=sys.stderr)
            return 1
        return refresh_versions(
            task_dir / "cases" / args.case_id, args.package, args.versions_from, fetch
        )
    if args.cve is None:
        print("error: --cve is required", file=sys.stderr)
        return 1
    if not _CVE.match(args.cve):
        print(f"error: {args.cve!r} is not a CVE id (CVE-YYYY-NNNN)", file=sys.stderr)
        return 1
    if not task_dir.is_dir():
        print(f"error: no task class directory {task_dir}", file=sys.stderr)
        return 1
    advisory: dict[str, object] | None = None
    if args.advisory is not None:
        loaded = json.loads(args.advisory.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            print(f"error: {args.advisory} is not an OSV JSON object", file=sys.stderr)
            return 1
        advisory = loaded
    case_id = args.case_id or default_case_id(args.cve, advisory)
    if not _CASE_ID.match(case_id):
        print(f"error: invalid case id {case_id!r}", file=sys.stderr)
        return 1
    case_dir = task_dir / "cases" / case_id
    if case_dir.exists():
        print(f"error: {case_dir} already exists; refusing to overwrite", file=sys.stderr)
        return 1
    known = advisory_package(advisory)
    ecosystem: str | None = args.ecosystem or (known[0] if known else None)
    package: str | None = args.package or (known[1] if known else None)
    if (ecosystem is None) != (package is None):
        print("error: give both --ecosystem and --package", file=sys.stderr)
        return 1
    versions: dict[str, Any] | None = None
    if ecosystem is not None and package is not None:
        # fetched before anything is written, so a registry error leaves no half case
        try:
            versions = published_versions(ecosystem, package, args.versions_from, fetch)
        except RegistryError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    (case_dir / "input").mkdir(parents=True)
    (case_dir / "expected").mkdir()
    if args.advisory is not None:
        shutil.copyfile(args.advisory, case_dir / "input" / "advisory.json")
        advisory_id = str(advisory.get("id", "TODO")) if advisory else "TODO"
    else:
        skeleton = osv_skeleton(args.cve)
        (case_dir / "input" / "advisory.json").write_text(
            json.dumps(skeleton, indent=2) + "\n", encoding="utf-8"
        )
        advisory_id = str(skeleton["id"])
    (case_dir / "expected" / "README.txt").write_text(EXPECTED_README, encoding="utf-8")
    if versions is not None:
        (case_dir / "expected" / PUBLISHED_VERSIONS).write_text(
            render_published_versions(versions), encoding="utf-8"
        )
    pin = secrets.token_hex(16)
    (case_dir / "case.toml").write_text(
        case_toml(case_id, args.cve, pin, advisory_id, ecosystem or "TODO", package or "TODO"),
        encoding="utf-8",
    )
    print(f"created {case_dir}")
    if versions is None:
        print(
            f"note: no {PUBLISHED_VERSIONS} written (package unknown); fill [metadata] and run "
            f"with --refresh-versions --case-id {case_id}"
        )
    print("add to cases/digests.yaml (re-pin after editing the case):")
    print(f"{case_id}: {case_digest(case_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
