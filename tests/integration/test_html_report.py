"""The static results page (issue 16), built from real runs and read in a real, headless
Chromium (Debian's package, driven by Playwright; nothing is downloaded).

The overview lists each task class, the trend chart has one point per chain record, the
case table one row per attempt, a case page shows its diff highlighted, and a hostile SUT's
output stays text. The hostile test also shows the attack is live without the defences:
with autoescaping off and no Content-Security-Policy the SUT's script runs in the viewer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_codegenie_eval.cli import main as cli
from pytest_codegenie_eval.output import html as htmlreport
from pytest_codegenie_eval.output.html import charts
from tests.conftest import REPO, copy_stub, run_cli

BASE = ("-p", "no:cacheprovider")
# What a hostile SUT prints and writes: if any of it runs, the page's <body> is marked.
PAYLOAD = "<script>document.body.setAttribute('data-pwned', 'yes')</script>"
IMG_PAYLOAD = "<img src=x onerror=\"document.body.setAttribute('data-pwned', 'img')\">"
HOSTILE_SUT = f"""
import pathlib, sys
ws = pathlib.Path(sys.argv[1])
n = int((ws / "question.txt").read_text().split()[-1])
(ws / "answer.txt").write_text(f"{{n + 1}}\\n")
(ws / "notes.html").write_text({PAYLOAD!r} + {IMG_PAYLOAD!r} + "\\n")
print({PAYLOAD!r})
print({IMG_PAYLOAD!r}, file=sys.stderr)
"""
ARTIFACTS = Path(os.environ.get("CODEGENIE_TEST_ARTIFACTS", REPO / ".ci-artifacts"))


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    opened = context.new_page()
    opened.requests = requests  # what the test checks: nothing but file:// is ever asked for
    yield opened
    context.close()


def _url(path: Path, fragment: str = "") -> str:
    return path.resolve().as_uri() + fragment


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four runs of ``stub`` (no-op, the baseline labelled ``baseline``, a subset of it, a
    hostile SUT) and one of ``other``, made once for the module (the tests only read them)."""
    root = tmp_path_factory.mktemp("results-page")
    copy_stub(root)
    other = copy_stub(root, "other")
    registration = other / "registration.py"
    registration.write_text(registration.read_text().replace('"stub"', '"other"'))
    (root / "hostile.py").write_text(HOSTILE_SUT)
    (root / "pytest.ini").write_text("[pytest]\n")
    shutil.copy(REPO / "docs" / "trust-tiers.yaml", root / "tiers.yaml")
    for args, code in (
        (("--codegenie-bench=stub", "--codegenie-sut=noop"), cli.EXIT_GENERIC),
        (("--codegenie-bench=stub", "--codegenie-label=baseline"), cli.EXIT_OK),
        (("--codegenie-bench=stub", "--codegenie-label=baseline", "-k", "alpha"), cli.EXIT_OK),
        (("--codegenie-bench=stub", "--codegenie-sut=python hostile.py {workspace}"), 0),
        (("--codegenie-bench=other",), cli.EXIT_OK),
    ):
        done = run_cli(root, "run", *BASE, *args)
        assert done.returncode == code, done.stdout + done.stderr
    return root


@pytest.fixture
def state(project: Path) -> Path:
    return project / ".codegenie" / "eval"


def _build(project: Path, state: Path, out: Path) -> Path:
    built = run_cli(
        project, "report", "--out", str(out), "--state-dir", str(state), "--tiers", "tiers.yaml"
    )
    assert built.returncode == cli.EXIT_OK, built.stderr
    assert "2 task class(es), 5 run(s), 13 attempt(s)" in built.stdout
    return out


def _ready(page: Any) -> None:
    """Wait until the page's script has drawn it, fragments and all."""
    page.wait_for_selector("#app[data-ready=yes][data-pending='0']", state="attached")


def _seqs(state: Path, task_class: str = "stub") -> list[int]:
    return [
        json.loads(line)["seq"]
        for line in (state / "audit.jsonl").read_text().splitlines()
        if json.loads(line)["task_class"] == task_class
    ]


