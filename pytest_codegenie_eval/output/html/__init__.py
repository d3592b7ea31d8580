"""The static results page: ``codegenie-eval report --out DIR`` and ``--codegenie-html=DIR``.

A self-contained site (no server, no CDN, no request to anywhere: open ``DIR/index.html``
from disk, or keep it as a CI artifact)::

    index.html                        overview: the latest run of every task class
    tc/<task class>/index.html        trend per agent, every recorded run (each opens to its
                                      cases), the latest run's cases, the gateway's metering
    tc/<task class>/run.html#run=SEQ  one run: its cases, repeats per case (pass rate,
                                      pass@k, pass^k), links to each attempt
    tc/<task class>/case.html#case=ID one case over every run of it: score, passed, cost and
                                      duration per run, flakiness per agent
    tc/<task class>/attempt.html#run=SEQ&case=ID&attempt=R
                                      one attempt: breakdown, failure modes, diff, the model
                                      gateway's metering and transcript, output
    tc/<task class>/compare.html#a=SEQ&b=SEQ
                                      any two runs chosen in the page, paired
    tc/<task class>/data/             index.js (every run's summary and per-case figures) and
                                      run-<seq>.js (each run report's own bytes)
    diffs/<digest>.diff, .js          the raw diffs and their highlighted fragments
    transcripts/<digest>.jsonl, .js   the raw model transcripts and their rendered fragments
    static/                           stylesheet, List.js and jStat (MIT), the page scripts

The overview and the task class page are rendered at build time. The run, case, attempt and
compare pages are drawn in the browser by ``static/site.js`` from the data files (which is
what keeps a build linear in runs × cases: no page per attempt is rendered); every string from
a report is set as text there, and the only markup inserted is the diff and transcript
fragments the build rendered with escaping. The comparison recomputes the figures
``codegenie-eval compare`` prints, with the same constants (carried in ``data/index.js``).

Templates are Jinja2 with autoescaping on (every string from a case, a rubric or a SUT is
text, never markup), diffs are highlighted by Pygments, the trend chart is SVG drawn by
matplotlib at build time. Those three come with the ``html`` extra
(``pip install 'pytest-codegenie-eval[html]'``); without it the command says so.
"""

from __future__ import annotations

import gc
import importlib.resources
import json
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pytest_codegenie_eval.errors import CodegenieEvalError
from pytest_codegenie_eval.models import CaseResult
from pytest_codegenie_eval.output.html.data import (
    SiteData,
    TaskClassView,
    agent_of,
    collect,
    index_payload,
    run_state,
    run_totals,
    transcript_view,
)
from pytest_codegenie_eval.registry import TaskClass
from pytest_codegenie_eval.store.audit import VerifyResult
from pytest_codegenie_eval.store.reports import read_bytes
from pytest_codegenie_eval.store.statedir import read_diff

__all__ = ["HtmlDependencyMissing", "SiteSummary", "build_site", "require"]

# Pygments is fast, but a multi-megabyte diff is not something to read in a browser: past
# this, the page shows the first part highlighted and links the whole raw diff.
MAX_HIGHLIGHTED_DIFF = 256 * 1024
_EXTRA = "pip install 'pytest-codegenie-eval[html]'"


class HtmlDependencyMissing(CodegenieEvalError):
    """Jinja2, Pygments or matplotlib is not installed."""

    def __init__(self, module: str) -> None:
        super().__init__(
            f"the results page needs {module}, which is not installed: {_EXTRA} "
            "(the html extra: Jinja2, Pygments, matplotlib)"
        )


@dataclass(frozen=True)
class SiteSummary:
    """What was built."""

    index: Path
    task_classes: int
    runs: int
    attempts: int  # case attempts the pages show (every run's)


def require() -> None:
    """Raise :class:`HtmlDependencyMissing` unless the html extra is installed."""
    for module in ("jinja2", "pygments", "matplotlib"):
        try:
            __import__(module)
        except ImportError as exc:
            raise HtmlDependencyMissing(module) from exc


def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("pytest_codegenie_eval.output.html", "templates"),
        autoescape=True,  # every template is HTML
        undefined=jinja2.StrictUndefined,  # a typo in a template fails the build
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


STATIC_FILES = (
    "style.css",
    "report.js",
    "site.js",
    "list.min.js",
    "list.js.LICENSE",
    "jstat.min.js",
    "jstat.LICENSE",
)


