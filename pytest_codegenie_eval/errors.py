"""Typed errors of pytest-codegenie-eval.

Every message names what was wrong and where (file, field, case id, task class) and, where
there is one, what to do about it. All errors derive from :class:`CodegenieEvalError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class CodegenieEvalError(Exception):
    """Base class of every error this plugin raises on purpose."""


class TaskClassNotFound(CodegenieEvalError):
    """A task class name was asked for that no bench directory registers."""

    def __init__(self, name: str, bench_root: Path, available: Iterable[str]) -> None:
        self.name = name
        self.bench_root = bench_root
        self.available = sorted(available)
        listing = ", ".join(self.available) or "none"
        super().__init__(
            f"task class {name!r} is not registered under {bench_root} (available: {listing})"
        )


class BenchRootMissing(CodegenieEvalError):
    """The bench root directory does not exist."""

    def __init__(self, bench_root: Path) -> None:
        self.bench_root = bench_root
        super().__init__(
            f"bench directory {bench_root} does not exist "
            "(set --codegenie-bench-root or the codegenie_bench_root ini option)"
        )


class TaskClassAlreadyRegistered(CodegenieEvalError):
    """Two different classes claimed the same task class name."""

    def __init__(self, name: str, existing_qualname: str, incoming_qualname: str) -> None:
        self.name = name
        self.existing_qualname = existing_qualname
        self.incoming_qualname = incoming_qualname
        super().__init__(
            f"task class {name!r} is already registered by {existing_qualname}; "
            f"{incoming_qualname} tried to register it again"
        )


class TaskClassInvalid(CodegenieEvalError):
    """A task class directory breaks the contract (registration, taxonomy, keys)."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class TaskClassLoadError(TaskClassInvalid):
    """A task class module (registration.py, breakdown_keys.py) could not be imported: it
    raised, exited, killed its interpreter or ran past the import time limit."""


class BenchCaseLoadError(CodegenieEvalError):
    """A case directory could not be loaded (case.toml missing, malformed or invalid)."""

    def __init__(self, path: Path, problem: str, field: str | None = None) -> None:
        self.path = path
        self.field = field
        self.problem = problem
        where = f"{path} [{field}]" if field else str(path)
        super().__init__(f"{where}: {problem}")


class BenchCaseDigestMismatch(CodegenieEvalError):
    """A case directory's content digest differs from its pin in cases/digests.yaml."""

    def __init__(self, case_dir: Path, expected: str | None, actual: str) -> None:
        self.case_dir = case_dir
        self.expected = expected
        self.actual = actual
        pinned = f"pinned {expected}" if expected is not None else "not pinned"
        # cases/<dir> of the task class directory: the directory's name is the task class
        task_class = case_dir.parent.parent.name or "NAME"
        super().__init__(
            f"{case_dir}: content digest {actual} does not match digests.yaml ({pinned}); "
            "if the edit is intended, re-pin with "
            f"`codegenie-eval digests --task-class {task_class} --write`"
        )


class BenchCaseIDCollision(CodegenieEvalError):
    """Two case directories of one task class declare the same case_id."""

    def __init__(self, case_id: str, first: Path, second: Path) -> None:
        self.case_id = case_id
        self.first = first
        self.second = second
        super().__init__(f"case_id {case_id!r} of {second} is already used by {first}")


class DigestsFileInvalid(CodegenieEvalError):
    """cases/digests.yaml is malformed or pins a case directory that does not exist."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class ChainTamperDetected(CodegenieEvalError):
    """The audit chain, or a run report it names, was changed after it was written."""

    def __init__(self, path: Path, problem: str, seq: int | None = None) -> None:
        self.path = path
        self.seq = seq
        self.problem = problem
        where = f"{path} (record seq {seq})" if seq is not None else str(path)
        super().__init__(f"audit chain tampered: {where}: {problem}")


class IncompleteReportForPromotion(CodegenieEvalError):
    """A report that is not complete (the cost cap stopped it, it ran a subset of the cases,
    or it is one shard) was handed to the gate as the evidence to judge
    (:meth:`~pytest_codegenie_eval.evidence.promotion.PromotionGate.evaluate_report`)."""

    def __init__(self, run_id: str, task_class: str, reason: str | None = None) -> None:
        self.run_id = run_id
        self.task_class = task_class
        self.reason = reason
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"run {run_id} of task class {task_class!r} is incomplete{why} and cannot "
            "support promotion"
        )


class PromotionMustBeHumanAuthorized(CodegenieEvalError):
    """The gate is read-only: applying a promotion is a human decision."""

    def __init__(self, task_class: str, tier: str) -> None:
        self.task_class = task_class
        self.tier = tier
        super().__init__(
            f"promotion of {task_class!r} to {tier!r} must be authorized by a human: "
            "edit current_tiers in docs/trust-tiers.yaml through review"
        )


class RecommendationNotWritten(CodegenieEvalError):
    """A promotion recommendation could not be written (a full or read-only state
    directory). The verdict itself stands: a recommendation is advice, not a record."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: the recommendation could not be written: {problem}")


class TierConfigInvalid(CodegenieEvalError):
    """docs/trust-tiers.yaml is malformed."""

    def __init__(self, path: Path, problem: str, key: str | None = None, line: int | None = None):
        self.path = path
        self.key = key
        self.line = line
        self.problem = problem
        where = str(path) + (f":{line}" if line is not None else "")
        what = f" [{key}]" if key else ""
        super().__init__(f"{where}{what}: {problem}")


class CostCapReached(CodegenieEvalError):
    """The run's recorded SUT cost passed --codegenie-max-cost-usd."""

    def __init__(self, spent_usd: float, cap_usd: float) -> None:
        self.spent_usd = spent_usd
        self.cap_usd = cap_usd
        super().__init__(f"cost cap reached: spent {spent_usd:.4f} USD of {cap_usd:.4f} USD")


class ShardMergeError(CodegenieEvalError):
    """Shard reports that cannot be merged into one run: missing, duplicated, mismatched,
    partial or unrecorded shards (``codegenie-eval merge``)."""

    def __init__(self, path: Path | None, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)