def test_the_site_shows_every_task_class_trend_cases_and_diffs(
    project: Path, state: Path, page: Any, tmp_path: Path
) -> None:
    site = _build(project, state, tmp_path / "site")
    page.goto(_url(site / "index.html"))
    names = page.locator("section.task-class h2").all_inner_texts()
    assert names == ["other", "stub"]
    assert page.locator("#chain-status").inner_text().startswith("audit chain verified")
    head = (state / "audit.jsonl").read_text().splitlines()[-1]
    assert page.locator("#chain-head").inner_text() == json.loads(head)["hash"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "results-overview-1280x800.png"), full_page=True)

    page.goto(_url(site / "tc" / "stub" / "index.html"))
    records = [
        json.loads(line)
        for line in (state / "audit.jsonl").read_text().splitlines()
        if json.loads(line)["task_class"] == "stub"
    ]
    # one series per agent (noop, baseline, the hostile SUT), the -k run apart and hollow
    series = page.locator("#trend").get_attribute("data-agents")
    assert series == "3"
    points = [
        (
            page.locator(f"#{charts.BOUND_COMPLETE_ID.format(index=i)} use").count(),
            page.locator(f"#{charts.BOUND_PARTIAL_ID.format(index=i)} use").count(),
        )
        for i in range(3)
    ]
    assert points == [(1, 0), (1, 1), (1, 0)]
    assert sum(a + b for a, b in points) == len(records)
    assert page.locator("#trend [id^=trend-threshold-]").count() == 3  # bronze, silver, gold
    assert page.locator("table.runs tbody tr").count() == len(records)

    # the case table has one row per case, and filters and sorts in the browser
    cases = page.locator("#cases tbody tr")
    assert cases.count() == 3
    assert page.locator("#cases").get_attribute("data-list-ready") == "3"
    page.fill("#cases input.search", "beta")
    assert cases.count() == 1
    assert cases.first.locator(".c-case").inner_text() == "beta"
    page.goto(_url(site / "tc" / "stub" / "index.html", "#sort=c-case:desc"))
    page.reload()  # a new fragment alone does not load the page again
    assert page.locator("#cases tbody .c-case").all_inner_texts() == ["gamma", "beta", "alpha"]

    # an attempt: breakdown, and the diff the SUT made, highlighted by Pygments
    page.locator("#cases .c-case a", has_text="alpha").click()
    _ready(page)
    assert page.locator("#case-id").inner_text() == "alpha"
    diff = page.locator("#diff .highlight")
    assert "answer.txt" in diff.inner_text()
    assert diff.locator(".gi").count() >= 1  # an inserted line, in Pygments' markup
    assert page.locator("table.breakdown th").all_inner_texts() == [
        "ANSWER_CORRECT",
        "NO_EXTRA_FILES",
    ]
    assert all(url.startswith("file://") for url in page.requests), page.requests


def test_every_run_opens_to_its_cases(
    project: Path, state: Path, page: Any, tmp_path: Path
) -> None:
    site = _build(project, state, tmp_path / "site")
    page.goto(_url(site / "tc" / "stub" / "index.html"))
    rows = page.locator("table.runs tbody tr")
    for number, expected in enumerate((3, 3, 1, 3)):
        page.goto(_url(site / "tc" / "stub" / "index.html"))
        rows.nth(number).locator("a.runid").click()
        _ready(page)
        assert page.locator("#run-cases tbody tr").count() == expected
        assert page.locator("#run-cases").get_attribute("data-list-ready") == str(expected)
    # the newest stub run is the hostile SUT's: its cases, and an attempt opens from here
    assert page.locator("#run-summary").inner_text().count("hostile.py") == 1
    page.locator("#run-cases .r-attempts a", has_text="r1").first.click()
    _ready(page)
    assert page.locator("#case-id").inner_text() == "alpha"
    # the baseline's -k run opens to its one case, and links to compare with its previous run
    page.goto(_url(site / "tc" / "stub" / "run.html", f"#run={_seqs(state)[2]}"))
    _ready(page)
    assert "PARTIAL: subset" in page.locator("#run-summary").inner_text()
    page.locator("#compare-previous").click()
    _ready(page)
    assert (
        page.locator("#app").get_attribute("data-a"),
        page.locator("#app").get_attribute("data-b"),
    ) == (
        str(_seqs(state)[1]),
        str(_seqs(state)[2]),
    )
    assert all(url.startswith("file://") for url in page.requests), page.requests


