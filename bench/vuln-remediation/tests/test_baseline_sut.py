"""Tests of the deterministic baseline SUT: minimal, formatting-preserving, idempotent."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tomllib
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


def _strip_integrity(lock: dict[str, Any], package: str) -> dict[str, Any]:
    for path, entry in lock["packages"].items():
        if path.endswith(f"node_modules/{package}"):
            entry.pop("integrity", None)
    return lock


@pytest.mark.parametrize("case_dir", CASE_DIRS, ids=[p.name for p in CASE_DIRS])
def test_baseline_matches_the_reference_fix(tmp_path: Path, case_dir: Path) -> None:
    ws = _run(tmp_path, case_dir)
    package = tomllib.loads((case_dir / "case.toml").read_text("utf-8"))["metadata"]["package"]
    for expected in sorted((case_dir / "expected").iterdir()):
        if expected.name == "fix.diff":
            continue
        produced = ws / expected.name
        if expected.name == "package-lock.json":
            # the one documented difference: the new tarball's integrity is dropped offline
            want = _strip_integrity(json.loads(expected.read_text("utf-8")), package)
            assert json.loads(produced.read_text("utf-8")) == want
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
