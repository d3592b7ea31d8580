"""Content-addressed score cache (docs/adr/0011-content-addressed-cache-key.md).

The key is BLAKE3 over the case digest, SUT digest, rubric digest, cassette corpus digest,
harness version and canary pin, each length-prefixed, so changing any of them (a whitespace
edit of rubric.py, a new SUT command) is a miss. Entries are written atomically under a
file lock; an entry that does not parse is a miss with a logged warning, never a crash.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from pydantic import ValidationError

from pytest_codegenie_eval.hashing import hash_parts
from pytest_codegenie_eval.models import CaseResult
from pytest_codegenie_eval.store.statedir import atomic_write

# through the standard logging pytest captures (shown with the failing test, or live)
log = logging.getLogger("codegenie_eval.cache")

ENTRY_VERSION = 1


@dataclass(frozen=True)
class CacheKeyParts:
    """What a cached score depends on."""

    case_digest: str
    sut_digest: str
    rubric_digest: str
    cassette_corpus_digest: str
    harness_version: str
    cassette_canary_pin: str
    sut_policy: str = ""  # the SUT's confinement (sandbox, network, paths, env, limits)
    repeat: int = 1  # the attempt (--codegenie-repeat): each has its own entry

    def key(self) -> str:
        fields: tuple[str, ...] = (
            self.case_digest,
            self.sut_digest,
            self.rubric_digest,
            self.cassette_corpus_digest,
            self.harness_version,
            self.cassette_canary_pin,
            self.sut_policy,
        )
        if self.repeat != 1:  # attempt 1 is the single attempt of an unrepeated run
            fields += (f"repeat {self.repeat}",)
        return hash_parts(
            (f.encode("utf-8") for f in fields), domain=b"pytest-codegenie-eval cache v1\0"
        )


class ScoreCache:
    """get/put/gc over ``<state>/cache/<key[:2]>/<key>.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock_path = root / ".lock"

    def path_for(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> CaseResult | None:
        path = self.path_for(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cache entry %s unreadable, treated as a miss: %s", path, exc)
            return None
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("version") != ENTRY_VERSION:
                raise ValueError("unknown entry version")
            if data.get("key") != key:
                raise ValueError("entry is stored under the wrong key")
            return CaseResult.model_validate(data["result"])
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            log.warning("corrupt cache entry %s, treated as a miss: %s", path, exc)
            return None

    def put(self, key: str, result: CaseResult) -> Path:
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(
            {"version": ENTRY_VERSION, "key": key, "result": result.model_dump(mode="json")},
            sort_keys=True,
        ).encode("utf-8")
        with FileLock(str(self._lock_path)):
            # a cache entry can always be recomputed: no fsync on this hot path
            atomic_write(path, body, durable=False)
        return path

    def entries(self) -> Iterable[Path]:
        if not self.root.is_dir():
            return []
        return sorted(self.root.glob("??/*.json"))

    def gc(self, *, max_age_s: float | None = None, keep: Iterable[str] | None = None) -> int:
        """Delete entries older than ``max_age_s`` or whose key is not in ``keep``."""
        keep_set = set(keep) if keep is not None else None
        now = time.time()
        removed = 0
        with FileLock(str(self._lock_path)):
            for path in self.entries():
                stale = keep_set is not None and path.stem not in keep_set
                if max_age_s is not None and now - path.stat().st_mtime > max_age_s:
                    stale = True
                if stale:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed
