"""The trend chart: ``lower_bound_95`` and the mean of every recorded run, with the tier
thresholds, drawn by matplotlib as SVG at build time (no script, nothing fetched)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# groups of the SVG, by id: what the tests (and a curious reader) find in the page
BOUND_COMPLETE_ID = "trend-bound-complete"
BOUND_PARTIAL_ID = "trend-bound-partial"
MEAN_ID = "trend-mean"
THRESHOLD_ID = "trend-threshold-{index}"


@dataclass(frozen=True)
class TrendPoint:
    """One run: its position in the chain and the two numbers its report holds."""

    position: int  # 1-based, in chain order
    lower_bound_95: float
    mean: float
    complete: bool


def trend_svg(points: Sequence[TrendPoint], thresholds: Mapping[str, float]) -> str:
    """An inline ``<svg>`` element (no XML prolog): filled markers for complete runs,
    hollow ones for partial runs and shards, the mean dashed, thresholds as labelled
    horizontal lines."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",  # text stays text: smaller, and selectable
            "svg.hashsalt": "codegenie-eval",  # the same input gives the same bytes
            "font.size": 9,
            "font.family": "sans-serif",
        }
    ):
        fig = Figure(figsize=(8.0, 3.0), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        complete = [p for p in points if p.complete]
        partial = [p for p in points if not p.complete]
        (line,) = ax.plot(
            [p.position for p in complete],
            [p.lower_bound_95 for p in complete],
            marker="o",
            markersize=4,
            linewidth=1.5,
            color="#1f5fa8",
            label="lower_bound_95 (complete runs)",
        )
        line.set_gid(BOUND_COMPLETE_ID)
        (hollow,) = ax.plot(
            [p.position for p in partial],
            [p.lower_bound_95 for p in partial],
            linestyle="none",
            marker="o",
            markersize=5,
            markerfacecolor="white",
            color="#1f5fa8",
            label="lower_bound_95 (partial runs, shards)",
        )
        hollow.set_gid(BOUND_PARTIAL_ID)
        ordered = sorted(points, key=lambda p: p.position)
        (mean,) = ax.plot(
            [p.position for p in ordered],
            [p.mean for p in ordered],
            linestyle="--",
            linewidth=1,
            color="#7a7a7a",
            label="mean",
        )
        mean.set_gid(MEAN_ID)
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
        ax.legend(loc="lower left", fontsize=8, frameon=False)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]
