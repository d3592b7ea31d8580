"""In-process unit tests of the vuln-remediation rubric (offline, fast).

The rubric is loaded from its file under a unique module name (the harness never imports a
rubric; these tests do, to call ``score`` directly on temporary workspaces).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from pytest_codegenie_eval.rubric import CaseInfo, HarnessOutput

BENCH = Path(__file__).resolve().parent.parent
CASES = BENCH / "cases"
CASE_DIRS = sorted(p for p in CASES.iterdir() if (p / "case.toml").is_file())
CASE_IDS = [p.name for p in CASE_DIRS]


def load_module(filename: str, module_name: str) -> ModuleType:
    """Import a bench script by path under a name no other bench uses."""
    spec = importlib.util.spec_from_file_location(module_name, BENCH / filename)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


RUBRIC = load_module("rubric.py", "_vuln_remediation_rubric_under_test")
KEYS = load_module("breakdown_keys.py", "_vuln_remediation_keys_under_test")
#: files of expected/ that are for the rubric (and humans), not part of the fixed project
RUBRIC_ONLY = frozenset({"fix.diff", "published_versions.json"})
REPO = BENCH.parent.parent
CORPUS = REPO / "tests" / "cassettes" / "vuln-remediation"


def case_info(case_dir: Path) -> CaseInfo:
    """CaseInfo as the harness would send it."""
    raw = tomllib.loads((case_dir / "case.toml").read_text(encoding="utf-8"))
    return CaseInfo(
        case_id=raw["case_id"],
        case_dir=case_dir,
        title=raw["title"],
        curation_class=raw["curation_class"],
        metadata=raw.get("metadata", {}),
        raw=raw,
    )


def workspace(tmp_path: Path, case_dir: Path, *, fixed: bool) -> Path:
    """A copy of ``input/``; with ``fixed`` the expected/ files are laid over it."""
    ws = tmp_path / "ws"
    shutil.copytree(case_dir / "input", ws)
    if fixed:
        for path in (case_dir / "expected").iterdir():
            if path.name not in RUBRIC_ONLY:
                shutil.copy2(path, ws / path.name)
    return ws


def run(case_dir: Path, ws: Path) -> dict[str, Any]:
    """Score a workspace in process."""
    result: dict[str, Any] = RUBRIC.score(case_info(case_dir), HarnessOutput(workspace=ws))
    return result


def codes(result: dict[str, Any]) -> set[str]:
    """The failure mode codes of a result."""
    return {fm["code"] for fm in result["failure_modes"]}


def edit_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Load, change and rewrite a JSON file in npm's formatting."""
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


@pytest.fixture
def semver_case() -> Path:
    return CASES / "npm-semver-CVE-2022-25883"


@pytest.fixture
def minimist_case() -> Path:
    return CASES / "npm-minimist-CVE-2021-44906"


# --------------------------------------------------------------------------- the cases