def test_a_case_history_lists_every_run_of_the_case(
    project: Path, state: Path, page: Any, tmp_path: Path
) -> None:
    site = _build(project, state, tmp_path / "site")
    page.goto(_url(site / "tc" / "stub" / "index.html"))
    page.locator("#cases tr", has_text="alpha").locator(".c-history a").click()
    _ready(page)
    assert page.locator("#case-id").inner_text() == "alpha"
    history = page.locator("#case-history tbody tr")
    assert history.count() == 4  # noop, baseline, baseline -k alpha, hostile
    assert page.locator("#case-history .h-agent").all_inner_texts().count("baseline") == 2
    agents = page.locator("#case-agents tbody tr")
    assert agents.count() == 3
    baseline = page.locator("#case-agents tr", has_text="baseline")
    assert baseline.locator(".a-attempts").inner_text() == "2"
    assert baseline.locator(".a-flaky").inner_text() == "0.00"  # passed both times
    noop = page.locator("#case-agents tr", has_text="noop")
    assert noop.locator(".a-rate").inner_text() == "0.0%"
    # each row links to its attempt
    history.first.locator(".h-attempts a").click()
    _ready(page)
    assert page.locator("#case-id").inner_text() == "alpha"
    assert "hostile.py" in page.locator("#attempt").inner_text()  # the newest run's attempt
    beta = page.locator("#case-history tbody tr")
    page.goto(_url(site / "tc" / "stub" / "case.html", "#case=beta"))
    _ready(page)
    assert beta.count() == 3  # the -k run did not run beta


def test_a_hostile_sut_output_is_shown_as_text(
    project: Path, state: Path, page: Any, tmp_path: Path
) -> None:
    site = _build(project, state, tmp_path / "site")
    page.goto(_url(site / "tc" / "stub" / "attempt.html", "#case=alpha"))
    _ready(page)
    assert page.locator("body").get_attribute("data-pwned") is None
    assert page.locator("#stdout").inner_text().strip() == PAYLOAD
    assert page.locator("#stderr").inner_text().strip() == IMG_PAYLOAD
    assert PAYLOAD in page.locator("#diff").inner_text()  # the file the SUT wrote
    assert page.locator("#stdout script, #stderr img, #diff script, #diff img").count() == 0
    # the raw diff the page links to is text too, not a page the SUT wrote
    raw = page.locator("#diff a", has_text="raw diff").get_attribute("href")
    assert raw is not None
    page.goto(_url(site / "tc" / "stub" / raw))
    assert PAYLOAD in page.content().replace("&lt;", "<").replace("&gt;", ">")
    assert page.evaluate("document.body && document.body.getAttribute('data-pwned')") is None
    assert page.locator("script, img").count() == 0


@pytest.mark.parametrize(
    ("as_text", "csp", "runs"),
    [(False, False, True), (False, True, False), (True, False, False)],
    ids=["no-defence", "csp-only", "text-only"],
)
def test_each_defence_alone_stops_the_hostile_output(
    project: Path,
    state: Path,
    page: Any,
    tmp_path: Path,
    as_text: bool,
    csp: bool,
    runs: bool,
) -> None:
    """The page script sets every string from a report as text, and the
    Content-Security-Policy runs no inline script: each stops the SUT's markup on its own;
    with both removed it runs (the attack is live, so the test above can fail)."""
    site = _build(project, state, tmp_path / "site")
    script = site / "static" / "site.js"
    source = script.read_text()
    assert "node.textContent = String(attrs[key]);" in source
    if not as_text:
        script.write_text(
            source.replace("node.textContent = String(attrs[key]);", "node.innerHTML = attrs[key];")
        )
    attempt = site / "tc" / "stub" / "attempt.html"
    if not csp:
        attempt.write_text(
            re.sub(r"<meta http-equiv=\"Content-Security[^>]*>", "", attempt.read_text())
        )
    page.goto(_url(attempt, "#case=alpha"))
    _ready(page)
    page.wait_for_timeout(200)  # an onerror handler runs once the broken image fails
    pwned = page.locator("body").get_attribute("data-pwned")
    assert (pwned is not None) is runs, pwned


