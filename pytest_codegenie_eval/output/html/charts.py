"""The trend chart: ``lower_bound_95`` of every recorded run, one series per agent, with the
tier thresholds, drawn by matplotlib as SVG at build time (no script, nothing fetched).

Each agent (a run's label, else its SUT) is one colour: its complete runs joined by a line,
its partial runs, debugging runs (``-k``) and shards as hollow markers apart from the line,
its means as small crosses. The legend sits below the axes, never over the data.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# groups of the SVG, by id: what the tests (and a curious reader) find in the page
BOUND_COMPLETE_ID = "trend-bound-complete-{index}"  # one per agent, in order of first run
BOUND_PARTIAL_ID = "trend-bound-partial-{index}"
MEAN_ID = "trend-mean-{index}"
THRESHOLD_ID = "trend-threshold-{index}"

# colour-blind-safe (Okabe-Ito), then matplotlib's tab10 for more agents
_COLOURS = (
    "#0072b2",
    "#d55e00",
    "#009e73",
    "#cc79a7",
    "#e69f00",
    "#56b4e9",
    "#000000",
    "#f0e442",
)
MAX_LEGEND_CHARS = 48


@dataclass(frozen=True)
class TrendPoint:
    """One run: its position in the chain, the agent it measured and its two numbers."""

    position: int  # 1-based, in chain order
    lower_bound_95: float
    mean: float
    complete: bool
    agent: str = ""


def agents_in_order(points: Sequence[TrendPoint]) -> list[str]:
    """The agents of ``points``, in the order of their first run (the series' order)."""
    seen: dict[str, None] = {}
    for point in sorted(points, key=lambda p: p.position):
        seen.setdefault(point.agent, None)
    return list(seen)


def _short(agent: str) -> str:
    text = agent or "?"
    return text if len(text) <= MAX_LEGEND_CHARS else text[: MAX_LEGEND_CHARS - 1] + "…"


def trend_svg(points: Sequence[TrendPoint], thresholds: Mapping[str, float]) -> str:
    """An inline ``<svg>`` element (no XML prolog)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    agents = agents_in_order(points)
    legend_rows = max(1, (len(agents) + 1) // 2)
    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",  # text stays text: smaller, and selectable
            "svg.hashsalt": "codegenie-eval",  # the same input gives the same bytes
            "font.size": 9,
            "font.family": "sans-serif",
        }
    ):
        fig = Figure(figsize=(8.0, 3.0 + 0.22 * legend_rows), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        for index, agent in enumerate(agents):
            colour = _COLOURS[index % len(_COLOURS)]
            mine = sorted((p for p in points if p.agent == agent), key=lambda p: p.position)
            complete = [p for p in mine if p.complete]
            partial = [p for p in mine if not p.complete]
            (line,) = ax.plot(
                [p.position for p in complete],
                [p.lower_bound_95 for p in complete],
                marker="o",
                markersize=4,
                linewidth=1.5,
                color=colour,
                label=f"{_short(agent)}: lower_bound_95",
            )
            line.set_gid(BOUND_COMPLETE_ID.format(index=index))
            (hollow,) = ax.plot(
                [p.position for p in partial],
                [p.lower_bound_95 for p in partial],
                linestyle="none",
                marker="o",
                markersize=5,
                markerfacecolor="white",
                color=colour,
                label="_partial",  # explained once in the caption
            )
            hollow.set_gid(BOUND_PARTIAL_ID.format(index=index))
            (mean,) = ax.plot(
                [p.position for p in mine],
                [p.mean for p in mine],
                linestyle="none",
                marker="x",
                markersize=3,
                color=colour,
                alpha=0.6,
                label="_mean",
            )
            mean.set_gid(MEAN_ID.format(index=index))
        for index, (tier, value) in enumerate(sorted(thresholds.items(), key=lambda kv: kv[1])):
            rule = ax.axhline(value, color="#c0392b", linewidth=0.8, linestyle=":")
            rule.set_gid(THRESHOLD_ID.format(index=index))
            ax.annotate(
                f"{tier} {value:.2f}",
                xy=(1.0, value),
                xycoords=("axes fraction", "data"),
                xytext=(2, 0),
                textcoords="offset points",
                va="center",
                color="#c0392b",
            )
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("run (chain order)")
        ax.set_ylabel("score")
        if points:
            ax.set_xlim(0.5, max(p.position for p in points) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(axis="y", linewidth=0.3)
        if agents:
            fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]