def _declared_floors() -> dict[str, int]:
    """``min_cases_for_promotion`` of registration.py, read the way the fence reads it."""
    tree = ast.parse((BENCH / "registration.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "min_cases_for_promotion":
            floors = ast.literal_eval(node.value)
            assert isinstance(floors, dict)
            return floors
    raise AssertionError("registration.py declares no min_cases_for_promotion")


def test_cases_meet_the_bench_contract_whatever_their_number() -> None:
    infos = [case_info(p) for p in CASE_DIRS]
    classes = [info.curation_class for info in infos]
    floors = _declared_floors()
    assert len(CASE_DIRS) >= floors["bronze"]
    # silver and above need >= 5 held-out cases (the fence's held-out-floor rule)
    assert classes.count("held-out") >= 5
    corpus = sorted(p.name for p in CORPUS.iterdir() if (p / "meta.toml").is_file())
    derived = sorted(i.case_id for i in infos if i.curation_class == "rag-corpus-derived")
    assert derived == corpus  # every corpus example is derived, nothing else claims to be
    for case_dir, info in zip(CASE_DIRS, infos, strict=True):
        assert info.case_id == case_dir.name
        assert info.metadata["kind"] in ("direct", "transitive")
        assert info.metadata["ecosystem"] in ("npm", "PyPI")
        advisory = json.loads((case_dir / "input" / "advisory.json").read_text("utf-8"))
        assert advisory["id"] == info.metadata["advisory"]
        assert info.metadata["cve"] in advisory["aliases"]
        assert "_source" not in advisory
    pins = [info.raw["cassette_canary_pin"] for info in infos]
    assert len(set(pins)) == len(pins)
    assert all(len(pin) >= 16 for pin in pins)


def test_readme_lists_every_case() -> None:
    readme = (BENCH / "README.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip() for line in readme.splitlines() if line.startswith("| ")}
    assert set(CASE_IDS) <= rows


def _published(case_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (case_dir / "expected" / "published_versions.json").read_text("utf-8")
    )
    return data


@pytest.mark.parametrize("case_dir", CASE_DIRS, ids=CASE_IDS)
def test_every_case_pins_published_versions(case_dir: Path) -> None:
    """Each case carries its package's published versions; input and reference are in it."""
    info = case_info(case_dir)
    published = _published(case_dir)
    assert set(published) == {"ecosystem", "name", "versions"}
    assert published["ecosystem"] == info.metadata["ecosystem"]
    ecosystem = published["ecosystem"]
    name = RUBRIC.normalize_name(ecosystem, published["name"])
    assert name == RUBRIC.normalize_name(ecosystem, info.metadata["package"])
    versions = set(published["versions"])
    assert len(versions) == len(published["versions"])
    advisory = json.loads((case_dir / "input" / "advisory.json").read_text("utf-8"))
    assert name in RUBRIC.affected_packages(advisory, ecosystem)
    fixes = [
        event["fixed"]
        for affected in advisory["affected"]
        if RUBRIC.normalize_name(ecosystem, affected["package"]["name"]) == name
        for rng in affected["ranges"]
        for event in rng["events"]
        if "fixed" in event
    ]
    for fix in fixes:  # the advisory's own fixes exist (npm prereleases included)
        assert fix in versions, fix
    for side in ("input", "expected"):
        root = case_dir / side
        if ecosystem == "npm":
            copies = RUBRIC.npm_copies(RUBRIC.load_npm(root), {name})
        else:
            files = [n for n in RUBRIC.PYPI_MANIFESTS if (root / n).is_file()]
            copies = RUBRIC.pypi_copies(RUBRIC.load_pypi(root, files), {name})
        assert copies, side
        for _name, version in copies.values():
            assert version in versions, (side, version)


@pytest.mark.parametrize("case_dir", CASE_DIRS, ids=CASE_IDS)
def test_reference_fix_scores_one(tmp_path: Path, case_dir: Path) -> None:
    result = run(case_dir, workspace(tmp_path, case_dir, fixed=True))
    assert result["score"] == 1.0, result
    assert result["failure_modes"] == []
    assert set(result["breakdown"].values()) == {1.0}


@pytest.mark.parametrize("case_dir", CASE_DIRS, ids=CASE_IDS)
def test_untouched_input_scores_zero(tmp_path: Path, case_dir: Path) -> None:
    result = run(case_dir, workspace(tmp_path, case_dir, fixed=False))
    assert result["score"] == 0.0
    assert "vuln.still_present" in codes(result)
    assert result["breakdown"]["VULN_RESOLVED"] == 0.0


# --------------------------------------------------------------------------- versions


def test_wrong_branch_upgrade_is_a_major_bump(tmp_path: Path, semver_case: Path) -> None:
    ws = workspace(tmp_path, semver_case, fixed=True)

    def to_7(lock: dict[str, Any]) -> None:
        lock["packages"][""]["dependencies"]["semver"] = "7.5.2"
        entry = lock["packages"]["node_modules/semver"]
        entry["version"] = "7.5.2"
        entry["resolved"] = "https://registry.npmjs.org/semver/-/semver-7.5.2.tgz"
        del entry["integrity"]

    edit_json(ws / "package-lock.json", to_7)
    edit_json(ws / "package.json", lambda p: p["dependencies"].update(semver="7.5.2"))
    result = run(semver_case, ws)
    assert "upgrade.major_bump" in codes(result)
    assert result["breakdown"]["VULN_RESOLVED"] == 1.0
    assert result["breakdown"]["MINIMAL_UPGRADE"] < 1.0
    assert 0.0 < result["score"] < 1.0


def test_forced_jump_is_not_punished(tmp_path: Path) -> None:
    case_dir = CASES / "pypi-django-CVE-2023-36053"
    result = run(case_dir, workspace(tmp_path, case_dir, fixed=True))
    assert result["breakdown"]["MINIMAL_UPGRADE"] == 1.0
    assert not codes(result) & {"upgrade.major_bump", "upgrade.not_minimal"}


def test_past_the_forced_fix_is_not_minimal(tmp_path: Path) -> None:
    case_dir = CASES / "pypi-django-CVE-2023-36053"
    ws = workspace(tmp_path, case_dir, fixed=False)
    text = (ws / "requirements.txt").read_text(encoding="utf-8")
    (ws / "requirements.txt").write_text(text.replace("django==4.0.10", "django==4.2.3"), "utf-8")
    result = run(case_dir, ws)
    assert codes(result) == {"upgrade.not_minimal"}
    assert result["breakdown"]["MINIMAL_UPGRADE"] == 0.5


def _synthetic_case(
    root: Path,
    advisory: dict[str, Any],
    files: dict[str, str],
    *,
    published: tuple[str, list[str]],
) -> Path:
    case_dir = root / "case"
    (case_dir / "input").mkdir(parents=True)
    (case_dir / "expected").mkdir()
    name, versions = published
    (case_dir / "expected" / "published_versions.json").write_text(
        json.dumps({"ecosystem": "PyPI", "name": name, "versions": versions}), encoding="utf-8"
    )
    (case_dir / "case.toml").write_text(
        'case_id = "synthetic"\ntitle = "t"\ncuration_class = "held-out"\n'
        'cassette_canary_pin = "00112233445566778899"\n',
        encoding="utf-8",
    )
    (case_dir / "input" / "advisory.json").write_text(json.dumps(advisory), encoding="utf-8")
    for name, text in files.items():
        (case_dir / "input" / name).write_text(text, encoding="utf-8")
    return case_dir


CRYPTOGRAPHY = {
    "id": "GHSA-6vqw-3v5j-54x4",
    "aliases": ["CVE-2024-26130"],
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "cryptography"},
            "ranges": [
                {"type": "ECOSYSTEM", "events": [{"introduced": "38.0.0"}, {"fixed": "42.0.4"}]}
            ],
        }
    ],
}
#: the cryptography releases this test uses, as listed by PyPI
CRYPTOGRAPHY_VERSIONS = ["38.0.4", "41.0.7", "42.0.4", "42.0.5", "43.0.0"]
PYPROJECT = '[project]\nname = "svc"\nversion = "1"\ndependencies = ["cryptography=={v}"]\n'


