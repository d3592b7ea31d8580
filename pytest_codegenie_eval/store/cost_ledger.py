"""Bench-invocation cost tagging and the run-scoped cost ledger shared by xdist workers.

Every SUT run is marked with ``CODEGENIE_BENCH_INVOCATION_TAG`` so an agent (or the proxy
in front of its model) can attribute spend to the bench, and its reported cost goes to a
JSONL ledger guarded by a file lock, so the cost cap holds across all workers of a run.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

TAG_ENV = "CODEGENIE_BENCH_INVOCATION_TAG"


def invocation_tag(run_scope: str, task_class: str, case_id: str) -> str:
    """The tag value of one SUT invocation."""
    return f"codegenie-bench/{run_scope}/{task_class}/{case_id}"


@dataclass
class Invocation:
    """A SUT invocation in progress; the runner sets ``cost_usd`` before the block ends."""

    tag: str
    task_class: str
    case_id: str
    cost_usd: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)
    recorded: bool = False  # its ledger line was written (tag_invocation sets it)


class CostLedger:
    """Append-only JSONL of SUT costs for one run, safe across processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = FileLock(str(path) + ".lock")

    def record(self, invocation: Invocation) -> None:
        entry = {
            "bench_invocation": True,
            "tag": invocation.tag,
            "task_class": invocation.task_class,
            "case_id": invocation.case_id,
            "cost_usd": invocation.cost_usd,
            **invocation.extra,
        }
        line = json.dumps(entry, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            # flushed under the lock, so every worker's next total sees it; the ledger only
            # lives as long as the run, so it is not worth an fsync per case
            fh.write(line)
            fh.flush()

    def entries(self) -> list[dict[str, object]]:
        if not self.path.exists():
            return []
        with self._lock:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        out: list[dict[str, object]] = []
        for line in lines:
            with contextlib.suppress(json.JSONDecodeError):
                item = json.loads(line)
                if isinstance(item, dict):
                    out.append(item)
        return out

    def total_usd(self) -> float:
        total = 0.0
        for entry in self.entries():
            value = entry.get("cost_usd")
            if isinstance(value, int | float) and value > 0:
                total += float(value)
        return total


def cap_reached(spent_usd: float, cap_usd: float | None) -> bool:
    """The cost cap's one rule: no new case starts once recorded spend is past the cap."""
    return cap_usd is not None and spent_usd > cap_usd


@contextlib.contextmanager
def tag_invocation(
    ledger: CostLedger | None, run_scope: str, task_class: str, case_id: str
) -> Iterator[Invocation]:
    """Tag one SUT invocation and record its cost in the ledger when the block ends
    (``invocation.recorded`` says whether that write succeeded)."""
    invocation = Invocation(invocation_tag(run_scope, task_class, case_id), task_class, case_id)
    try:
        yield invocation
    finally:
        if ledger is not None:
            # a full or read-only disk must not turn a measured attempt into a crash: the
            # caller sees ``recorded`` false and records the loss with the result
            with contextlib.suppress(OSError):
                ledger.record(invocation)
                invocation.recorded = True
