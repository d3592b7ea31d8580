"""The one way this project hashes: BLAKE3 over length-prefixed parts.

Every part is preceded by its length (8 bytes, little-endian), so no two different
sequences of parts produce the same byte stream. A domain string, hashed first, keeps the
digests of different kinds of thing (a SUT, a cache key, a task class) apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import blake3


def hash_parts(parts: Iterable[bytes], *, domain: bytes = b"") -> str:
    """BLAKE3 hex digest of ``domain`` followed by each part, length-prefixed."""
    hasher = blake3.blake3(domain)
    for part in parts:
        hasher.update(len(part).to_bytes(8, "little"))
        hasher.update(part)
    return str(hasher.hexdigest())


def hash_tree(files: Iterable[tuple[str, Path]], *, domain: bytes = b"") -> str:
    """Digest of files given as (relative POSIX name, path): sorted by name, each name and
    then its bytes as parts (read one file at a time)."""

    def parts() -> Iterable[bytes]:
        for name, path in sorted(files):
            yield name.encode("utf-8")
            yield path.read_bytes()

    return hash_parts(parts(), domain=domain)