@pytest.mark.parametrize(
    ("new", "expected_codes", "minimal"),
    [
        ("42.0.4", set(), 1.0),
        ("42.0.5", {"upgrade.not_minimal"}, 0.5),
        ("43.0.0", {"upgrade.major_bump"}, 0.0),
        ("41.0.7", {"vuln.still_present"}, 0.0),
    ],
)
def test_cryptography_38_to_42_is_forced(
    tmp_path: Path, new: str, expected_codes: set[str], minimal: float
) -> None:
    case_dir = _synthetic_case(
        tmp_path,
        CRYPTOGRAPHY,
        {"pyproject.toml": PYPROJECT.format(v="38.0.4")},
        published=("cryptography", CRYPTOGRAPHY_VERSIONS),
    )
    ws = tmp_path / "ws"
    shutil.copytree(case_dir / "input", ws)
    (ws / "pyproject.toml").write_text(PYPROJECT.format(v=new), encoding="utf-8")
    result = run(case_dir, ws)
    assert codes(result) == expected_codes
    assert result["breakdown"]["MINIMAL_UPGRADE"] == minimal


def test_osv_range_semantics() -> None:
    npm, pypi = RUBRIC.NPM, RUBRIC.PYPI
    express_5 = [{"introduced": "5.0.0-alpha.1"}, {"fixed": "5.0.0-beta.3"}]
    assert RUBRIC.range_affects(express_5, "5.0.0-beta.1", npm)
    assert not RUBRIC.range_affects(express_5, "5.0.0-beta.3", npm)
    assert not RUBRIC.range_affects(express_5, "5.0.0", npm)
    assert not RUBRIC.range_affects(express_5, "4.19.2", npm)
    last = [{"introduced": "0"}, {"last_affected": "4.5.0"}]
    assert RUBRIC.range_affects(last, "4.5.0", npm)
    assert not RUBRIC.range_affects(last, "4.5.1", npm)
    assert RUBRIC.range_affects([{"introduced": "0"}, {"fixed": "5.4"}], "5.3.1", pypi)
    assert not RUBRIC.range_affects([{"introduced": "0"}, {"fixed": "5.4"}], "5.4", pypi)
    # PEP 440, not string order: 1.26.9 < 1.26.18
    assert RUBRIC.range_affects([{"introduced": "0"}, {"fixed": "1.26.18"}], "1.26.9", pypi)


@pytest.mark.parametrize(
    ("case_id", "ecosystem", "package", "pinned", "fix"),
    [
        ("npm-semver-CVE-2022-25883", "npm", "semver", "6.2.0", "6.3.1"),
        ("npm-semver-CVE-2022-25883", "npm", "semver", "7.0.0", "7.5.2"),
        ("npm-semver-CVE-2022-25883", "npm", "semver", "5.7.1", "5.7.2"),
        ("npm-json5-CVE-2022-46175", "npm", "json5", "1.0.1", "1.0.2"),
        ("pypi-django-CVE-2023-36053", "PyPI", "django", "4.0.10", "4.1.10"),
        ("pypi-django-CVE-2023-36053", "PyPI", "django", "3.2.19", "3.2.20"),
        ("pypi-urllib3-CVE-2023-45803", "PyPI", "urllib3", "1.26.17", "1.26.18"),
        ("pypi-urllib3-CVE-2023-45803", "PyPI", "urllib3", "2.0.6", "2.0.7"),
        ("pypi-urllib3-CVE-2023-45803", "PyPI", "urllib3", "1.26.18", "1.26.18"),
    ],
)
def test_minimal_fix_per_release_line(
    case_id: str, ecosystem: str, package: str, pinned: str, fix: str
) -> None:
    advisory = json.loads((CASES / case_id / "input" / "advisory.json").read_text("utf-8"))
    entries = RUBRIC.affected_packages(advisory, ecosystem)[package]
    scheme = RUBRIC.NPM if ecosystem == "npm" else RUBRIC.PYPI
    assert RUBRIC.minimal_fix(pinned, entries, scheme) == fix


# --------------------------------------------------------------------------- collateral


def test_collateral_dependency_change_is_flagged(tmp_path: Path) -> None:
    case_dir = CASES / "pypi-jinja2-CVE-2024-22195"
    ws = workspace(tmp_path, case_dir, fixed=True)
    text = (ws / "requirements.txt").read_text(encoding="utf-8")
    (ws / "requirements.txt").write_text(text.replace("click==8.1.7", "click==8.1.8"), "utf-8")
    result = run(case_dir, ws)
    assert "deps.collateral_change" in codes(result)
    assert result["breakdown"]["NO_COLLATERAL_CHANGES"] == 0.0
    assert result["breakdown"]["VULN_RESOLVED"] == 1.0
    assert result["score"] < 1.0


@pytest.mark.parametrize("victim", ["templates/card.html", "advisory.json", "NEW_FILE.txt"])
def test_collateral_file_change_is_flagged(tmp_path: Path, victim: str) -> None:
    case_dir = CASES / "pypi-jinja2-CVE-2024-22195"
    ws = workspace(tmp_path, case_dir, fixed=True)
    with (ws / victim).open("a", encoding="utf-8") as handle:
        handle.write("\n# touched\n")
    result = run(case_dir, ws)
    assert codes(result) == {"deps.collateral_change"}
    assert victim in result["failure_modes"][0]["detail"]


def test_collateral_npm_lock_entry_is_flagged(tmp_path: Path, minimist_case: Path) -> None:
    ws = workspace(tmp_path, minimist_case, fixed=True)
    edit_json(
        ws / "package-lock.json",
        lambda lock: lock["packages"]["node_modules/mkdirp"].update(version="0.5.6"),
    )
    result = run(minimist_case, ws)
    assert "deps.collateral_change" in codes(result)


def test_harness_and_installer_folders_are_ignored(tmp_path: Path, minimist_case: Path) -> None:
    ws = workspace(tmp_path, minimist_case, fixed=True)
    (ws / ".codegenie").mkdir()
    (ws / ".codegenie" / "task.md").write_text("do it", encoding="utf-8")
    (ws / "node_modules" / "minimist").mkdir(parents=True)
    (ws / "node_modules" / "minimist" / "index.js").write_text("", encoding="utf-8")
    assert run(minimist_case, ws)["score"] == 1.0


