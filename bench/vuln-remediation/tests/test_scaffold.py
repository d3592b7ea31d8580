"""scripts/scaffold_bench_case.py, run as a subprocess into a temporary bench root."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pytest_codegenie_eval.taskclass.digests import case_digest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "scaffold_bench_case.py"
ADVISORY = (
    Path(__file__).resolve().parent.parent
    / "cases"
    / "npm-lodash-CVE-2021-23337"
    / "input"
    / "advisory.json"
)


def _load_script() -> ModuleType:
    name = "_scaffold_bench_case_under_test"
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


SCAFFOLD = _load_script()
#: a saved registry document, as ``curl https://registry.npmjs.org/lodash`` gives it (trimmed)
LODASH_PACKUMENT = {
    "name": "lodash",
    "dist-tags": {"latest": "4.17.21"},
    "versions": {"4.17.21": {}, "4.17.20": {}, "4.2.0": {}, "0.1.0": {}},
}


def _packument(tmp_path: Path) -> Path:
    path = tmp_path / "lodash.json"
    path.write_text(json.dumps(LODASH_PACKUMENT), encoding="utf-8")
    return path


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
    offline = ("--versions-from", str(_packument(tmp_path)))
    proc = _scaffold(tmp_path, "--cve", "CVE-2021-23337", "--advisory", str(ADVISORY), *offline)
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
    assert case["metadata"]["ecosystem"] == "npm"
    assert case["metadata"]["package"] == "lodash"
    published = json.loads((case_dir / "expected" / "published_versions.json").read_text("utf-8"))
    assert published == {
        "ecosystem": "npm",
        "name": "lodash",
        "versions": ["0.1.0", "4.2.0", "4.17.20", "4.17.21"],  # semver order, not text order
    }
    assert f"{case_dir.name}: {case_digest(case_dir)}" in proc.stdout.splitlines()

    again = _scaffold(tmp_path, "--cve", "CVE-2021-23337", "--advisory", str(ADVISORY), *offline)
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
    assert not (cases / "stub-a" / "expected" / "published_versions.json").exists()
    assert "--refresh-versions --case-id stub-a" in first.stdout
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


class FakeRegistry:
    """Stands in for the registry: records the URLs asked for, answers from a dict."""

    def __init__(self, documents: dict[str, Any]) -> None:
        self.documents = documents
        self.urls: list[str] = []

    def __call__(self, url: str) -> Any:
        self.urls.append(url)
        if url not in self.documents:
            raise SCAFFOLD.RegistryError(f"cannot fetch {url}: HTTP Error 404: Not Found")
        return self.documents[url]


PYPI_FLASK = {
    "info": {"name": "Flask"},
    "releases": {
        "2.2.5": [{"filename": "Flask-2.2.5.tar.gz", "yanked": False}],
        "2.2.10": [{"filename": "Flask-2.2.10.tar.gz", "yanked": True}],  # yanked: == installs
        "2.3.0rc1": [{"filename": "Flask-2.3.0rc1.tar.gz"}],
        "0.1": [],  # a release without files cannot be installed
        "2.2.3": [{"filename": "Flask-2.2.3.tar.gz"}],
    },
}


def test_scaffold_fetches_published_versions_from_the_registry(tmp_path: Path) -> None:
    (tmp_path / "vuln-remediation" / "cases").mkdir(parents=True)
    registry = FakeRegistry({"https://registry.npmjs.org/lodash": LODASH_PACKUMENT})
    args = ["--task-class", "vuln-remediation", "--bench-root", str(tmp_path)]
    rc = SCAFFOLD.main([*args, "--cve", "CVE-2021-23337", "--advisory", str(ADVISORY)], registry)
    assert rc == 0
    assert registry.urls == ["https://registry.npmjs.org/lodash"]
    case_dir = tmp_path / "vuln-remediation" / "cases" / "npm-lodash-CVE-2021-23337"
    published = json.loads((case_dir / "expected" / "published_versions.json").read_text("utf-8"))
    assert published["versions"][-1] == "4.17.21"


def test_registry_error_leaves_no_half_written_case(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "vuln-remediation" / "cases").mkdir(parents=True)
    args = ["--task-class", "vuln-remediation", "--bench-root", str(tmp_path)]
    rc = SCAFFOLD.main(
        [*args, "--cve", "CVE-2021-23337", "--advisory", str(ADVISORY)], FakeRegistry({})
    )
    assert rc == 1
    assert "404" in capsys.readouterr().err
    assert list((tmp_path / "vuln-remediation" / "cases").iterdir()) == []


def test_pypi_versions_and_refresh_of_an_existing_case(tmp_path: Path) -> None:
    case_dir = tmp_path / "vuln-remediation" / "cases" / "pypi-flask-x"
    (case_dir / "expected").mkdir(parents=True)
    (case_dir / "case.toml").write_text(
        '[metadata]\necosystem = "PyPI"\npackage = "Flask"\n', encoding="utf-8"
    )
    registry = FakeRegistry({"https://pypi.org/pypi/Flask/json": PYPI_FLASK})
    args = ["--task-class", "vuln-remediation", "--bench-root", str(tmp_path)]
    assert SCAFFOLD.main([*args, "--case-id", "pypi-flask-x", "--refresh-versions"], registry) == 0
    published = json.loads((case_dir / "expected" / "published_versions.json").read_text("utf-8"))
    assert published == {
        "ecosystem": "PyPI",
        "name": "Flask",
        "versions": ["2.2.3", "2.2.5", "2.2.10", "2.3.0rc1"],  # PEP 440 order, no "0.1"
    }
    # offline: a saved copy of the same document gives the same file
    saved = tmp_path / "flask.json"
    saved.write_text(json.dumps(PYPI_FLASK), encoding="utf-8")
    first = (case_dir / "expected" / "published_versions.json").read_bytes()
    offline = ["--case-id", "pypi-flask-x", "--refresh-versions", "--versions-from", str(saved)]
    assert SCAFFOLD.main([*args, *offline], FakeRegistry({})) == 0
    assert (case_dir / "expected" / "published_versions.json").read_bytes() == first


@pytest.mark.parametrize(
    ("ecosystem", "name", "url"),
    [
        ("npm", "@babel/core", "https://registry.npmjs.org/@babel%2Fcore"),
        ("npm", "tough-cookie", "https://registry.npmjs.org/tough-cookie"),
        ("PyPI", "PyYAML", "https://pypi.org/pypi/PyYAML/json"),
    ],
)
def test_registry_urls(ecosystem: str, name: str, url: str) -> None:
    assert SCAFFOLD.registry_url(ecosystem, name) == url


def test_a_versions_file_for_another_package_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "published_versions.json"
    source.write_text(
        json.dumps({"ecosystem": "npm", "name": "lodash-es", "versions": ["4.17.21"]}), "utf-8"
    )
    with pytest.raises(SCAFFOLD.RegistryError, match="not npm 'lodash'"):
        SCAFFOLD.published_versions("npm", "lodash", source)
    ok = SCAFFOLD.published_versions("npm", "lodash-es", source)
    assert ok["versions"] == ["4.17.21"]


def test_pre_semver_registry_versions_sort_last() -> None:
    versions = ["1.0.0rc", "4.19.2", "0.14.0", "4.19.10", "5.0.0-beta.3"]
    assert SCAFFOLD.sort_versions("npm", versions) == [
        "0.14.0",
        "4.19.2",
        "4.19.10",
        "5.0.0-beta.3",
        "1.0.0rc",
    ]
