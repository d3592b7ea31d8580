"""Is agent B better than agent A? A paired comparison of two run reports.

Cases are paired by ``case_id`` (a case's attempts are averaged first, as in the report).
For the paired differences ``d = B - A`` in [-1, 1] the comparison gives the mean, a
one-sided 95% lower bound on the mean difference with the same coverage standard as
``lower_bound_95`` (the same function applied to ``(d + 1) / 2``, an affine map of
[-1, 1] onto [0, 1], so its finite-sample guarantee carries over), the correlation of the
paired scores and, on pass/fail, an exact McNemar test on the discordant cases. Cases that
only one run holds are listed, never silently dropped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from pytest_codegenie_eval.errors import CodegenieEvalError
from pytest_codegenie_eval.evidence.aggregate import attempts_by_case, case_mean, case_passed
from pytest_codegenie_eval.evidence.stats import ScoreKind, lower_bound_95
from pytest_codegenie_eval.hashing import blake3_hex
from pytest_codegenie_eval.models import BenchRunReport


@dataclass(frozen=True)
class CaseDelta:
    case_id: str
    a: float
    b: float
    a_passed: bool
    b_passed: bool

    @property
    def delta(self) -> float:
        return self.b - self.a

    @property
    def verdict(self) -> str:
        return "better" if self.delta > 1e-12 else "worse" if self.delta < -1e-12 else "same"


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare` found (B measured against A)."""

    task_class: str
    a_run_id: str
    b_run_id: str
    a_sut: str
    b_sut: str
    paired: tuple[CaseDelta, ...]
    only_a: tuple[str, ...]
    only_b: tuple[str, ...]
    mean_delta: float | None
    lower_bound_delta: float | None
    bound_method: str
    correlation: float | None
    discordant_b_better: int  # A failed, B passed
    discordant_a_better: int  # A passed, B failed
    mcnemar_p_two_sided: float | None
    mcnemar_p_b_better: float | None

    def non_inferior(self, margin: float) -> bool:
        """B is no worse than A by more than ``margin``: the bound on B - A exceeds it."""
        return self.lower_bound_delta is not None and self.lower_bound_delta > -margin

    def counts(self) -> dict[str, int]:
        out = {"better": 0, "worse": 0, "same": 0}
        for d in self.paired:
            out[d.verdict] += 1
        return out

    def as_json(self) -> dict[str, object]:
        return {
            "task_class": self.task_class,
            "a": {"run_id": self.a_run_id, "sut": self.a_sut},
            "b": {"run_id": self.b_run_id, "sut": self.b_sut},
            "paired": len(self.paired),
            "counts": self.counts(),
            "only_a": list(self.only_a),
            "only_b": list(self.only_b),
            "mean_delta": self.mean_delta,
            "lower_bound_delta_95": self.lower_bound_delta,
            "bound_method": self.bound_method,
            "correlation": self.correlation,
            "mcnemar": {
                "b_better": self.discordant_b_better,
                "a_better": self.discordant_a_better,
                "p_two_sided": self.mcnemar_p_two_sided,
                "p_b_better": self.mcnemar_p_b_better,
            },
            "cases": [
                {"case_id": d.case_id, "a": d.a, "b": d.b, "delta": d.delta, "verdict": d.verdict}
                for d in self.paired
            ],
        }


def _per_case(report: BenchRunReport) -> dict[str, tuple[float, bool]]:
    """case_id -> (its score, it passed), exactly as the report's aggregate counts them."""
    return {
        case_id: (case_mean(attempts), case_passed(attempts))
        for case_id, attempts in attempts_by_case(report.cases).items()
    }


def _seed(a: BenchRunReport, b: BenchRunReport) -> int:
    digest = blake3_hex(f"{a.run_id}\0{b.run_id}".encode())
    return int(digest[:8], 16)


