"""scripts/scaffold_bench_case.py, run as a subprocess into a temporary bench root."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from pytest_codegenie_eval.digests import case_digest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "scaffold_bench_case.py"
ADVISORY = (
    Path(__file__).resolve().parent.parent
    / "cases"
    / "npm-lodash-CVE-2021-23337"
    / "input"
    / "advisory.json"
)


def _scaffold(bench_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--task-class",
            "vuln-remediation",
            *args,
            "--bench-root",
            str(bench_root),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_scaffold_writes_a_case_and_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "vuln-remediation" / "cases").mkdir(parents=True)
    proc = _scaffold(tmp_path, "--cve", "CVE-2021-23337", "--advisory", str(ADVISORY))
    assert proc.returncode == 0, proc.stderr
    case_dir = tmp_path / "vuln-remediation" / "cases" / "npm-lodash-CVE-2021-23337"
    case = tomllib.loads((case_dir / "case.toml").read_text(encoding="utf-8"))
    assert case["case_id"] == case_dir.name
    assert case["curation_class"] == "held-out"
    assert case["metadata"]["cve"] == "CVE-2021-23337"
    assert case["metadata"]["advisory"] == "GHSA-35jh-r3h4-6jhm"
    assert len(case["cassette_canary_pin"]) == 32
    int(case["cassette_canary_pin"], 16)
    assert (case_dir / "input" / "advisory.json").read_bytes() == ADVISORY.read_bytes()
    assert (case_dir / "expected" / "README.txt").is_file()
    assert f"{case_dir.name}: {case_digest(case_dir)}" in proc.stdout.splitlines()

    again = _scaffold(tmp_path, "--cve", "CVE-2021-23337", "--advisory", str(ADVISORY))
    assert again.returncode == 1
    assert "refusing to overwrite" in again.stderr


def test_scaffold_without_advisory_writes_an_osv_stub(tmp_path: Path) -> None:
    (tmp_path / "vuln-remediation" / "cases").mkdir(parents=True)
    first = _scaffold(tmp_path, "--cve", "CVE-2099-0001", "--case-id", "stub-a")
    second = _scaffold(tmp_path, "--cve", "CVE-2099-0001", "--case-id", "stub-b")
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    cases = tmp_path / "vuln-remediation" / "cases"
    stub = json.loads((cases / "stub-a" / "input" / "advisory.json").read_text("utf-8"))
    assert stub["aliases"] == ["CVE-2099-0001"]
    pins = {
        tomllib.loads((cases / name / "case.toml").read_text("utf-8"))["cassette_canary_pin"]
        for name in ("stub-a", "stub-b")
    }
    assert len(pins) == 2


def test_scaffold_rejects_a_bad_cve(tmp_path: Path) -> None:
    (tmp_path / "vuln-remediation").mkdir()
    proc = _scaffold(tmp_path, "--cve", "not-a-cve")
    assert proc.returncode == 1
    assert not (tmp_path / "vuln-remediation" / "cases").exists()
