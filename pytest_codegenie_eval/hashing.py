"""The one way this project hashes: BLAKE3, over bytes, a file, or length-prefixed parts.

:func:`blake3_hex` is the plain BLAKE3 hex digest of some bytes (a report file's
``report_digest``, a kept diff, a pin), :func:`blake3_raw` the same as bytes;
:func:`blake3_file` streams a file of any size; :func:`blake3_keyed_hex` is BLAKE3's keyed
mode under a key from :func:`derive_key` (the audit chain's records, when a key is given);
:func:`hash_parts` hashes a sequence of parts, each preceded by its length (8 bytes,
little-endian), so no two different sequences produce the same byte stream. A domain
string, hashed first, keeps the digests of different kinds of thing (a SUT, a cache key, a
task class) apart. No other module calls BLAKE3 itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import blake3


def blake3_hex(data: bytes) -> str:
    """BLAKE3 hex digest of ``data``."""
    return str(blake3.blake3(data).hexdigest())


CHAIN_KEY_CONTEXT = "pytest-codegenie-eval 2026-12 audit chain key"


def derive_key(secret: bytes, context: str = CHAIN_KEY_CONTEXT) -> bytes:
    """A 32-byte BLAKE3 key derived from ``secret`` (any length) for ``context``
    (BLAKE3's key derivation mode, so the same secret never keys two purposes alike)."""
    return bytes(blake3.blake3(secret, derive_key_context=context).digest())


def blake3_keyed_hex(data: bytes, key: bytes) -> str:
    """BLAKE3 keyed-mode hex digest of ``data`` under a 32-byte ``key``: without the key
    nobody can compute it, which is what makes a keyed audit chain impossible to re-hash."""
    return str(blake3.blake3(data, key=key).hexdigest())


def blake3_raw(data: bytes) -> bytes:
    """BLAKE3 digest of ``data``, as 32 bytes."""
    return bytes(blake3.blake3(data).digest())


def blake3_file(path: Path, chunk: int = 1024 * 1024) -> str:
    """BLAKE3 hex digest of a file's bytes, read ``chunk`` bytes at a time."""
    hasher = blake3.blake3()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            hasher.update(block)
    return str(hasher.hexdigest())


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