# --------------------------------------------------------------------------- manifests


@pytest.mark.parametrize(
    ("case_id", "filename", "garbage"),
    [
        ("npm-lodash-CVE-2021-23337", "package.json", '{"name": "x",'),
        ("npm-lodash-CVE-2021-23337", "package-lock.json", "[]"),
        ("pypi-requests-CVE-2023-32681", "requirements.txt", "requests==2.31.0\nidna=3.4\n"),
        ("pypi-requests-CVE-2023-32681", "requirements.txt", "requests==2.31.0\nidna===\n"),
        ("pypi-pyyaml-CVE-2020-14343", "pyproject.toml", "[project\ndependencies = ["),
    ],
)
def test_corrupt_manifest_is_unparseable(
    tmp_path: Path, case_id: str, filename: str, garbage: str
) -> None:
    case_dir = CASES / case_id
    ws = workspace(tmp_path, case_dir, fixed=True)
    (ws / filename).write_text(garbage, encoding="utf-8")
    result = run(case_dir, ws)
    assert "manifest.unparseable" in codes(result)
    assert result["score"] == 0.0
    assert result["breakdown"]["MANIFEST_VALID"] == 0.0


def test_deleted_manifest_is_unparseable(tmp_path: Path, minimist_case: Path) -> None:
    ws = workspace(tmp_path, minimist_case, fixed=True)
    (ws / "package-lock.json").unlink()
    assert "manifest.unparseable" in codes(run(minimist_case, ws))


def test_pep503_names(tmp_path: Path) -> None:
    assert RUBRIC.normalize_name("PyPI", "PyYAML") == "pyyaml"
    assert RUBRIC.normalize_name("PyPI", "Jinja2") == RUBRIC.normalize_name("PyPI", "jinja2")
    case_dir = CASES / "pypi-pyyaml-CVE-2020-14343"  # advisory says "PyYAML"
    for spelling, fixed in (("PyYAML==5.4", True), ("PyYaml==5.3.1", False)):
        ws = workspace(tmp_path / spelling, case_dir, fixed=False)
        text = (ws / "pyproject.toml").read_text(encoding="utf-8")
        (ws / "pyproject.toml").write_text(text.replace("pyyaml==5.3.1", spelling), "utf-8")
        result = run(case_dir, ws)
        assert (result["score"] == 1.0) is fixed, result


def test_unpinned_requirement_cannot_prove_a_fix(tmp_path: Path) -> None:
    case_dir = CASES / "pypi-requests-CVE-2023-32681"
    ws = workspace(tmp_path, case_dir, fixed=False)
    text = (ws / "requirements.txt").read_text(encoding="utf-8")
    (ws / "requirements.txt").write_text(text.replace("requests==2.28.2", "requests"), "utf-8")
    assert "vuln.still_present" in codes(run(case_dir, ws))


def test_removing_the_package_is_not_a_fix(tmp_path: Path) -> None:
    case_dir = CASES / "pypi-requests-CVE-2023-32681"
    ws = workspace(tmp_path, case_dir, fixed=False)
    text = (ws / "requirements.txt").read_text(encoding="utf-8")
    (ws / "requirements.txt").write_text(text.replace("requests==2.28.2\n", ""), "utf-8")
    result = run(case_dir, ws)
    assert "vuln.package_removed" in codes(result)
    assert result["score"] == 0.0


# pip joins "\" continuations *before* it strips comments (pip/_internal/req/req_file.py,
# preprocess: join_lines, then ignore_comments), so a comment ending in "\" swallows the next
# line, and pip never sees the requirement on it. The rubric used to strip comments first, saw
# that requirement and scored a fix pip would never install 1.0.


def test_comment_ending_in_a_backslash_swallows_the_next_line(tmp_path: Path) -> None:
    case_dir = CASES / "pypi-requests-CVE-2023-32681"
    ws = workspace(tmp_path, case_dir, fixed=True)
    text = (ws / "requirements.txt").read_text(encoding="utf-8")
    assert "idna==3.4\nrequests==2.31.0\n" in text
    # pip reads "idna==3.4 # requests==2.31.0": requests is gone, not fixed
    (ws / "requirements.txt").write_text(text.replace("idna==3.4\n", "idna==3.4 # \\\n"), "utf-8")
    result = run(case_dir, ws)
    assert "vuln.package_removed" in codes(result)
    assert result["score"] == 0.0


def _hashes(*fills: str) -> str:
    """pip-compile --generate-hashes continuation lines with fake sha256 digests."""
    return " \\\n".join(f"    --hash=sha256:{fill * 64}" for fill in fills)


#: pip-compile --generate-hashes output, with a "{trick}" slot on cffi's last hash line
HASHED = (
    "#\n# This file is autogenerated by pip-compile with Python 3.11\n"
    "# by the following command:\n#\n#    pip-compile --generate-hashes requirements.in\n#\n"
    f"cffi==1.15.1 \\\n{_hashes('a', 'b')}{{trick}}\n"
    "{via_cffi}"
    "cryptography=={version} \\\n{crypto_hashes}\n"
    "    # via -r requirements.in\n"
    f"pycparser==2.21 \\\n{_hashes('e')}\n    # via cffi\n"
)


def _hashed(version: str, crypto_hashes: str, *, trick: str = "", via: bool = True) -> str:
    return HASHED.format(
        version=version,
        crypto_hashes=crypto_hashes,
        trick=trick,
        via_cffi="    # via cryptography\n" if via else "",
    )