def compare(a: BenchRunReport, b: BenchRunReport) -> Comparison:
    """Pair the cases of two reports of one task class and compare them (B against A)."""
    if a.task_class != b.task_class:
        raise CodegenieEvalError(
            f"the reports are of different task classes ({a.task_class!r} and "
            f"{b.task_class!r}); only runs of one task class can be paired"
        )
    left, right = _per_case(a), _per_case(b)
    common = sorted(set(left) & set(right))
    paired = tuple(
        CaseDelta(cid, left[cid][0], right[cid][0], left[cid][1], right[cid][1]) for cid in common
    )
    deltas = [d.delta for d in paired]
    mean = sum(deltas) / len(deltas) if deltas else None
    lower: float | None = None
    method = "none"
    if deltas:
        shifted = [min(1.0, max(0.0, (d + 1.0) / 2.0)) for d in deltas]
        # every case moved fully one way: the shifted differences are 0/1 and the exact
        # bound applies (the gate's own bound never switches on the data; this comparison
        # is advice, and its exact paired bound for pass/fail runs is still to come)
        kind: ScoreKind = "pass_fail" if all(v in (0.0, 1.0) for v in shifted) else "graded"
        bound = lower_bound_95(shifted, seed=_seed(a, b), kind=kind)
        lower = max(-1.0, 2.0 * bound.value - 1.0)
        method = bound.method
    correlation: float | None = None
    if len(paired) >= 2:
        xs = np.array([d.a for d in paired])
        ys = np.array([d.b for d in paired])
        if xs.std() > 0 and ys.std() > 0:
            correlation = float(np.corrcoef(xs, ys)[0, 1])
    b_better = sum(1 for d in paired if d.b_passed and not d.a_passed)
    a_better = sum(1 for d in paired if d.a_passed and not d.b_passed)
    p_two = p_b = None
    if b_better + a_better:
        p_two = float(binomtest(b_better, b_better + a_better, 0.5).pvalue)
        p_b = float(binomtest(b_better, b_better + a_better, 0.5, alternative="greater").pvalue)
    return Comparison(
        task_class=a.task_class,
        a_run_id=a.run_id,
        b_run_id=b.run_id,
        a_sut=a.sut,
        b_sut=b.sut,
        paired=paired,
        only_a=tuple(sorted(set(left) - set(right))),
        only_b=tuple(sorted(set(right) - set(left))),
        mean_delta=mean,
        lower_bound_delta=lower,
        bound_method=method,
        correlation=correlation,
        discordant_b_better=b_better,
        discordant_a_better=a_better,
        mcnemar_p_two_sided=p_two,
        mcnemar_p_b_better=p_b,
    )


def _num(value: float | None, spec: str = "+.3f") -> str:
    return "n/a" if value is None or math.isnan(value) else format(value, spec)


def format_comparison(c: Comparison, *, margin: float | None = None) -> list[str]:
    """The comparison as terminal lines (what ``codegenie-eval compare`` prints)."""
    counts = c.counts()
    lines = [
        f"compare {c.task_class}: B {c.b_run_id[:16]} ({c.b_sut or '?'}) against "
        f"A {c.a_run_id[:16]} ({c.a_sut or '?'})",
        f"  paired {len(c.paired)} cases: {counts['better']} better, {counts['worse']} worse, "
        f"{counts['same']} same",
    ]
    if c.only_a:
        lines.append(f"  only in A (not paired): {', '.join(c.only_a)}")
    if c.only_b:
        lines.append(f"  only in B (not paired): {', '.join(c.only_b)}")
    lines.append(
        f"  mean delta (B - A) {_num(c.mean_delta)}, one-sided 95% lower bound "
        f"{_num(c.lower_bound_delta)} ({c.bound_method}), correlation "
        f"{_num(c.correlation, '.3f')}"
    )
    if c.discordant_a_better + c.discordant_b_better:
        lines.append(
            f"  McNemar (exact) on pass/fail: B passed where A failed {c.discordant_b_better}, "
            f"A passed where B failed {c.discordant_a_better}; p = "
            f"{_num(c.mcnemar_p_two_sided, '.4f')} two-sided, "
            f"{_num(c.mcnemar_p_b_better, '.4f')} for B better"
        )
    else:
        lines.append("  McNemar: no discordant cases (both runs pass and fail the same cases)")
    for d in c.paired:
        if d.verdict != "same":
            lines.append(f"    {d.verdict:6} {d.case_id}: {d.a:.3f} -> {d.b:.3f} ({d.delta:+.3f})")
    if margin is not None:
        ok = c.non_inferior(margin)
        lines.append(
            f"  non-inferiority at margin {margin:g}: "
            + (
                f"PASS (lower bound {_num(c.lower_bound_delta)} > {-margin:+g})"
                if ok
                else f"FAIL (lower bound {_num(c.lower_bound_delta)} <= {-margin:+g})"
            )
        )
    return lines


def comparison_json(c: Comparison) -> str:
    return json.dumps(c.as_json(), sort_keys=True)


__all__ = [
    "CaseDelta",
    "Comparison",
    "compare",
    "comparison_json",
    "format_comparison",
]
