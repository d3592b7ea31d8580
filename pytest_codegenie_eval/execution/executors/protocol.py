"""What every executor is: it takes jobs (plain data, never pytest items), says which
attempts it owns, hands back each attempt's outcome when asked, and closes.

The caller records an outcome the same way whichever executor produced it
(:func:`~pytest_codegenie_eval.execution.attempt.record_attempt`): the diff kept, the cost in
the ledger, the result cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pytest_codegenie_eval.execution.attempt import Attempt

JobT_contra = TypeVar("JobT_contra", contravariant=True)


@dataclass(frozen=True)
class Outcome:
    """One attempt as an executor hands it back: the attempt to record, or ``None`` when
    the cost cap kept it from starting (``spent_usd``: the spend that reached the cap)."""

    attempt: Attempt | None
    spent_usd: float = 0.0


class Executor(Protocol[JobT_contra]):
    """Runs attempts of cases: ``submit`` them, then ``wait`` for each by its node id."""

    @property
    def label(self) -> str:
        """How the run summary names it (``local``, ``dask-local:4``, a scheduler)."""
        ...

    def submit(self, jobs: Sequence[JobT_contra]) -> None: ...

    def owns(self, nodeid: str) -> bool:
        """Whether an attempt with this node id was submitted here and not yet waited for
        (a local executor) or at all (a cluster)."""
        ...

    def wait(self, nodeid: str) -> Outcome: ...

    def close(self) -> None: ...


__all__ = ["Executor", "Outcome"]