@pytest.mark.parametrize(
    ("trick", "via", "fixed"),
    [
        ("", True, True),  # the honest fix: new pin, new hashes
        (" # \\", True, True),  # the "# via" comment line ends the continuation (pip: yes)
        (" # \\", False, False),  # without it, cffi's comment swallows cryptography's lines
        (" #\\", False, False),
        ("\\", False, False),  # no space: "...bbbb\" joins into "...bbbbcryptography==42.0.4"
    ],
)
def test_pip_compile_hashes_and_the_comment_backslash(
    tmp_path: Path, trick: str, via: bool, fixed: bool
) -> None:
    case_dir = _synthetic_case(
        tmp_path,
        CRYPTOGRAPHY,
        {"requirements.txt": _hashed("38.0.4", _hashes("c", "d"))},
        published=("cryptography", CRYPTOGRAPHY_VERSIONS),
    )
    ws = tmp_path / "ws"
    shutil.copytree(case_dir / "input", ws)
    after = _hashed("42.0.4", _hashes("f", "0"), trick=trick, via=via)
    (ws / "requirements.txt").write_text(after, encoding="utf-8")
    result = run(case_dir, ws)
    if fixed:
        assert result["score"] == 1.0, result
        assert result["failure_modes"] == []
    else:
        assert result["score"] == 0.0, result
        assert codes(result) & {"vuln.package_removed", "manifest.unparseable"}, result


def test_pyproject_dependencies_are_pep508_strings_not_requirements_lines(tmp_path: Path) -> None:
    """A dependency string has no comments or continuations: "click==7.1.2 # \\" is invalid."""
    case_dir = CASES / "pypi-pyyaml-CVE-2020-14343"
    ws = workspace(tmp_path, case_dir, fixed=True)
    text = (ws / "pyproject.toml").read_text(encoding="utf-8")
    assert '"click==7.1.2",' in text
    (ws / "pyproject.toml").write_text(text.replace('"click==7.1.2",', '"click==7.1.2 # \\\\",'))
    result = run(case_dir, ws)
    assert "manifest.unparseable" in codes(result)
    assert result["score"] == 0.0


# --------------------------------------------------------------------------- lockfile


def test_lock_outside_the_direct_range_is_out_of_sync(tmp_path: Path, semver_case: Path) -> None:
    ws = workspace(tmp_path, semver_case, fixed=True)
    shutil.copy2(semver_case / "input" / "package.json", ws / "package.json")  # still "6.2.0"
    edit_json(
        ws / "package-lock.json",
        lambda lock: lock["packages"][""]["dependencies"].update(semver="6.2.0"),
    )
    result = run(semver_case, ws)
    # the exact pin "6.2.0" both excludes the locked 6.3.1 and still names the old version
    assert codes(result) == {"lockfile.out_of_sync", "manifest.stale_range"}
    assert result["breakdown"]["LOCKFILE_CONSISTENT"] == 0.0
    assert result["breakdown"]["VULN_RESOLVED"] == 1.0


def test_lock_root_not_mirroring_package_json(tmp_path: Path, semver_case: Path) -> None:
    ws = workspace(tmp_path, semver_case, fixed=True)
    shutil.copy2(semver_case / "input" / "package-lock.json", ws / "package-lock.json")
    result = run(semver_case, ws)
    assert {"lockfile.out_of_sync", "vuln.still_present"} <= codes(result)


def _bump_minimist(lock: dict[str, Any], *, resolved: str, keep_integrity: bool) -> None:
    entry = lock["packages"]["node_modules/minimist"]
    entry["version"] = "1.2.6"
    entry["resolved"] = resolved
    if not keep_integrity:
        del entry["integrity"]


@pytest.mark.parametrize(
    ("resolved", "keep_integrity", "in_sync"),
    [
        ("https://registry.npmjs.org/minimist/-/minimist-1.2.6.tgz", False, True),
        ("https://registry.npmjs.org/minimist/-/minimist-1.2.6.tgz", True, False),
        ("https://registry.npmjs.org/minimist/-/minimist-1.2.5.tgz", False, False),
    ],
    ids=["integrity-dropped", "stale-integrity", "stale-resolved"],
)
def test_lock_entry_of_the_new_version(
    tmp_path: Path, minimist_case: Path, resolved: str, keep_integrity: bool, in_sync: bool
) -> None:
    ws = workspace(tmp_path, minimist_case, fixed=False)
    shutil.copy2(minimist_case / "expected" / "package.json", ws / "package.json")
    edit_json(
        ws / "package-lock.json",
        lambda lock: _bump_minimist(lock, resolved=resolved, keep_integrity=keep_integrity),
    )
    result = run(minimist_case, ws)
    assert (result["score"] == 1.0) is in_sync, result
    assert ("lockfile.out_of_sync" in codes(result)) is not in_sync


def test_wrong_integrity_for_a_known_tarball(tmp_path: Path, minimist_case: Path) -> None:
    ws = workspace(tmp_path, minimist_case, fixed=True)
    bogus = "sha512-" + "A" * 86 + "=="
    edit_json(
        ws / "package-lock.json",
        lambda lock: lock["packages"]["node_modules/minimist"].update(integrity=bogus),
    )
    assert codes(run(minimist_case, ws)) == {"lockfile.out_of_sync"}


def test_pypi_duplicate_pin_is_out_of_sync(tmp_path: Path) -> None:
    case_dir = CASES / "pypi-requests-CVE-2023-32681"
    ws = workspace(tmp_path, case_dir, fixed=True)
    with (ws / "requirements.txt").open("a", encoding="utf-8") as handle:
        handle.write("requests==2.32.0\n")
    assert "lockfile.out_of_sync" in codes(run(case_dir, ws))


# --------------------------------------------------------------------------- nested npm copies


def _nested(lock: dict[str, Any], version: str) -> None:
    packages = lock["packages"]
    packages["node_modules/mkdirp/node_modules/minimist"] = {
        "version": version,
        "resolved": f"https://registry.npmjs.org/minimist/-/minimist-{version}.tgz",
        "license": "MIT",
    }
    lock["packages"] = dict(sorted(packages.items()))


