"""Tests of the deterministic baseline SUT: minimal, formatting-preserving, idempotent."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent
CASES = BENCH / "cases"
CASE_DIRS = sorted(p for p in CASES.iterdir() if (p / "case.toml").is_file())


def _load() -> ModuleType:
    name = "_vuln_remediation_baseline_under_test"
    spec = importlib.util.spec_from_file_location(name, BENCH / "baseline_sut.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


BASELINE = _load()


def _run(tmp_path: Path, case_dir: Path) -> Path:
    ws = tmp_path / "ws"
    shutil.copytree(case_dir / "input", ws)
    assert BASELINE.main(["baseline_sut.py", str(ws)]) == 0
    return ws


def _strip_new_integrity(lock: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """The lock without the hashes of the entries the fix moved or added."""
    for path, entry in lock["packages"].items():
        if before["packages"].get(path) != entry:
            entry.pop("integrity", None)
    return lock


@pytest.mark.parametrize("case_dir", CASE_DIRS, ids=[p.name for p in CASE_DIRS])
def test_baseline_matches_the_reference_fix(tmp_path: Path, case_dir: Path) -> None:
    ws = _run(tmp_path, case_dir)
    for expected in sorted((case_dir / "expected").iterdir()):
        if expected.name in ("fix.diff", "published_versions.json"):  # for the rubric only
            continue
        produced = ws / expected.name
        if expected.name == "package-lock.json":
            # the one documented difference: the new tarballs' integrity is dropped offline
            before = json.loads((case_dir / "input" / expected.name).read_text("utf-8"))
            want = _strip_new_integrity(json.loads(expected.read_text("utf-8")), before)
            got = json.loads(produced.read_text("utf-8"))
            assert got == want
            assert list(got["packages"]) == list(want["packages"])  # npm's entry order
            for path, entry in got["packages"].items():
                assert list(entry) == list(want["packages"][path]), path  # and key order
        else:
            assert produced.read_bytes() == expected.read_bytes(), expected.name


@pytest.mark.parametrize("case_dir", CASE_DIRS, ids=[p.name for p in CASE_DIRS])
def test_baseline_is_idempotent(
    tmp_path: Path, case_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = _run(tmp_path, case_dir)
    snapshot = {p: p.read_bytes() for p in ws.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert BASELINE.main(["baseline_sut.py", str(ws)]) == 0
    assert "nothing to change" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in ws.rglob("*") if p.is_file()} == snapshot


def test_requirement_lines_keep_markers_comments_and_continuations(tmp_path: Path) -> None:
    advisory = json.loads(
        (CASES / "pypi-urllib3-CVE-2023-45803" / "input" / "advisory.json").read_text("utf-8")
    )
    path = tmp_path / "requirements.txt"
    path.write_text(
        "urllib3 == 1.26.17 ; python_version >= '3.7'  # via requests\n"
        "urllib3==2.0.4 \\\n    --hash=sha256:abc\n"
        "idna==3.4\n",
        encoding="utf-8",
    )
    grader = BASELINE.Advisory(advisory, "PyPI", BASELINE.pep440_compare)
    assert len(BASELINE.fix_requirements(path, grader)) == 2
    assert path.read_text(encoding="utf-8") == (
        "urllib3 == 1.26.18 ; python_version >= '3.7'  # via requests\n"
        "urllib3==2.0.7 \\\n    --hash=sha256:abc\n"
        "idna==3.4\n"
    )


def test_json_indent_is_preserved(tmp_path: Path) -> None:
    case_dir = CASES / "npm-semver-CVE-2022-25883"
    ws = tmp_path / "ws"
    shutil.copytree(case_dir / "input", ws)
    for name in ("package.json", "package-lock.json"):
        data = json.loads((ws / name).read_text("utf-8"))
        (ws / name).write_text(json.dumps(data, indent=4) + "\n", encoding="utf-8")
    assert BASELINE.main(["baseline_sut.py", str(ws)]) == 0
    text = (ws / "package.json").read_text("utf-8")
    assert '\n    "dependencies": {\n        "kleur"' in text
    assert '"semver": "6.3.1"' in text


NPM_CASES = [p for p in CASE_DIRS if (p / "input" / "package-lock.json").is_file()]


@pytest.mark.parametrize("case_dir", NPM_CASES, ids=[p.name for p in NPM_CASES])
def test_registry_snapshot_agrees_with_the_npm_written_reference(case_dir: Path) -> None:
    """Every entry the reference fix moved or added is in the snapshot, field for field."""
    snapshot = BASELINE.load_registry_snapshot()
    before = json.loads((case_dir / "input" / "package-lock.json").read_text("utf-8"))
    after = json.loads((case_dir / "expected" / "package-lock.json").read_text("utf-8"))
    changed = {
        path: entry
        for path, entry in after["packages"].items()
        if path and before["packages"].get(path) != entry
    }
    assert changed
    for path, entry in changed.items():
        name = entry.get("name") or path.rpartition("node_modules/")[2]
        declared = {k: v for k, v in entry.items() if k not in BASELINE.PLACEMENT}
        assert snapshot[f"{name}@{entry['version']}"] == declared, path


@pytest.mark.parametrize(
    ("spec", "replaced", "new"),
    [
        ("^4.17.20", ["4.17.20"], "^4.17.21"),
        ("~4.17.20", ["4.17.20"], "~4.17.21"),
        ("4.17.20", ["4.17.20"], "4.17.21"),
        ("^4.17.0 || ^5.0.0", ["4.17.20"], "^4.17.21"),  # admits the fix, and the old version
        (">=4.17.21 <5", ["4.17.20"], ">=4.17.21 <5"),  # already excludes the old version
        ("latest", ["4.17.20"], "^4.17.21"),
    ],
)
def test_new_range_never_admits_the_replaced_version(
    spec: str, replaced: list[str], new: str
) -> None:
    assert BASELINE._new_range(spec, "4.17.21", replaced) == new


def test_missing_snapshot_entry_keeps_the_old_fields_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(BASELINE, "load_registry_snapshot", dict)
    case_dir = CASES / "npm-axios-CVE-2023-45857"
    ws = _run(tmp_path, case_dir)
    assert "no registry metadata for axios@0.28.0" in capsys.readouterr().err
    entry = json.loads((ws / "package-lock.json").read_text("utf-8"))["packages"]
    assert entry["node_modules/axios"]["dependencies"]["follow-redirects"] == "^1.14.9"
