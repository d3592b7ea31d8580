"""Which cases a shard runs: ``--codegenie-shard=I/N`` and a case's shard.

A case's shard is ``BLAKE3(case_id) mod N + 1``: a case never moves to another shard when
cases are added or removed, and every job computes it alone, without talking to the others.
Joining the shards back into one run is :mod:`pytest_codegenie_eval.evidence.sharding`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_codegenie_eval.hashing import blake3_raw
from pytest_codegenie_eval.models import ShardCase, ShardInfo

if TYPE_CHECKING:
    from pytest_codegenie_eval.taskclass.loader import LoadedTaskClass

MAX_SHARDS = 1000
_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Shard:
    """Which part of the cases this session runs (1-based)."""

    index: int
    count: int

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"I/N"`` with 1 <= I <= N <= 1000; raises ValueError saying what is expected."""
    match = _SHARD.fullmatch(text)
    if match is not None:
        index, count = int(match.group(1)), int(match.group(2))
        if 1 <= index <= count <= MAX_SHARDS:
            return Shard(index, count)
    raise ValueError(
        f"--codegenie-shard must be I/N with 1 <= I <= N <= {MAX_SHARDS} (e.g. 2/3), got {text!r}"
    )


def shard_of(case_id: str, count: int) -> int:
    """The shard (1-based) a case belongs to among ``count``; stable as cases come and go."""
    digest = blake3_raw(case_id.encode("utf-8"))
    return int.from_bytes(digest[:8], "big") % count + 1


def shard_case_ids(info: ShardInfo) -> frozenset[str]:
    """The case ids of the task class that fall in ``info``'s shard."""
    return frozenset(c.case_id for c in info.cases if shard_of(c.case_id, info.count) == info.index)


def shard_info(loaded: LoadedTaskClass, shard: Shard) -> ShardInfo:
    """The shard record of a task class: every case with its digest (pins of missing case
    directories count as cases, as they do in a run)."""
    cases = {entry.case_id: entry.digest for entry in loaded.cases}
    for name in loaded.orphan_pins:
        cases.setdefault(name, "")
    return ShardInfo(
        index=shard.index,
        count=shard.count,
        rubric_digest=loaded.rubric_digest,
        cases=tuple(ShardCase(case_id=k, case_digest=v) for k, v in sorted(cases.items())),
    )


def shard_info_seen(shard: Shard, case_ids: Iterable[str]) -> ShardInfo:
    """The shard record of a task class that could not be loaded: its case list is the
    cases this shard saw (no digests, no rubric digest)."""
    return ShardInfo(
        index=shard.index,
        count=shard.count,
        cases=tuple(ShardCase(case_id=case_id) for case_id in sorted(set(case_ids))),
    )