@pytest.mark.parametrize(("version", "fixed"), [("1.2.5", False), ("1.2.6", True)])
def test_every_nested_copy_counts(
    tmp_path: Path, minimist_case: Path, version: str, fixed: bool
) -> None:
    ws = workspace(tmp_path, minimist_case, fixed=True)
    edit_json(ws / "package-lock.json", lambda lock: _nested(lock, version))
    result = run(minimist_case, ws)
    assert ("vuln.still_present" in codes(result)) is not fixed
    assert (result["score"] == 1.0) is fixed, result


def test_node_resolution_walks_up() -> None:
    packages: dict[str, dict[str, Any]] = {
        "": {},
        "node_modules/a": {},
        "node_modules/a/node_modules/b": {},
        "node_modules/c": {},
    }
    resolve = RUBRIC.resolve_node_path
    assert resolve(packages, "node_modules/a", "b") == "node_modules/a/node_modules/b"
    assert resolve(packages, "node_modules/a/node_modules/b", "c") == "node_modules/c"
    assert resolve(packages, "", "b") is None


# --------------------------------------------------------------------------- wrong fixes
#
# Each of these is a fix an agent could hand in that must not pass. They were written
# against the rubric before it learnt to reject them, and each failed there (most scored a
# clean 1.0); see README.md, "Wrong fixes the rubric rejects".


def _move_npm_entry(
    lock: dict[str, Any],
    path: str,
    version: str,
    *,
    resolved: str | None = None,
    integrity: str | None = None,
) -> None:
    """Move one lock entry to ``version``; ``resolved`` defaults to the registry tarball."""
    entry = lock["packages"][path]
    name = path.rpartition("node_modules/")[2]
    entry["version"] = version
    entry["resolved"] = resolved or RUBRIC.tarball_url(name, version)
    if integrity is None:
        entry.pop("integrity", None)
    else:
        entry["integrity"] = integrity


def _pin(ws: Path, filename: str, old: str, new: str) -> None:
    text = (ws / filename).read_text(encoding="utf-8")
    assert old in text
    (ws / filename).write_text(text.replace(old, new), encoding="utf-8")


def _semver_to(ws: Path, version: str, *, manifest: str | None = None) -> None:
    spec = manifest or version
    edit_json(ws / "package.json", lambda p: p["dependencies"].update(semver=spec))

    def change(lock: dict[str, Any]) -> None:
        lock["packages"][""]["dependencies"]["semver"] = spec
        _move_npm_entry(lock, "node_modules/semver", version)

    edit_json(ws / "package-lock.json", change)


@pytest.mark.parametrize(
    ("version", "manifest"),
    [("6.3.1+evil", None), ("6.3.1+evil", "6.3.1"), ("6.3.1+build.7", "^6.3.1")],
    ids=["lock-and-manifest", "lock-only", "caret-manifest"],
)
def test_build_metadata_version_is_not_published(
    tmp_path: Path, semver_case: Path, version: str, manifest: str | None
) -> None:
    """node-semver ignores build metadata: 6.3.1+evil == 6.3.1, and its tarball URL too."""
    ws = workspace(tmp_path, semver_case, fixed=False)
    _semver_to(ws, version, manifest=manifest)
    result = run(semver_case, ws)
    assert "vuln.version_not_published" in codes(result), result
    assert result["score"] == 0.0


@pytest.mark.parametrize(
    "resolved",
    [
        "https://attacker.example/minimist/-/minimist-1.2.6.tgz",
        "git+ssh://git@github.com/minimistjs/minimist.git#7efb22a518b53b06f5b02a1038a88bd6290c2846",
        "https://registry.npmjs.org.attacker.example/minimist/-/minimist-1.2.6.tgz",
        "http://registry.npmjs.org/minimist/-/minimist-1.2.6.tgz",
        "file:../vendor/minimist-1.2.6.tgz",
    ],
    ids=["other-host", "git-ssh", "lookalike-host", "plain-http", "file"],
)
def test_lock_entry_resolved_off_the_registry(
    tmp_path: Path, minimist_case: Path, resolved: str
) -> None:
    ws = workspace(tmp_path, minimist_case, fixed=True)
    edit_json(
        ws / "package-lock.json",
        lambda lock: _move_npm_entry(lock, "node_modules/minimist", "1.2.6", resolved=resolved),
    )
    result = run(minimist_case, ws)
    assert "lockfile.out_of_sync" in codes(result), result
    assert result["breakdown"]["LOCKFILE_CONSISTENT"] == 0.0


NPM_TRANSITIVE = [
    p
    for p in CASE_DIRS
    if case_info(p).metadata["ecosystem"] == "npm" and case_info(p).metadata["kind"] == "transitive"
]


@pytest.mark.parametrize("case_dir", NPM_TRANSITIVE, ids=[p.name for p in NPM_TRANSITIVE])
def test_lockfile_only_bump_of_a_transitive_dependency(tmp_path: Path, case_dir: Path) -> None:
    """task.md asks for an ``overrides`` entry; the reference lock without it is not the fix."""
    ws = workspace(tmp_path, case_dir, fixed=True)
    shutil.copy2(case_dir / "input" / "package.json", ws / "package.json")
    result = run(case_dir, ws)
    assert "manifest.override_missing" in codes(result), result
    assert result["breakdown"]["LOCKFILE_CONSISTENT"] == 0.0


@pytest.mark.parametrize("spec", ["^1.2.5", ">=1.2.0", "1.2.5 || 1.2.6"])
def test_override_that_still_admits_the_vulnerable_version(
    tmp_path: Path, minimist_case: Path, spec: str
) -> None:
    ws = workspace(tmp_path, minimist_case, fixed=True)
    edit_json(ws / "package.json", lambda p: p["overrides"].update(minimist=spec))
    result = run(minimist_case, ws)
    assert "manifest.stale_range" in codes(result), result


