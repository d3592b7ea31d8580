"""CI-native output: a GitHub step summary and workflow-command annotations.

* ``$GITHUB_STEP_SUMMARY`` (set by GitHub Actions to a file): a Markdown section per task
  class is appended, with cases, pass rate, the bound and its method, cost, the verdict and
  the failing cases with their block failure codes.
* ``GITHUB_ACTIONS=true``: one ``::error file=…,title=…::…`` line per failed case, pointing
  at its ``case.toml`` so the failure shows on the pull request
  (``--codegenie-github-annotations=off`` turns them off).

Both read only the run reports the session wrote. Text from cases, SUTs and rubrics (case
ids, failure-mode details that may quote the SUT's output or name its files) is untrusted:

* in an annotation, its control characters are first shown as escapes (ESC as ``\\x1b``,
  a lone CR as ``\\x0d``: :func:`~pytest_codegenie_eval.output.untrusted_text.visible`), then
  ``%``, CR and LF are percent-encoded as GitHub's workflow-command syntax requires, and
  ``:`` and ``,`` too in a property (the title, the file). Each annotation is one log line,
  and what a SUT wrote is only ever data of the harness's own ``::error`` command;
* in the step summary (a Markdown file, not the log), the same characters are shown, and
  pipes, angle brackets and line breaks are escaped so that a cell stays a cell.

Everything else the plugin prints of such text (failure reports, the terminal summary) is
made safe by :mod:`pytest_codegenie_eval.output.untrusted_text`: no line of it starts a workflow
command, and under GitHub Actions it is printed between ``::stop-commands::`` fences. So a
SUT cannot inject a command of its own: only the harness's annotations and fences start a
line with ``::``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pytest_codegenie_eval.models import BenchRunReport, CaseResult, PromotionVerdict
from pytest_codegenie_eval.output.untrusted_text import visible
from pytest_codegenie_eval.taskclass.layout import CASE_TOML, attempt_from_nodeid


def _escape_data(text: str) -> str:
    """Workflow-command data: controls shown, then GitHub's percent-encoding (a CR that is
    left after :func:`visible` is only there when the test hook turned it off)."""
    return visible(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _md(text: str) -> str:
    """Table-cell safe Markdown text (no controls, pipes, line breaks or HTML)."""
    return (
        visible(text)
        .replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\n", " ")
        .replace("\r", " ")
    )


def _codes(case: CaseResult) -> str:
    blocks = [fm.code for fm in case.failure_modes if fm.severity == "block"]
    return ", ".join(blocks) if blocks else f"score {case.score:.3f} < {case.pass_threshold:.3f}"


def step_summary(
    reports: Sequence[tuple[BenchRunReport, PromotionVerdict | None]],
) -> str:
    """The Markdown appended to ``$GITHUB_STEP_SUMMARY``."""
    parts: list[str] = []
    for report, verdict in reports:
        if report.complete:
            state = "complete"
        elif report.shard is not None and report.incomplete_reason == "shard":
            state = f"shard {report.shard.label} (merge the shards for the run)"
        else:
            state = f"**PARTIAL** ({report.incomplete_reason})"
        parts += [
            f"### codegenie eval: {_md(report.task_class)}",
            "",
            "| cases | passed | pass rate | lower_bound_95 | method | cost (USD) | run |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            f"| {report.n} | {report.passed_count} | "
            f"{(report.passed_count / report.n if report.n else 0.0):.3f} | "
            f"{report.lower_bound_95:.3f} | {report.bound.method} | "
            f"{report.total_cost_usd:.4f} | {state} |",
            "",
        ]
        if verdict is not None:
            outcome = "SUFFICIENT" if verdict.evidence_sufficient else "INSUFFICIENT"
            parts.append(f"Verdict for **{_md(verdict.tier)}**: evidence {outcome}")
            parts += [f"- {_md(reason)}" for reason in verdict.reasons]
            parts.append("")
        failed = [c for c in report.cases if not c.passed and c.status != "skipped_cost_cap"]
        if failed:
            parts.append("| failed case | attempt | block failure codes |")
            parts.append("| --- | --- | --- |")
            parts += [f"| {_md(c.case_id)} | {c.repeat} | {_md(_codes(c))} |" for c in failed]
            parts.append("")
    return "\n".join(parts) + "\n"


def append_step_summary(
    target: str, reports: Sequence[tuple[BenchRunReport, PromotionVerdict | None]]
) -> str | None:
    """Append :func:`step_summary` to the file ``target`` (``$GITHUB_STEP_SUMMARY``); the
    reason it could not, or ``None``."""
    return append_markdown(target, step_summary(reports))


def verdict_summary(verdict: PromotionVerdict) -> str:
    """The Markdown for a verdict judged from recorded evidence (``promote-verdict``)."""
    outcome = "SUFFICIENT" if verdict.evidence_sufficient else "INSUFFICIENT"
    bound = "n/a" if verdict.lower_bound_95 is None else f"{verdict.lower_bound_95:.3f}"
    threshold = "n/a" if verdict.threshold is None else f"{verdict.threshold:.3f}"
    parts = [
        f"### codegenie verdict: {_md(verdict.task_class)} → {_md(verdict.tier)}",
        "",
        f"Evidence **{outcome}** (lower_bound_95 {bound}, threshold {threshold}; chain head "
        f"`{_md(verdict.chain_head or 'none')}`)",
    ]
    parts += [f"- {_md(reason)}" for reason in verdict.reasons]
    return "\n".join(parts) + "\n\n"


def append_markdown(target: str, text: str) -> str | None:
    """Append ``text`` to ``target`` (``$GITHUB_STEP_SUMMARY``); why it could not, or
    ``None``."""
    try:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        return f"could not write $GITHUB_STEP_SUMMARY {target}: {exc}"
    return None


def workflow_annotations(reports: Iterable[BenchRunReport]) -> list[str]:
    """One ``::error`` workflow command per failed case, at its ``case.toml``."""
    lines = []
    for report in reports:
        for case in report.cases:
            if case.passed or case.status == "skipped_cost_cap":
                continue
            where = case.nodeid.split("::", 1)[0] if case.nodeid else ""
            file = where if where.endswith(CASE_TOML) else ""
            attempt = attempt_from_nodeid(case.nodeid) if case.nodeid else None
            repeat = f" attempt {attempt[2]}" if attempt and report.repeats > 1 else ""
            title = f"codegenie {report.task_class}/{case.case_id}{repeat}"
            message = (
                f"score {case.score:.3f} vs threshold {case.pass_threshold:.3f}: "
                + "; ".join(
                    f"[{fm.severity}] {fm.code}" + (f": {fm.detail[:200]}" if fm.detail else "")
                    for fm in case.failure_modes
                )
            )
            props = f"title={_escape_property(title)}"
            if file:
                props = f"file={_escape_property(file)},line=1," + props
            lines.append(f"::error {props}::{_escape_data(message)}")
    return lines  # node ids are relative to the rootdir, the repository checkout


__all__ = [
    "append_markdown",
    "append_step_summary",
    "step_summary",
    "verdict_summary",
    "workflow_annotations",
]
