"""Derive the ``rag-corpus-derived`` cases of vuln-remediation from the solved-example corpus.

Corpus layout (``tests/cassettes/vuln-remediation/<example-id>/``)::

    advisory.json   the OSV record (verbatim, without ``_source``)
    before/         the project snapshot with the vulnerable pin (manifests, lockfile, code)
    after/          the files the fix changes, as they are after the fix
    meta.toml       title, cassette_canary_pin, kind ("direct"|"transitive"), package
    published_versions.json  the package's versions on its registry (optional)

For every example this writes ``bench/vuln-remediation/cases/<example-id>/``::

    case.toml       curation_class = "rag-corpus-derived", metadata from advisory + meta
    input/          before/ + advisory.json
    expected/       after/ + fix.diff (unified diff before -> after, computed with difflib)
                    + published_versions.json

and then rewrites ``cases/digests.yaml``. The output is a pure function of the corpus:
re-running it produces byte-identical files (``--check`` verifies that without writing).

Usage: ``python scripts/derive_rag_cases.py [--corpus DIR] [--bench-root DIR] [--check]``
"""

from __future__ import annotations

import argparse
import difflib
import json
import shutil
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path

from pytest_codegenie_eval.taskclass.digests import write_digests

REPO = Path(__file__).resolve().parent.parent
TASK_CLASS = "vuln-remediation"
CURATION_CLASS = "rag-corpus-derived"
META_KEYS = ("title", "cassette_canary_pin", "kind", "package")


def _files(root: Path) -> dict[str, bytes]:
    """Relative POSIX path -> bytes of every file under ``root`` (sorted)."""
    if not root.is_dir():
        return {}
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def fix_diff(before: Mapping[str, bytes], after: Mapping[str, bytes]) -> str:
    """The unified diff (``a/`` -> ``b/``, 3 lines of context) of the files ``after`` holds."""
    chunks: list[str] = []
    for rel in sorted(after):
        old = before.get(rel, b"").decode("utf-8").splitlines(keepends=True)
        new = after[rel].decode("utf-8").splitlines(keepends=True)
        fromfile = f"a/{rel}" if rel in before else "/dev/null"
        chunks.extend(difflib.unified_diff(old, new, fromfile=fromfile, tofile=f"b/{rel}"))
    return "".join(chunks)


def _toml_string(value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes for this content
    return json.dumps(value, ensure_ascii=False)


def render_case_toml(case_id: str, meta: Mapping[str, str], advisory: Mapping[str, object]) -> str:
    """The case.toml of one derived case (fixed key order, so output is stable)."""
    affected = advisory.get("affected", [])
    assert isinstance(affected, list)
    package = meta["package"]
    ecosystem = next(
        str(a["package"]["ecosystem"]) for a in affected if a["package"]["name"] == package
    )
    aliases = advisory.get("aliases", [])
    assert isinstance(aliases, list)
    cve = next((str(a) for a in aliases if str(a).startswith("CVE-")), "")
    metadata = {
        "advisory": str(advisory["id"]),
        "cve": cve,
        "ecosystem": ecosystem,
        "package": package,
        "kind": meta["kind"],
        "corpus_example": f"tests/cassettes/{TASK_CLASS}/{case_id}",
    }
    lines = [
        f"case_id = {_toml_string(case_id)}",
        f"title = {_toml_string(meta['title'])}",
        f"curation_class = {_toml_string(CURATION_CLASS)}",
        f"cassette_canary_pin = {_toml_string(meta['cassette_canary_pin'])}",
        "pass_threshold = 1.0",
        "sut_timeout_s = 120",
        "rubric_timeout_s = 60",
        "",
        "[metadata]",
        *(f"{key} = {_toml_string(value)}" for key, value in metadata.items()),
    ]
    return "\n".join(lines) + "\n"


def derive_example(example: Path) -> dict[str, bytes]:
    """Every file (relative to the case directory) of the case derived from ``example``."""
    meta_raw = tomllib.loads((example / "meta.toml").read_text(encoding="utf-8"))
    missing = [key for key in META_KEYS if not isinstance(meta_raw.get(key), str)]
    if missing:
        raise ValueError(f"{example / 'meta.toml'}: missing string keys {missing}")
    if meta_raw["kind"] not in ("direct", "transitive"):
        raise ValueError(f"{example / 'meta.toml'}: kind must be 'direct' or 'transitive'")
    meta = {key: str(meta_raw[key]) for key in META_KEYS}
    advisory_bytes = (example / "advisory.json").read_bytes()
    advisory = json.loads(advisory_bytes)
    before, after = _files(example / "before"), _files(example / "after")
    if not after:
        raise ValueError(f"{example}: after/ is empty")
    out: dict[str, bytes] = {
        "case.toml": render_case_toml(example.name, meta, advisory).encode("utf-8")
    }
    out.update({f"input/{rel}": data for rel, data in before.items()})
    out["input/advisory.json"] = advisory_bytes
    out.update({f"expected/{rel}": data for rel, data in after.items()})
    out["expected/fix.diff"] = fix_diff(before, after).encode("utf-8")
    versions = example / "published_versions.json"
    if versions.is_file():
        # the registry's versions when the example was recorded: what the rubric checks a
        # fix's version against; evidence for the rubric, not part of the fix
        out["expected/published_versions.json"] = versions.read_bytes()
    return out


def _current(case_dir: Path) -> dict[str, bytes]:
    return _files(case_dir)


def main(argv: list[str] | None = None) -> int:
    """Derive (or with ``--check`` verify) the corpus-derived cases."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--corpus", type=Path, default=REPO / "tests" / "cassettes" / TASK_CLASS)
    parser.add_argument("--bench-root", type=Path, default=REPO / "bench")
    parser.add_argument("--check", action="store_true", help="verify only; exit 1 on drift")
    args = parser.parse_args(argv)
    cases_dir: Path = args.bench_root / TASK_CLASS / "cases"
    examples = sorted(p for p in args.corpus.iterdir() if (p / "meta.toml").is_file())
    if not examples:
        print(f"no examples under {args.corpus}", file=sys.stderr)
        return 1
    drift: list[str] = []
    for example in examples:
        wanted = derive_example(example)
        case_dir = cases_dir / example.name
        if args.check:
            if _current(case_dir) != wanted:
                drift.append(example.name)
            continue
        if case_dir.exists():
            shutil.rmtree(case_dir)
        for rel, data in wanted.items():
            target = case_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        print(f"derived {case_dir}")
    if args.check:
        for name in drift:
            print(f"out of date: {name} (re-run scripts/derive_rag_cases.py)", file=sys.stderr)
        return 1 if drift else 0
    path = write_digests(cases_dir)
    print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