@pytest.mark.parametrize(
    ("case_id", "filename", "old", "new"),
    [
        ("pypi-urllib3-CVE-2023-45803", "requirements.txt", "urllib3==1.26.17", "urllib3==1.26.99"),
        ("pypi-django-CVE-2023-36053", "requirements.txt", "django==4.0.10", "django==4.1.99"),
        (
            "pypi-requests-CVE-2023-32681",
            "requirements.txt",
            "requests==2.28.2",
            "requests==2.31.0+evil",
        ),
        ("pypi-flask-CVE-2023-30861", "requirements.txt", "flask==2.2.3", "flask==2.2.9"),
    ],
    ids=["urllib3-1.26.99", "django-4.1.99", "requests-local-version", "flask-2.2.9"],
)
def test_unpublished_pypi_version(
    tmp_path: Path, case_id: str, filename: str, old: str, new: str
) -> None:
    case_dir = CASES / case_id
    ws = workspace(tmp_path, case_dir, fixed=False)
    _pin(ws, filename, old, new)
    result = run(case_dir, ws)
    assert "vuln.version_not_published" in codes(result), result
    assert "upgrade.not_minimal" not in codes(result)  # not a "valid but larger" upgrade
    assert result["score"] == 0.0


@pytest.mark.parametrize("version", ["6.3.99", "6.4.0-rc.1"])
def test_unpublished_npm_version(tmp_path: Path, semver_case: Path, version: str) -> None:
    ws = workspace(tmp_path, semver_case, fixed=False)
    _semver_to(ws, version)
    result = run(semver_case, ws)
    assert "vuln.version_not_published" in codes(result), result
    assert "upgrade.not_minimal" not in codes(result)
    assert result["score"] == 0.0


def test_downgrade_to_an_older_unaffected_npm_line(tmp_path: Path, semver_case: Path) -> None:
    """semver 6.2.0 -> 5.7.2 is unaffected (the 5.x fix) but goes backwards a major line."""
    ws = workspace(tmp_path, semver_case, fixed=False)
    _semver_to(ws, "5.7.2")
    result = run(semver_case, ws)
    assert "upgrade.downgrade" in codes(result), result
    assert "upgrade.not_minimal" not in codes(result)
    assert result["breakdown"]["MINIMAL_UPGRADE"] == 0.0


def test_downgrade_to_an_older_unaffected_pypi_line(tmp_path: Path) -> None:
    case_dir = CASES / "pypi-django-CVE-2023-36053"  # 4.0.10 -> 3.2.20 (the 3.2 LTS fix)
    ws = workspace(tmp_path, case_dir, fixed=False)
    _pin(ws, "requirements.txt", "django==4.0.10", "django==3.2.20")
    result = run(case_dir, ws)
    assert "upgrade.downgrade" in codes(result), result
    assert result["breakdown"]["MINIMAL_UPGRADE"] == 0.0


def test_moved_entry_keeps_the_old_versions_dependencies(tmp_path: Path) -> None:
    """axios 0.28.0 declares proxy-from-env and follow-redirects ^1.15.0; 0.27.2 did not."""
    case_dir = CASES / "npm-axios-CVE-2023-45857"
    ws = workspace(tmp_path, case_dir, fixed=False)
    shutil.copy2(case_dir / "expected" / "package.json", ws / "package.json")

    def change(lock: dict[str, Any]) -> None:
        lock["packages"][""]["dependencies"]["axios"] = "^0.28.0"
        _move_npm_entry(lock, "node_modules/axios", "0.28.0")

    edit_json(ws / "package-lock.json", change)
    result = run(case_dir, ws)
    assert "lockfile.out_of_sync" in codes(result), result
    assert "axios@0.28.0" in next(
        fm["detail"] for fm in result["failure_modes"] if fm["code"] == "lockfile.out_of_sync"
    )


def test_new_dependency_of_the_fix_must_be_locked(tmp_path: Path) -> None:
    case_dir = CASES / "npm-axios-CVE-2023-45857"
    ws = workspace(tmp_path, case_dir, fixed=True)
    edit_json(
        ws / "package-lock.json", lambda lock: lock["packages"].pop("node_modules/proxy-from-env")
    )
    assert "lockfile.out_of_sync" in codes(run(case_dir, ws))


@pytest.mark.parametrize(
    ("case_id", "package", "old", "new"),
    [
        ("npm-lodash-CVE-2021-23337", "lodash", "^4.17.20", "4.17.21"),
        ("npm-express-CVE-2024-29041", "express", "^4.19.1", "4.19.2"),
    ],
)
def test_direct_range_left_admitting_the_replaced_version(
    tmp_path: Path, case_id: str, package: str, old: str, new: str
) -> None:
    """``^4.17.20`` admits 4.17.21, but it is the range npm rewrites (to ``^4.17.21``)."""
    case_dir = CASES / case_id
    ws = workspace(tmp_path, case_dir, fixed=True)
    edit_json(ws / "package.json", lambda p: p["dependencies"].update({package: old}))
    edit_json(
        ws / "package-lock.json",
        lambda lock: lock["packages"][""]["dependencies"].update({package: old}),
    )
    result = run(case_dir, ws)
    assert "manifest.stale_range" in codes(result), result
    assert result["breakdown"]["LOCKFILE_CONSISTENT"] == 0.0


CERTIFI_SYNTHETIC = {
    # synthetic record (not a published advisory): only the version shape matters here
    "id": "TEST-CALVER-0001",
    "aliases": ["CVE-2099-0001"],
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "certifi"},
            "ranges": [
                {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2023.7.22"}]}
            ],
        }
    ],
}
#: certifi releases, as listed by PyPI (checked when this test was written)
CERTIFI_VERSIONS = ["2022.12.7", "2023.5.7", "2023.7.22", "2023.11.17", "2024.2.2"]