def _copy_static(out: Path) -> None:
    from pygments.formatters import HtmlFormatter

    static = out / "static"
    static.mkdir(parents=True, exist_ok=True)
    source = importlib.resources.files("pytest_codegenie_eval.output.html") / "static"
    for name in STATIC_FILES:
        (static / name).write_bytes((source / name).read_bytes())
    formatter: Any = HtmlFormatter(style="default")  # get_style_defs is untyped in the stubs
    _write(static / "pygments.css", formatter.get_style_defs(".highlight"))


def _tokens(value: int) -> str:
    """A count with thousands separators: ``12,345``."""
    return f"{value:,}"


def _usd(value: float | None) -> str:
    """An amount of US dollars to four decimals: ``1,234.5678 USD``."""
    return "n/a" if value is None else f"{value:,.4f} USD"


def _latency(seconds: float | None) -> str:
    """A latency in milliseconds below a second (``830 ms``), else in seconds (``2.41 s``)."""
    if seconds is None:
        return "n/a"
    return f"{seconds * 1000:,.0f} ms" if seconds < 1 else f"{seconds:,.2f} s"


FORMATS: dict[str, Any] = {"tokens": _tokens, "usd": _usd, "latency": _latency}
"""The number formats the templates call (passed with every page, not registered as filters:
a page renders the same under any Jinja2 environment)."""


_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def _js(call: str, *args: object) -> str:
    """A data file: one call of the page script with JSON arguments (a JSON value is a
    JavaScript expression; the page loads it as a script file of its own origin, since a
    page opened from disk may not fetch)."""
    return f"{call}({','.join(json.dumps(a, separators=(',', ':')) for a in args)});\n"


def _highlight(text: str) -> tuple[str, str]:
    """A diff as highlighted markup (Pygments escapes every character of it) and a note
    when only its first part is shown."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import DiffLexer

    note = ""
    shown = text
    if len(text) > MAX_HIGHLIGHTED_DIFF:
        shown = text[:MAX_HIGHLIGHTED_DIFF]
        note = (
            f"the first {MAX_HIGHLIGHTED_DIFF // 1024} KiB of {len(text) // 1024} KiB; "
            "the raw diff has all of it"
        )
    return highlight(shown, DiffLexer(), HtmlFormatter(cssclass="highlight")), note


def _write_diff(site: SiteData, out: Path, digest: str) -> None:
    """``diffs/<digest>.js`` (the highlighted diff an attempt page shows, or why there is
    none) and the raw ``diffs/<digest>.diff``, written only from bytes that verified."""
    text = read_diff(site.diffs_dir, digest)
    if text is None:
        fragment = {
            "missing": f"diff {digest[:16]}… is missing from the state directory or no longer "
            "matches its recorded digest"
        }
    else:
        (out / "diffs" / f"{digest}.diff").write_text(text, encoding="utf-8")
        html, note = _highlight(text)
        fragment = {"html": html, "note": note, "raw": f"{digest}.diff"}
    _write(out / "diffs" / f"{digest}.js", _js("CG.fragment", "diff", digest, fragment))


def _write_transcript(
    env: Any, site: SiteData, out: Path, case: CaseResult
) -> tuple[float, ...] | None:
    """``transcripts/<digest>.js`` (the transcript an attempt page shows: rendered by the
    autoescaping templates, or why it cannot be) and the raw ``.jsonl``; returns its calls'
    latencies (``None`` when it cannot be read or a call has none)."""
    view = transcript_view(site.transcripts_dir, case)
    if view is None or not view.digest:
        return None
    if view.transcript is None:
        fragment: dict[str, object] = {"missing": view.note}
    else:
        (out / "transcripts" / f"{view.digest}.jsonl").write_bytes(view.data)
        fragment = {
            "html": env.get_template("_transcript.html.j2").render(tx=view, **FORMATS),
            "raw": f"{view.digest}.jsonl",
        }
    _write(
        out / "transcripts" / f"{view.digest}.js",
        _js("CG.fragment", "transcript", view.digest, fragment),
    )
    return view.latencies


def _trend(site: SiteData, view: TaskClassView) -> tuple[str, dict[str, float], list[str]]:
    from pytest_codegenie_eval.output.html.charts import TrendPoint, agents_in_order, trend_svg

    points = [
        TrendPoint(
            position=index,
            lower_bound_95=run.report.lower_bound_95,
            mean=run.report.mean,
            complete=run.report.complete,
            agent=agent_of(run.report),
        )
        for index, run in enumerate(view.runs, start=1)
        if run.report is not None
    ]
    thresholds = dict(site.tiers.thresholds) if site.tiers is not None else {}
    return trend_svg(points, thresholds), thresholds, agents_in_order(points)


def _compare_default(view: TaskClassView) -> tuple[int, int] | None:
    if view.compare_a is None or view.compare_b is None:
        return None
    return view.compare_a.seq, view.compare_b.seq


def _render_task_class(
    env: Any,
    site: SiteData,
    view: TaskClassView,
    out: Path,
    common: dict[str, Any],
    diffs: set[str],
    latencies: dict[str, tuple[float, ...] | None],
) -> int:
    """The task class's pages and data files; returns how many attempts they show.
    ``diffs`` holds the diffs already written, ``latencies`` the transcripts already written
    and their calls' latencies (both shared by the site)."""
    base = out / "tc" / view.slug
    chart, thresholds, agents = _trend(site, view)
    attempts = 0
    for run in view.runs:
        report = run.report
        if report is None:
            continue
        attempts += len(report.cases)
        try:  # the report's own bytes (JSON, so a script expression): each attempt as recorded
            text = read_bytes(site.state_dir / run.report_path).decode("utf-8")
        except (CodegenieEvalError, UnicodeDecodeError):
            text = "null"  # gone since it was read: the run's page says so
        _write(base / "data" / f"run-{run.seq}.js", f"CG.run({run.seq},{text});\n")
        for case in report.cases:
            digest = case.diff_digest
            if digest and _HEX_DIGEST.fullmatch(digest) and digest not in diffs:
                diffs.add(digest)
                _write_diff(site, out, digest)
            usage = case.model_usage
            told = usage.transcript_digest if usage is not None else ""
            if told and _HEX_DIGEST.fullmatch(told) and told not in latencies:
                latencies[told] = _write_transcript(env, site, out, case)
    _write(
        base / "data" / "index.js",
        _js("CG.index", index_payload(view, _compare_default(view))),
    )
    latest = view.latest
    report = latest.report if latest is not None else None
    _write(
        base / "index.html",
        env.get_template("task_class.html.j2").render(
            **common,
            root="../../",
            v=view,
            chart=chart,
            agents=agents,
            thresholds=thresholds,
            gateway=run_totals(report, latencies) if report is not None else None,
        ),
    )
    for shell in ("run", "case", "attempt", "compare"):
        _write(
            base / f"{shell}.html",
            env.get_template(f"{shell}.html.j2").render(**common, root="../../", v=view),
        )
    return attempts


