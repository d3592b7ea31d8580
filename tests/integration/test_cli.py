"""The codegenie-eval console script and its exit codes (README.md)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_codegenie_eval.cli import main as cli
from tests.conftest import repin, run_cli

TIERS = """# UNCALIBRATED
schema_version: 1
uncalibrated: true
thresholds: {bronze: 0.3, silver: 0.8}
current_tiers: {stub: none}
"""


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from pytest_codegenie_eval.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "print(sorted(m for m in ('pytest', 'pydantic', 'numpy', 'scipy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_bad_arguments_exit_1_not_the_cost_cap_code(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "verify", "--nope").returncode == cli.EXIT_GENERIC


def test_run_exit_codes(pytester: pytest.Pytester, stub_bench: Path) -> None:
    path = pytester.path
    assert run_cli(path, "run", "--codegenie-bench=stub", "-q").returncode == cli.EXIT_OK
    missing = run_cli(path, "run", "--codegenie-bench=nope", "-q")
    assert missing.returncode == cli.EXIT_TASK_CLASS_NOT_REGISTERED
    assert "available: stub" in missing.stderr
    no_root = run_cli(path, "run", "--codegenie-bench=stub", "--codegenie-bench-root=gone")
    assert no_root.returncode == cli.EXIT_BENCH_DIR_MISSING
    failing = run_cli(path, "run", "--codegenie-bench=stub", "--codegenie-sut=noop", "-q")
    assert failing.returncode == cli.EXIT_GENERIC
    agent = path / "costly.py"
    agent.write_text(
        "import json, pathlib, sys\n"
        "p = pathlib.Path(sys.argv[1]) / '.codegenie' / 'sut-result.json'\n"
        "p.write_text(json.dumps({'cost_usd': 1.0}))\n"
        "n = int((pathlib.Path(sys.argv[1]) / 'question.txt').read_text().split()[-1])\n"
        "(pathlib.Path(sys.argv[1]) / 'answer.txt').write_text(str(n + 1))\n"
    )
    capped = run_cli(
        path,
        "run",
        "--codegenie-bench=stub",
        f"--codegenie-sut={sys.executable} costly.py {{workspace}}",  # relative to rootdir
        "--codegenie-max-cost-usd=0.5",
        "--codegenie-no-cache",
    )
    assert capped.returncode == cli.EXIT_COST_CAP, capped.stdout
    (stub_bench / "cases" / "alpha" / "input" / "question.txt").write_text("changed 1\n")
    mismatch = run_cli(path, "run", "--codegenie-bench=stub", "-q")
    assert mismatch.returncode == cli.EXIT_DIGEST_MISMATCH
    strict = run_cli(path, "run", "--codegenie-bench=stub", "--codegenie-strict", "-q")
    assert strict.returncode == cli.EXIT_DIGEST_MISMATCH
    repin(stub_bench)
    report = next((path / ".codegenie" / "eval" / "runs").glob("*.json"))
    report.write_bytes(report.read_bytes() + b" ")
    tampered = run_cli(path, "run", "--codegenie-bench=stub", "-q")
    assert tampered.returncode == cli.EXIT_CHAIN_TAMPER
    assert "does not verify" in tampered.stderr


def test_verify_and_expected_head(pytester: pytest.Pytester, stub_bench: Path) -> None:
    path = pytester.path
    assert run_cli(path, "run", "--codegenie-bench=stub", "-q").returncode == 0
    first = json.loads((path / ".codegenie" / "eval" / "audit.jsonl").read_text())["hash"]
    assert run_cli(path, "run", "--codegenie-bench=stub", "-q").returncode == 0
    clean = run_cli(path, "verify")
    assert clean.returncode == cli.EXIT_OK
    assert "verified-complete 2 / verified-incomplete 0" in clean.stdout
    assert run_cli(path, "verify", "--expected-head", first).returncode == cli.EXIT_OK
    assert run_cli(path, "verify", "--expected-head", "f" * 64).returncode == cli.EXIT_CHAIN_TAMPER
    # a mistyped head is a usage error, not tampering (issue 26)
    typo = run_cli(path, "verify", "--expected-head", first[:20])
    assert typo.returncode == cli.EXIT_GENERIC
    assert "is not a chain head (64 hex digits" in typo.stderr
    chain = path / ".codegenie" / "eval" / "audit.jsonl"
    lines = chain.read_text().splitlines()
    chain.write_text("\n".join(reversed(lines)) + "\n")
    reordered = run_cli(path, "verify")
    assert reordered.returncode == cli.EXIT_CHAIN_TAMPER
    assert "TAMPER:" in reordered.stdout


def test_digests_print_check_write(pytester: pytest.Pytester, stub_bench: Path) -> None:
    path = pytester.path
    printed = run_cli(path, "digests", "--task-class", "stub")
    assert printed.returncode == 0
    assert printed.stdout == (stub_bench / "cases" / "digests.yaml").read_text()
    assert run_cli(path, "digests", "--task-class", "stub", "--check").returncode == 0
    (stub_bench / "cases" / "beta" / "input" / "question.txt").write_text("edited 2\n")
    stale = run_cli(path, "digests", "--task-class", "stub", "--check")
    assert stale.returncode == cli.EXIT_DIGEST_MISMATCH
    assert "stale pin: beta" in stale.stdout
    wrote = run_cli(path, "digests", "--task-class", "stub", "--write")
    assert "re-pinned: beta" in wrote.stdout
    assert run_cli(path, "digests", "--task-class", "stub", "--check").returncode == 0
    unknown = run_cli(path, "digests", "--task-class", "nope")
    assert unknown.returncode == cli.EXIT_TASK_CLASS_NOT_REGISTERED
    # a new, unpinned case: never "pinned None" (issue 26)
    new = stub_bench / "cases" / "delta"
    shutil.copytree(stub_bench / "cases" / "alpha", new)
    (new / "case.toml").write_text((new / "case.toml").read_text().replace('"alpha"', '"delta"', 1))
    unpinned = run_cli(path, "digests", "--task-class", "stub", "--check")
    assert "stale pin: delta: pinned (not pinned) actual " in unpinned.stdout
    assert "None" not in unpinned.stdout
    run = run_cli(path, "run", "--codegenie-bench=stub", "-q")
    assert "`codegenie-eval digests --task-class stub --write`" in run.stdout + run.stderr


def test_version_and_a_closed_pipe(tmp_path: Path) -> None:
    version = run_cli(tmp_path, "--version")
    assert version.returncode == cli.EXIT_OK
    assert version.stdout.startswith("codegenie-eval ")
    # output piped into a reader that is already gone (`| head`): no traceback
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest_codegenie_eval.cli.main", "plan", "--help"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert child.stdout is not None
    assert child.stderr is not None
    child.stdout.close()
    stderr = child.stderr.read().decode()
    child.wait(timeout=60)
    assert "Traceback" not in stderr
    assert "Exception ignored" not in stderr


def test_latest_names_the_newest_complete_run(pytester: pytest.Pytester, stub_bench: Path) -> None:
    path = pytester.path
    assert run_cli(path, "run", "--codegenie-bench=stub", "-q").returncode == 0
    complete = json.loads((path / ".codegenie" / "eval" / "audit.jsonl").read_text())["run_id"]
    assert run_cli(path, "run", "--codegenie-bench=stub", "-q", "-k", "alpha").returncode == 0
    out = run_cli(path, "compare", "latest:stub", "latest:stub", "--json")
    assert out.returncode == cli.EXIT_OK, out.stderr
    # the -k debugging run is newer, but latest: is the newest complete run
    assert json.loads(out.stdout)["b"]["run_id"] == complete


def test_promote_verdict(pytester: pytest.Pytester, stub_bench: Path) -> None:
    path = pytester.path
    (path / "docs").mkdir()
    (path / "docs" / "trust-tiers.yaml").write_text(TIERS)
    assert run_cli(path, "run", "--codegenie-bench=stub", "-q").returncode == 0
    bronze = run_cli(path, "promote-verdict", "--task-class", "stub", "--tier", "bronze")
    assert bronze.returncode == cli.EXIT_OK, bronze.stdout + bronze.stderr
    assert "evidence SUFFICIENT" in bronze.stdout
    silver = run_cli(path, "promote-verdict", "--task-class", "stub", "--tier", "silver")
    assert silver.returncode == cli.EXIT_GENERIC
    assert "lower_bound_95 0.37 < silver threshold 0.80" in silver.stdout
    assert "recommendation:" in silver.stdout
    gold = run_cli(path, "promote-verdict", "--task-class", "stub", "--tier", "gold")
    assert gold.returncode == cli.EXIT_GENERIC
    assert "gold" in gold.stderr
    # a tier without a floor: the class is named by its file, never by the private name its
    # module was imported as
    registration = stub_bench / "registration.py"
    text = registration.read_text()
    assert '"silver": 3' in text
    registration.write_text(text.replace(', "silver": 3', ""))
    floorless = run_cli(path, "promote-verdict", "--task-class", "stub", "--tier", "silver")
    assert floorless.returncode == cli.EXIT_GENERIC
    assert f"min_cases_for_promotion of {registration}::" in floorless.stderr
    assert "_codegenie_bench_" not in floorless.stderr


def test_task_class_without_baseline_fails_each_case_but_reports(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    (stub_bench / "baseline_sut.py").unlink()
    result = pytester.runpytest_subprocess("--codegenie-bench=stub")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        ["*[[]block[]] harness.case_invalid: *no baseline SUT*", "stub: 3 cases, 0 passed*"]
    )


def test_the_console_script_reads_the_projects_pytest_configuration(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    pytester.makepyprojecttoml(
        '[tool.pytest.ini_options]\ncodegenie_state_dir = "ci/state"\n'
        'codegenie_tiers = "ci/tiers.yaml"\n'
    )
    (pytester.path / "ci").mkdir()
    (pytester.path / "ci" / "tiers.yaml").write_text(
        "schema_version: 1\nthresholds: {bronze: 0.5}\n"
    )
    pytester.runpytest_inprocess("-p", "no:cacheprovider", "--codegenie-bench=stub")
    assert (pytester.path / "ci" / "state" / "audit.jsonl").is_file()
    sub = pytester.path / "somewhere" / "deeper"
    sub.mkdir(parents=True)
    # from a subdirectory, like pytest: the rootdir and its ini file are found upwards
    found = run_cli(sub, "verify")
    assert found.returncode == cli.EXIT_OK, found.stderr
    assert "records 1" in found.stdout
    # live: the default state directory holds nothing, so without the ini this fails
    default = run_cli(sub, "verify", "--state-dir", str(pytester.path / ".codegenie" / "eval"))
    assert default.returncode == cli.EXIT_GENERIC
    # the configured tier file (bronze 0.5), not docs/trust-tiers.yaml
    plan = run_cli(sub, "plan", "--tier", "bronze", "--rate", "0.9")
    assert plan.returncode == cli.EXIT_OK, plan.stderr
    assert "bronze 0.50" in plan.stdout


def test_run_speaks_the_designs_interface(pytester: pytest.Pytester, stub_bench: Path) -> None:
    # issue 26: `codegenie-eval run --task-class=...` was a usage error (everything went to
    # pytest); the design's options now map onto the plugin's, JSON lines by default
    path = pytester.path
    out = run_cli(path, "run", "--task-class=stub", "--no-cache", "--max-cost-usd=5")
    assert out.returncode == cli.EXIT_OK, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["type"] for line in lines] == ["case", "case", "case", "aggregate"]
    assert lines[-1]["complete"] is True
    some = run_cli(path, "run", "--task-class=stub", "--cases=alpha,gamma")
    cases = [json.loads(x) for x in some.stdout.splitlines()]
    assert sorted(c["case_id"] for c in cases if c["type"] == "case") == ["alpha", "gamma"]
    assert cases[-1]["complete"] is False  # a subset, like -k
    unknown = run_cli(path, "run", "--task-class=stub", "--cases=alpha,nope")
    assert unknown.returncode == cli.EXIT_GENERIC
    assert "no case 'nope'" in unknown.stdout + unknown.stderr
    (path / "docs").mkdir()
    (path / "docs" / "trust-tiers.yaml").write_text(
        "# UNCALIBRATED thresholds for tests\nschema_version: 1\nuncalibrated: true\n"
        "thresholds: {bronze: 0.3, silver: 0.8}\ncurrent_tiers: {stub: none}\n"
    )
    human = run_cli(path, "run", "--task-class=stub", "--format=human", "--with-verdict")
    assert "codegenie verdict stub → bronze" in human.stdout
    assert run_cli(path, "run", "--task-class=stub", "--concurrency=0").returncode == 1
