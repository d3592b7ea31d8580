"""Read-only commands work on a read-only state directory, and a recommendation that
cannot be written never costs the verdict or the rest of session end (issue 25, items 5
and 8). The directory is made read-only with a bind mount inside a bubblewrap namespace, so
the test holds for a root harness (root ignores file modes) and leaves nothing on the host."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_codegenie_eval.cli import main as cli
from tests.conftest import copy_stub

BASE = ("-p", "no:cacheprovider", "--codegenie-bench=stub")
TIERS = """# UNCALIBRATED thresholds for tests
schema_version: 1
uncalibrated: true
thresholds: {bronze: 0.3, silver: 0.8}
current_tiers: {stub: none}
"""


def _read_only(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``codegenie-eval ARGS`` with ``state`` mounted read-only (everything else as is)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        pytest.skip("bubblewrap is not installed: no way to mount the state read-only")
    probe = subprocess.run([bwrap, "--dev-bind", "/", "/", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"bubblewrap cannot create a namespace here: {probe.stderr!r}")
    argv = [bwrap, "--dev-bind", "/", "/", "--ro-bind", str(state), str(state)]
    argv += [sys.executable, "-m", "pytest_codegenie_eval.cli.main", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def state(pytester: pytest.Pytester) -> Path:
    copy_stub(pytester.path)
    (pytester.path / "docs").mkdir()
    (pytester.path / "docs" / "trust-tiers.yaml").write_text(TIERS)
    pytester.runpytest_inprocess(*BASE).assert_outcomes(passed=3)
    return pytester.path / ".codegenie" / "eval"


def test_a_read_only_state_directory_is_really_read_only(state: Path) -> None:
    # live: the bind mount refuses writes even for a root harness
    probe = _read_only(state, "repair", "--state-dir", str(state))
    assert probe.returncode == cli.EXIT_GENERIC
    assert "cannot be changed (Read-only file system)" in probe.stderr
    assert "Traceback" not in probe.stderr


def test_read_only_commands_work_on_a_read_only_state_directory(
    pytester: pytest.Pytester, state: Path
) -> None:
    verify = _read_only(state, "verify", "--state-dir", str(state))
    assert verify.returncode == cli.EXIT_OK, verify.stderr
    dry = _read_only(state, "repair", "--dry-run", "--state-dir", str(state))
    assert dry.returncode == cli.EXIT_OK, dry.stderr
    assert "nothing to repair" in dry.stdout
    compare = _read_only(state, "compare", "latest:stub", "latest:stub", "--state-dir", str(state))
    assert compare.returncode == cli.EXIT_OK, compare.stderr
    site = pytester.path / "site"
    page = _read_only(
        state,
        "report",
        f"--state-dir={state}",
        f"--out={site}",
        f"--bench-root={pytester.path / 'bench'}",
        f"--tiers={pytester.path / 'docs' / 'trust-tiers.yaml'}",
    )
    assert page.returncode == cli.EXIT_OK, page.stdout + page.stderr
    assert (site / "index.html").is_file()
    judge = _read_only(
        state,
        "promote-verdict",
        "--task-class=stub",
        "--tier=bronze",
        f"--state-dir={state}",
        f"--bench-root={pytester.path / 'bench'}",
        f"--tiers={pytester.path / 'docs' / 'trust-tiers.yaml'}",
    )
    # the verdict is given and its exit status kept; only the file is missing, and said so
    assert judge.returncode == cli.EXIT_OK, judge.stderr
    assert "codegenie verdict stub → bronze: evidence SUFFICIENT" in judge.stdout
    assert "the recommendation could not be written: Read-only file system" in judge.stderr
    assert "Traceback" not in judge.stderr + judge.stdout


def test_a_recommendation_that_cannot_be_written_keeps_the_summary_and_the_verdict(
    pytester: pytest.Pytester, state: Path
) -> None:
    # a file where the recommendations directory goes: creating it fails as a full or
    # read-only disk would, for root too
    shutil.rmtree(state / "recommendations", ignore_errors=True)
    (state / "recommendations").write_text("not a directory\n")
    result = pytester.runpytest_inprocess(*BASE, "--codegenie-verdict=bronze")
    out = result.stdout.str()
    assert "INTERNALERROR" not in out
    result.stdout.fnmatch_lines(
        [
            "stub: 3 cases, 3 passed*",
            "*codegenie verdict stub → bronze: evidence SUFFICIENT*",
            "WRITE ERROR: stub: *recommendations: the recommendation could not be written*",
        ]
    )
    # the verdict was asked for, so a run that could not deliver it does not exit 0
    assert result.ret == pytest.ExitCode.TESTS_FAILED