def build_site(
    state_dir: Path,
    out: Path,
    *,
    task_class: str | None = None,
    tiers_path: Path | None = None,
    compare_refs: tuple[str, str] | None = None,
    bench_root: Path | None = None,
    check: VerifyResult | None = None,
    known: Mapping[str, TaskClass] | None = None,
) -> SiteSummary:
    """Build the static site for ``state_dir`` into ``out`` (created; pages of an earlier
    build there are replaced); ``check`` is the chain's verification when the caller has
    made it already, ``known`` the task classes it has loaded (by name). Raises
    :class:`HtmlDependencyMissing` without the html extra and :class:`CodegenieEvalError`
    for a missing state directory or task class."""
    require()
    with _gc_paused():
        site = collect(
            state_dir,
            task_class=task_class,
            tiers_path=tiers_path,
            compare_refs=compare_refs,
            bench_root=bench_root,
            check=check,
            known=known,
        )
        return _render_site(site, out)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off: a build holds every report (100,000 results for
    1,000 runs of 100 cases), and the collector would rescan them all, over and over, for
    no garbage."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _render_site(site: SiteData, out: Path) -> SiteSummary:
    from pytest_codegenie_eval import __version__

    for stale in ("tc", "diffs", "transcripts"):
        if (out / stale).is_dir():
            shutil.rmtree(out / stale)  # pages and fragments of an earlier build
    for made in ("diffs", "transcripts"):
        (out / made).mkdir(parents=True, exist_ok=True)
    _copy_static(out)
    env = _environment()
    common: dict[str, Any] = {
        "site": site,
        "version": __version__,
        "built_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        # the page's rules, the ones the data files carry too: one place for each
        "agent": agent_of,
        "run_state": run_state,
        **FORMATS,
    }
    _write(
        out / "index.html",
        env.get_template("index.html.j2").render(**common, root="", views=site.task_classes),
    )
    attempts = 0
    diffs: set[str] = set()
    latencies: dict[str, tuple[float, ...] | None] = {}
    for view in site.task_classes:
        attempts += _render_task_class(env, site, view, out, common, diffs, latencies)
    return SiteSummary(
        index=out / "index.html",
        task_classes=len(site.task_classes),
        runs=sum(len(v.runs) for v in site.task_classes),
        attempts=attempts,
    )
