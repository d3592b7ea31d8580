"""What invalidates cached scores: rubric edits, case edits (after re-pinning), SUT changes."""

from __future__ import annotations

import pytest

from tests.integration.spawns import count_spawns
from tests.integration.test_benches_e2e import VULN, case_count, copy_bench

N = case_count(VULN)


def test_cache_invalidation(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = copy_bench(pytester.path, VULN)
    spawned = count_spawns(monkeypatch)
    pytester.runpytest_inprocess(f"--codegenie-bench={VULN}").assert_outcomes(passed=N)

    def rerun() -> pytest.RunResult:
        spawned.clear()
        return pytester.runpytest_inprocess(f"--codegenie-bench={VULN}")

    # a whitespace edit of rubric.py invalidates every entry of the task class
    rubric = bench / "rubric.py"
    rubric.write_text(rubric.read_text() + "\n")
    rerun().stdout.fnmatch_lines([f"*cache hits 0/{N}*"])
    assert rerun().stdout.str().count(f"cache hits {N}/{N}") == 1

    # a whitespace edit of one case.toml: refused until re-pinned, then exactly one miss
    case_dir = sorted(p for p in (bench / "cases").iterdir() if p.is_dir())[0]
    toml = case_dir / "case.toml"
    toml.write_text(toml.read_text() + "\n")
    refused = rerun()
    refused.assert_outcomes(passed=N - 1, failed=1)
    refused.stdout.fnmatch_lines(["*harness.digest_mismatch*"])
    from pytest_codegenie_eval.taskclass.digests import write_digests

    write_digests(bench / "cases")
    repinned = rerun()
    repinned.assert_outcomes(passed=N)
    repinned.stdout.fnmatch_lines([f"*cache hits {N - 1}/{N}*"])
    assert len(spawned) == 2

    # another SUT command invalidates everything
    other = pytester.runpytest_inprocess(f"--codegenie-bench={VULN}", "--codegenie-sut=noop")
    other.stdout.fnmatch_lines([f"*cache hits 0/{N}*"])

    # so does an edit of the SUT's code (here the baseline script, by one blank line)
    assert rerun().stdout.str().count(f"cache hits {N}/{N}") == 1
    script = bench / "baseline_sut.py"
    script.write_text(script.read_text() + "\n")
    rerun().stdout.fnmatch_lines([f"*cache hits 0/{N}*"])
    assert len(spawned) == 2 * N


@pytest.mark.parametrize("edited", ["task.md", "helper.py"])
def test_task_definition_edits_miss_the_cache(pytester: pytest.Pytester, edited: str) -> None:
    from tests.conftest import copy_stub

    bench = copy_stub(pytester.path)
    (bench / "helper.py").write_text("X = 1\n")
    pytester.runpytest_subprocess("--codegenie-bench=stub").assert_outcomes(passed=3)
    warm = pytester.runpytest_subprocess("--codegenie-bench=stub")
    warm.stdout.fnmatch_lines(["*cache hits 3/3*"])
    path = bench / edited
    path.write_text(path.read_text() + "\n")
    cold = pytester.runpytest_subprocess("--codegenie-bench=stub")
    cold.stdout.fnmatch_lines(["*cache hits 0/3*"])
    (bench / "README.md").write_text("notes do not change a score\n")
    readme = pytester.runpytest_subprocess("--codegenie-bench=stub")
    readme.stdout.fnmatch_lines(["*cache hits 3/3*"])
