"""A warm rerun of the vuln-remediation bench is served entirely from the cache."""

from __future__ import annotations

import pytest

from tests.conftest import read_jsonl
from tests.integration.spawns import count_spawns
from tests.integration.test_benches_e2e import VULN, case_count, copy_bench

N = case_count(VULN)


def test_warm_rerun_hits_the_cache_for_every_case(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy_bench(pytester.path, VULN)
    spawned = count_spawns(monkeypatch)
    pytester.runpytest_inprocess(f"--codegenie-bench={VULN}").assert_outcomes(passed=N)
    assert len(spawned) == 2 * N  # one SUT and one rubric per case
    spawned.clear()
    warm = pytester.runpytest_inprocess(f"--codegenie-bench={VULN}", "--codegenie-jsonl=warm.jsonl")
    warm.assert_outcomes(passed=N)
    assert spawned == []
    lines = read_jsonl(pytester.path / "warm.jsonl")
    cases = [c for c in lines if c["type"] == "case"]
    assert all(c["cached"] is True for c in cases)
    assert sum(float(c["cost_usd"]) for c in cases) == 0.0
    assert lines[-1]["total_cost_usd"] == 0.0
    warm.stdout.fnmatch_lines([f"*cache hits {N}/{N}*"])
    bypass = pytester.runpytest_inprocess(f"--codegenie-bench={VULN}", "--codegenie-no-cache")
    bypass.stdout.fnmatch_lines([f"*cache hits 0/{N}*"])