def test_the_pages_fit_a_phone(project: Path, state: Path, browser: Any, tmp_path: Path) -> None:
    site = _build(project, state, tmp_path / "site")
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone = context.new_page()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for page_path, fragment in (
        ("index.html", ""),
        ("tc/stub/index.html", ""),
        ("tc/stub/run.html", "#run=latest"),
        ("tc/stub/case.html", "#case=alpha"),
        ("tc/stub/attempt.html", "#case=alpha"),
        ("tc/stub/compare.html", ""),
    ):
        phone.goto(_url(site / page_path, fragment))
        if fragment or "compare" in page_path:
            _ready(phone)
        width = phone.evaluate("[document.documentElement.scrollWidth, 390]")
        assert width[0] <= width[1], (page_path, width)  # wide tables scroll in their box
        name = page_path.replace("/", "-").replace(".html", "")
        phone.screenshot(path=str(ARTIFACTS / f"results-{name}-390x844.png"), full_page=True)
    context.close()


def test_compare_any_two_runs_chosen_in_the_page(
    project: Path, state: Path, page: Any, tmp_path: Path
) -> None:
    """The compare page pairs any two runs picked in it, with the numbers `codegenie-eval
    compare` prints for them, and its rows link to both attempts."""
    runs = sorted((state / "runs").glob("*-stub.json"))
    out = tmp_path / "site"
    built = run_cli(
        project,
        "report",
        "--out",
        str(out),
        "--state-dir",
        str(state),
        "--task-class",
        "stub",
        "--compare",
        str(runs[0]),
        str(runs[1]),
    )
    assert built.returncode == cli.EXIT_OK, built.stderr
    assert not (out / "tc" / "other").exists()  # --task-class builds that one only
    page.goto(_url(out / "tc" / "stub" / "compare.html"))
    _ready(page)
    seqs = _seqs(state)
    assert page.locator("#app").get_attribute("data-a") == str(seqs[0])  # as asked
    for a, b in ((0, 1), (0, 3), (3, 1), (1, 2)):
        page.select_option("#pick-a", str(seqs[a]))
        page.select_option("#pick-b", str(seqs[b]))
        page.wait_for_selector(f"#app[data-a='{seqs[a]}'][data-b='{seqs[b]}']", state="attached")
        expected = json.loads(
            run_cli(project, "compare", str(runs[a]), str(runs[b]), "--json").stdout
        )
        rows = dict(
            zip(
                page.locator("#paired th").all_inner_texts(),
                page.locator("#paired td").all_inner_texts(),
                strict=True,
            )
        )
        assert rows["paired cases"] == str(expected["paired"])
        assert rows["mean difference"] == f"{expected['mean_delta']:+.3f}"
        assert rows["95% lower bound on the difference"] == (
            f"{expected['lower_bound_delta_95']:+.3f} ({expected['bound_method']})"
        )
        assert page.locator("#deltas tbody tr").count() == expected["paired"]
    # a row links to both attempts
    row = page.locator("#deltas tbody tr").first
    row.locator(".d-b a").click()
    _ready(page)
    assert page.locator("#case-id").inner_text() == "alpha"
    assert all(url.startswith("file://") for url in page.requests), page.requests


def test_session_end_builds_the_page_and_a_missing_state_dir_is_an_error(
    pytester: pytest.Pytester, stub_bench: Path
) -> None:
    result = pytester.runpytest_inprocess(*BASE, "--codegenie-bench=stub", "--codegenie-html=html")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([f"results page: {pytester.path / 'html' / 'index.html'}"])
    assert (pytester.path / "html" / "tc" / "stub" / "attempt.html").is_file()
    missing = run_cli(pytester.path, "report", "--out", "x", "--state-dir", "nowhere")
    assert missing.returncode == cli.EXIT_GENERIC
    assert "state directory nowhere does not exist" in missing.stderr


def test_a_tampered_report_or_diff_is_flagged_never_shown_as_recorded(
    project: Path, tmp_path: Path
) -> None:
    """Whoever edits a report or a kept diff after the fact does not get it onto the page
    as if it had been recorded."""
    state = tmp_path / "state"
    shutil.copytree(project / ".codegenie" / "eval", state)
    newest = sorted((state / "runs").glob("*-stub.json"))[-1]
    report = json.loads(newest.read_text())
    alpha = next(c for c in report["cases"] if c["case_id"] == "alpha")
    diff = state / "diffs" / alpha["diff_digest"][:2] / f"{alpha['diff_digest']}.diff"
    diff.write_text("+ an edited diff\n")
    # the attack is live: the edited bytes sit where the page reads the recorded diff from
    from pytest_codegenie_eval.store.statedir import read_diff

    assert diff.read_text() == "+ an edited diff\n"
    assert read_diff(state / "diffs", alpha["diff_digest"]) is None  # the digest check
    out = htmlreport.build_site(state, tmp_path / "site").index.parent
    fragment = (out / "diffs" / f"{alpha['diff_digest']}.js").read_text()
    assert "an edited diff" not in fragment
    assert "no longer matches its recorded digest" in fragment
    assert not (out / "diffs" / f"{alpha['diff_digest']}.diff").exists()  # no raw copy either

    report["cases"][0]["score"] = 0.5
    newest.write_text(json.dumps(report, indent=2) + "\n")
    htmlreport.build_site(state, tmp_path / "site")
    overview = (out / "index.html").read_text()
    assert "audit chain DOES NOT VERIFY" in overview
    assert "report does not match its record" in overview


