"""The static results page: ``codegenie-eval report --out DIR`` and ``--codegenie-html=DIR``.

A self-contained site (no server, no CDN, no request to anywhere: open ``DIR/index.html``
from disk, or keep it as a CI artifact)::

    index.html                        overview: the latest run of every task class
    tc/<task class>/index.html        trend chart, every recorded run, the latest run's cases
                                      (and what the model gateway metered, where it did)
    tc/<task class>/cases/<case>.html one attempt: breakdown, failure modes, diff, the model
                                      gateway's metering and transcript, output
    tc/<task class>/compare.html      the two newest runs (or the two asked for), paired
    diffs/<digest>.diff               the raw diffs the case pages show
    transcripts/<digest>.jsonl        the raw model transcripts the case pages show
    static/                           stylesheet, List.js (MIT) and the page script

Templates are Jinja2 with autoescaping on (every string from a case, a rubric or a SUT is
text, never markup), diffs are highlighted by Pygments, the trend chart is SVG drawn by
matplotlib at build time. Those three come with the ``html`` extra
(``pip install 'pytest-codegenie-eval[html]'``); without it the command says so.
"""

from __future__ import annotations

import importlib.resources
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pytest_codegenie_eval.errors import CodegenieEvalError
from pytest_codegenie_eval.models import CaseResult
from pytest_codegenie_eval.output.html.data import (
    SiteData,
    TaskClassView,
    TranscriptView,
    collect,
    run_totals,
    slug,
    transcript_view,
)
from pytest_codegenie_eval.registry import TaskClass
from pytest_codegenie_eval.store.audit import VerifyResult
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
    case_pages: int


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


def _copy_static(out: Path) -> None:
    from pygments.formatters import HtmlFormatter

    static = out / "static"
    static.mkdir(parents=True, exist_ok=True)
    source = importlib.resources.files("pytest_codegenie_eval.output.html") / "static"
    for name in ("style.css", "report.js", "list.min.js", "list.js.LICENSE"):
        (static / name).write_bytes((source / name).read_bytes())
    formatter: Any = HtmlFormatter(style="default")  # get_style_defs is untyped in the stubs
    _write(static / "pygments.css", formatter.get_style_defs(".highlight"))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


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


def case_page_name(case: CaseResult, repeats: int) -> str:
    """The file of a case attempt's page, relative to its task class directory."""
    name = slug(case.case_id)
    return f"cases/{name}-r{case.repeat}.html" if repeats > 1 else f"cases/{name}.html"


def _diff_view(site: SiteData, out: Path, case: CaseResult) -> dict[str, str]:
    """The highlighted diff of a case attempt, its note and the link to the raw copy."""
    if not case.diff_digest:
        note = (
            "the SUT changed nothing in the workspace"
            if case.status == "scored"
            else "no diff: the case did not run"
        )
        return {"diff_html": "", "diff_note": note, "diff_link": ""}
    text = read_diff(site.diffs_dir, case.diff_digest)
    if text is None:
        return {
            "diff_html": "",
            "diff_note": f"diff {case.diff_digest[:16]}… is missing from the state directory "
            "or no longer matches its recorded digest",
            "diff_link": "",
        }
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import DiffLexer

    raw = out / "diffs" / f"{case.diff_digest}.diff"
    if not raw.exists():
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(text, encoding="utf-8")
    note = ""
    shown = text
    if len(text) > MAX_HIGHLIGHTED_DIFF:
        shown = text[:MAX_HIGHLIGHTED_DIFF]
        note = (
            f"the first {MAX_HIGHLIGHTED_DIFF // 1024} KiB of {len(text) // 1024} KiB; "
            "the raw diff has all of it"
        )
    html = highlight(shown, DiffLexer(), HtmlFormatter(cssclass="highlight"))
    return {"diff_html": html, "diff_note": note, "diff_link": f"../../../diffs/{raw.name}"}


def _transcript_page(out: Path, view: TranscriptView | None) -> dict[str, Any]:
    """What a case page shows of its attempt's transcript, and the link to the raw copy
    (written beside the raw diffs, only from bytes that verified)."""
    if view is None:
        return {"tx": None, "transcript_link": ""}
    if view.transcript is None:
        return {"tx": view, "transcript_link": ""}
    raw = out / "transcripts" / f"{view.digest}.jsonl"
    if not raw.exists():
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_bytes(view.data)
    return {"tx": view, "transcript_link": f"../../../transcripts/{raw.name}"}


def _trend(site: SiteData, view: TaskClassView) -> tuple[str, dict[str, float]]:
    from pytest_codegenie_eval.output.html.charts import TrendPoint, trend_svg

    points = [
        TrendPoint(
            position=index,
            lower_bound_95=run.report.lower_bound_95,
            mean=run.report.mean,
            complete=run.report.complete,
        )
        for index, run in enumerate(view.runs, start=1)
        if run.report is not None
    ]
    thresholds = dict(site.tiers.thresholds) if site.tiers is not None else {}
    return trend_svg(points, thresholds), thresholds


def _render_task_class(
    env: Any, site: SiteData, view: TaskClassView, out: Path, common: dict[str, Any]
) -> int:
    base = out / "tc" / view.slug
    chart, thresholds = _trend(site, view)
    latest = view.latest
    report = latest.report if latest is not None else None
    cases = report.cases if report is not None else ()
    repeats = report.repeats if report is not None else 1
    pages = [case_page_name(case, repeats) for case in cases]
    case_template = env.get_template("case.html.j2")
    latencies: dict[str, tuple[float, ...] | None] = {}
    for case, page in zip(cases, pages, strict=True):
        transcript = transcript_view(site.transcripts_dir, case)
        if transcript is not None and transcript.digest:
            latencies[transcript.digest] = transcript.latencies
        _write(
            base / page,
            case_template.render(
                **common,
                root="../../../",
                v=view,
                r=report,
                c=case,
                repeats=repeats,
                **_diff_view(site, out, case),
                **_transcript_page(out, transcript),
            ),
        )
        del transcript  # one transcript in memory at a time
    _write(
        base / "index.html",
        env.get_template("task_class.html.j2").render(
            **common,
            root="../../",
            v=view,
            chart=chart,
            thresholds=thresholds,
            case_pages=pages,
            gateway=run_totals(report, latencies) if report is not None else None,
        ),
    )
    if view.comparison is not None:
        _write(
            base / "compare.html",
            env.get_template("compare.html.j2").render(
                **common,
                root="../../",
                v=view,
                counts=view.comparison.counts(),
                fmt=_fmt,
            ),
        )
    return len(pages)


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
    from pytest_codegenie_eval import __version__

    site = collect(
        state_dir,
        task_class=task_class,
        tiers_path=tiers_path,
        compare_refs=compare_refs,
        bench_root=bench_root,
        check=check,
        known=known,
    )
    if (out / "tc").is_dir():
        shutil.rmtree(out / "tc")  # pages of task classes no longer asked for
    out.mkdir(parents=True, exist_ok=True)
    _copy_static(out)
    env = _environment()
    common: dict[str, Any] = {
        "site": site,
        "version": __version__,
        "built_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        **FORMATS,
    }
    _write(
        out / "index.html",
        env.get_template("index.html.j2").render(**common, root="", views=site.task_classes),
    )
    case_pages = 0
    for view in site.task_classes:
        case_pages += _render_task_class(env, site, view, out, common)
    return SiteSummary(
        index=out / "index.html",
        task_classes=len(site.task_classes),
        runs=sum(len(v.runs) for v in site.task_classes),
        case_pages=case_pages,
    )
