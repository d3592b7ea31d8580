"""The results page's any-pair comparison (computed in the browser, from the recorded
scores) gives the figures ``codegenie-eval compare`` gives, run against
:func:`~pytest_codegenie_eval.evidence.compare.compare` in a real headless Chromium.

Synthetic runs of three shapes: pass/fail at one attempt (the exact discordant bound),
graded (the betting bound on (d + 1) / 2), and pass/fail repeated three times (graded per
case means, so betting too), with cases only one side holds.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pytest_codegenie_eval.evidence.aggregate import build_report
from pytest_codegenie_eval.evidence.compare import compare
from pytest_codegenie_eval.models import BenchRunReport, CaseResult
from pytest_codegenie_eval.output import html as htmlreport
from pytest_codegenie_eval.store.audit import write_run_record

START = datetime(2026, 1, 1, tzinfo=UTC)


def _report(
    task_class: str, rng: random.Random, n: int, skill: float, *, kind: str, repeats: int, at: int
) -> BenchRunReport:
    results = []
    for i in range(n):
        for r in range(1, repeats + 1):
            if kind == "pass_fail":
                score = 1.0 if rng.random() < skill else 0.0
            else:
                score = round(min(1.0, max(0.0, rng.gauss(skill, 0.25))), 3)
            results.append(
                CaseResult(
                    task_class=task_class,
                    case_id=f"case-{i:03d}",
                    score=score,
                    passed=score >= 1.0 if kind == "pass_fail" else score >= 0.6,
                    repeat=r,
                    case_digest=f"{i:064x}",
                    sut="synthetic",
                )
            )
    return build_report(
        task_class,
        results,
        harness_version="test",
        created_at=START + timedelta(minutes=at),
        repeats=repeats,
        scores="pass_fail" if kind == "pass_fail" else "graded",
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[BenchRunReport]]]:
    state = tmp_path_factory.mktemp("state")
    rng = random.Random(20261206)
    made: dict[str, list[BenchRunReport]] = {}
    at = 0
    for task_class, kind, repeats, sizes in (
        ("pf", "pass_fail", 1, (40, 40, 37, 12)),
        ("graded", "graded", 1, (30, 30, 28)),
        ("repeated", "pass_fail", 3, (20, 20)),
    ):
        for n in sizes:
            at += 1
            report = _report(
                task_class, rng, n, rng.uniform(0.3, 0.8), kind=kind, repeats=repeats, at=at
            )
            write_run_record(report, state)
            made.setdefault(task_class, []).append(report)
    out = tmp_path_factory.mktemp("site")
    htmlreport.build_site(state, out)
    return out, made


def _seqs(out: Path, task_class: str) -> list[int]:
    text = (out / "tc" / task_class / "data" / "index.js").read_text()
    payload = json.loads(text[len("CG.index(") : text.rindex(")")])
    return [run["seq"] for run in payload["runs"]]


@pytest.mark.parametrize("task_class", ["pf", "graded", "repeated"])
def test_the_page_compares_as_the_command_does(
    site: tuple[Path, dict[str, list[BenchRunReport]]], browser: Any, task_class: str
) -> None:
    out, made = site
    reports = made[task_class]
    seqs = _seqs(out, task_class)
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        url = (out / "tc" / task_class / "compare.html").resolve().as_uri()
        for a in range(len(reports)):
            for b in range(len(reports)):
                if a == b:
                    continue
                page.goto(f"{url}#a={seqs[a]}&b={seqs[b]}")
                page.wait_for_selector("#app[data-ready=yes]", state="attached")
                got = json.loads(page.locator("#app").get_attribute("data-figures") or "{}")
                want = compare(reports[a], reports[b])
                assert got["paired"] == len(want.paired)
                assert got["bound_method"] == want.bound_method
                assert (got["b_better"], got["a_better"]) == (
                    want.discordant_b_better,
                    want.discordant_a_better,
                )
                for key, expected in (
                    ("mean_delta", want.mean_delta),
                    ("lower_bound_delta_95", want.lower_bound_delta),
                    ("low", want.estimate_low),
                    ("high", want.estimate_high),
                    ("correlation", want.correlation),
                    ("p_two_sided", want.mcnemar_p_two_sided),
                    ("p_b_better", want.mcnemar_p_b_better),
                ):
                    if expected is None:
                        assert got[key] is None, key
                    else:
                        assert got[key] == pytest.approx(expected, abs=1e-7), (key, a, b)
        assert errors == []
    finally:
        context.close()