@pytest.mark.parametrize("module", ["jinja2", "pygments", "matplotlib"])
def test_without_the_html_extra_the_error_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch, module: str, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # an import of it now fails
    with pytest.raises(htmlreport.HtmlDependencyMissing, match=r"\[html\]") as err:
        htmlreport.build_site(tmp_path, tmp_path / "site")
    assert module in str(err.value)


def test_a_session_asking_for_the_page_without_the_extra_stops_before_any_case(
    pytester: pytest.Pytester, stub_bench: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "jinja2", None)
    result = pytester.runpytest_inprocess(*BASE, "--codegenie-bench=stub", "--codegenie-html=x")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "pytest-codegenie-eval[html]" in result.stderr.str()
    assert not (pytester.path / ".codegenie" / "eval" / "runs").exists()


def test_a_shard_jobs_page_shows_its_shard(pytester: pytest.Pytester, stub_bench: Path) -> None:
    """A CI shard job's own page: no whole run is recorded, so its shard is shown as one."""
    result = pytester.runpytest_inprocess(
        *BASE, "--codegenie-bench=stub", "--codegenie-shard=2/3", "--codegenie-html=html"
    )
    result.assert_outcomes(passed=1, deselected=2)
    overview = (pytester.path / "html" / "index.html").read_text()
    assert "shard 2/3" in overview
    data = (pytester.path / "html" / "tc" / "stub" / "data" / "index.js").read_text()
    assert '"state":"shard 2/3"' in data


def test_the_verdict_is_judged_from_the_chain_not_read_from_a_file(
    project: Path, tmp_path: Path
) -> None:
    """A recommendation file is not chained: whoever writes one could put "SUFFICIENT" on
    the page. With the bench root the page judges the evidence itself; without it, a file
    is shown only when it matches the chain, and says where it came from."""
    state = tmp_path / "state"
    shutil.copytree(project / ".codegenie" / "eval", state)
    done = run_cli(
        project,
        "promote-verdict",
        "--task-class=stub",
        "--tier=bronze",
        f"--state-dir={state}",
        "--tiers=tiers.yaml",
    )
    assert "evidence INSUFFICIENT" in done.stdout
    (genuine,) = (state / "recommendations").glob("*.json")
    forged = json.loads(genuine.read_text())
    forged["verdict"].update(evidence_sufficient=True, reasons=[], next_step=None)
    (state / "recommendations" / "29991231T000000Z-stub-bronze.json").write_text(json.dumps(forged))

    def overview(**kwargs: Any) -> str:
        out = tmp_path / f"site-{len(kwargs)}"
        htmlreport.build_site(state, out, tiers_path=project / "tiers.yaml", **kwargs)
        return (out / "index.html").read_text()

    judged = overview(bench_root=project / "bench")
    stub = judged[judged.index('data-task-class="stub"') :]
    assert "bronze: evidence INSUFFICIENT" in stub
    assert "judged from the audit chain when this page was built" in stub
    # the attack is live without judging: the forged file matches the chain, so it shows
    shown = overview()
    stub = shown[shown.index('data-task-class="stub"') :]
    assert "bronze: evidence SUFFICIENT" in stub
    assert "29991231T000000Z-stub-bronze.json" in stub  # and says which file it is
    # a file judged at a head this chain never had is set aside altogether
    forged["verdict"]["chain_head"] = "f" * 64
    (state / "recommendations" / "29991231T000000Z-stub-bronze.json").write_text(json.dumps(forged))
    aside = overview()
    stub = aside[aside.index('data-task-class="stub"') :]
    assert "bronze: evidence INSUFFICIENT" in stub
    assert "1 newer recommendation file set aside" in stub