@pytest.mark.parametrize(
    ("new", "expected_codes", "minimal"),
    [
        ("2023.7.22", set(), 1.0),
        ("2023.11.17", {"upgrade.not_minimal"}, 0.5),
        ("2024.2.2", {"upgrade.not_minimal"}, 0.5),
        ("2022.12.7", {"vuln.still_present"}, 0.0),
    ],
)
def test_calendar_versions_have_no_major_line(
    tmp_path: Path, new: str, expected_codes: set[str], minimal: float
) -> None:
    """certifi 2023.x -> 2024.x is next year's bundle, not a breaking major bump."""
    case_dir = _synthetic_case(
        tmp_path,
        CERTIFI_SYNTHETIC,
        {"requirements.txt": "certifi==2023.5.7\n"},
        published=("certifi", CERTIFI_VERSIONS),
    )
    ws = tmp_path / "ws"
    shutil.copytree(case_dir / "input", ws)
    (ws / "requirements.txt").write_text(f"certifi=={new}\n", encoding="utf-8")
    result = run(case_dir, ws)
    assert codes(result) == expected_codes
    assert result["breakdown"]["MINIMAL_UPGRADE"] == minimal


def test_calendar_version_lines() -> None:
    pypi = RUBRIC.PYPI
    assert pypi.line("2023.7.22") == pypi.line("2024.2.2")
    assert pypi.line("20230722") == pypi.line("20240202")
    assert pypi.line("42.0.4") != pypi.line("43.0.0")
    assert pypi.line("0.2.3") != pypi.line("0.3.0")


# --------------------------------------------------------------------------- contract


def test_keys_and_failure_modes_follow_the_contract() -> None:
    keys = [k.value for k in KEYS.BreakdownKey]
    assert keys == [k.name for k in KEYS.BreakdownKey]
    assert set(RUBRIC.WEIGHTS) == set(keys)
    assert sum(RUBRIC.WEIGHTS.values()) == 100
    for key in keys:
        lowered = key.lower()
        for banned in ("confidence", "llm", "self_reported", "model_says"):
            assert banned not in lowered
    taxonomy = yaml.safe_load((BENCH / "failure_modes.yaml").read_text(encoding="utf-8"))
    assert taxonomy["version"] == 1
    modes = taxonomy["failure_modes"]
    for code, spec in modes.items():
        assert not code.startswith(("sut.", "rubric.", "canary."))
        assert spec["severity"] in ("block", "warn", "info")
        assert spec["description"]
    assert modes["vuln.still_present"]["severity"] == "block"
    assert modes["manifest.unparseable"]["severity"] == "block"
    assert modes["lockfile.out_of_sync"]["severity"] == "block"
    assert modes["upgrade.major_bump"]["severity"] == "warn"
    for wrong_fix in (
        "vuln.version_not_published",
        "upgrade.downgrade",
        "manifest.stale_range",
        "manifest.override_missing",
    ):
        assert modes[wrong_fix]["severity"] == "block", wrong_fix
    assert "vuln.version_not_published" in RUBRIC.ZEROING_MODES
    rubric_source = (BENCH / "rubric.py").read_text(encoding="utf-8")
    emitted = {
        code for code in modes if f'"{code}"' in rubric_source
    }  # every code the rubric can emit is in the taxonomy and vice versa
    assert emitted == set(modes)


# --------------------------------------------------------------------------- subprocesses


def _clean_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL") if k in os.environ}
    env.update(TZ="UTC", PYTHONHASHSEED="0")
    return env


def test_rubric_runs_as_an_isolated_subprocess(tmp_path: Path) -> None:
    case_dir = CASES / "npm-json5-CVE-2022-46175"
    ws = workspace(tmp_path, case_dir, fixed=True)
    raw = tomllib.loads((case_dir / "case.toml").read_text(encoding="utf-8"))
    request = {
        "case": raw,
        "case_dir": str(case_dir),
        "harness_output": {
            "workspace": str(ws),
            "diff": "",
            "sut_exit_code": 0,
            "stdout_tail": "",
            "stderr_tail": "",
            "cost_usd": 0.0,
            "duration_s": 1.2,
        },
    }
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = subprocess.run(
        [sys.executable, "-I", str(BENCH / "rubric.py")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_clean_env(),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["case_id"] == "npm-json5-CVE-2022-46175"
    assert result["score"] == 1.0
    assert set(result["breakdown"]) == {k.value for k in KEYS.BreakdownKey}


def run_baseline(ws: Path) -> subprocess.CompletedProcess[str]:
    """The baseline SUT as the harness runs it."""
    return subprocess.run(
        [sys.executable, "-I", str(BENCH / "baseline_sut.py"), str(ws)],
        capture_output=True,
        text=True,
        cwd=ws,
        env=_clean_env(),
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("case_dir", CASE_DIRS, ids=CASE_IDS)
def test_baseline_end_to_end(tmp_path: Path, case_dir: Path) -> None:
    ws = workspace(tmp_path, case_dir, fixed=False)
    proc = run_baseline(ws)
    assert proc.returncode == 0, proc.stderr
    result = run(case_dir, ws)
    assert result["score"] == 1.0, result
    assert result["failure_modes"] == []


def iter_case_files() -> Iterator[Path]:
    """Every file of every case (used to keep the cases free of interpreter droppings)."""
    for case_dir in CASE_DIRS:
        yield from (p for p in case_dir.rglob("*") if p.is_file())


def test_cases_hold_no_bytecode() -> None:
    assert not [p for p in iter_case_files() if p.suffix in (".pyc", ".pyo")]
