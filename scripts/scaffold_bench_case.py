"""Scaffold a new bench case directory (operator tool, see README.md).

Usage::

    python scripts/scaffold_bench_case.py --task-class vuln-remediation --cve CVE-2021-23337 \\
        [--advisory PATH/TO/OSV.json] [--bench-root bench] [--case-id ID]

Writes ``<bench-root>/<task-class>/cases/<case-id>/`` with a stubbed ``case.toml`` (fresh
random ``cassette_canary_pin``, ``curation_class = "held-out"``, ``[metadata] cve``),
``input/advisory.json`` (copied from ``--advisory``, else an OSV skeleton with the CVE as
alias) and ``expected/README.txt`` (a placeholder to replace with the fixed files and
``fix.diff``). It refuses to overwrite an existing case and prints the line to add to
``cases/digests.yaml`` (re-pin after you have finished editing the case).
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import shutil
import sys
from pathlib import Path

from pytest_codegenie_eval.digests import case_digest

_CVE = re.compile(r"^CVE-\d{4}-\d{4,}$")
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")

EXPECTED_README = """\
Placeholder written by scripts/scaffold_bench_case.py.

Replace this file with the fixed manifest(s)/lockfile of the minimal remediation and a
fix.diff (unified diff input -> expected). The rubric's unit tests require the expected
files to score 1.0, and the case must be re-pinned in cases/digests.yaml afterwards.
"""


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


def case_toml(case_id: str, cve: str, pin: str, advisory_id: str) -> str:
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
        'ecosystem = "TODO"\n'
        'package = "TODO"\n'
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


def main(argv: list[str] | None = None) -> int:
    """Create the case directory; exit 1 when it exists or the arguments are invalid."""
    parser = argparse.ArgumentParser(description="Scaffold a bench case directory.")
    parser.add_argument("--task-class", required=True)
    parser.add_argument("--cve", required=True, help="CVE-YYYY-NNNN")
    parser.add_argument("--advisory", type=Path, help="OSV JSON record to copy into input/")
    parser.add_argument("--bench-root", type=Path, default=Path("bench"))
    parser.add_argument("--case-id", help="default: <task-class-less slug>-<CVE>")
    args = parser.parse_args(argv)

    if not _CVE.match(args.cve):
        print(f"error: {args.cve!r} is not a CVE id (CVE-YYYY-NNNN)", file=sys.stderr)
        return 1
    task_dir: Path = args.bench_root / args.task_class
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
    pin = secrets.token_hex(16)
    (case_dir / "case.toml").write_text(
        case_toml(case_id, args.cve, pin, advisory_id), encoding="utf-8"
    )
    print(f"created {case_dir}")
    print("add to cases/digests.yaml (re-pin after editing the case):")
    print(f"{case_id}: {case_digest(case_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
