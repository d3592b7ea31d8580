"""Per-case canaries: a secret string the SUT receives and must never echo back.

The canary is minted deterministically from the case's ``cassette_canary_pin``, so a cached
score and a fresh run agree on it, and an agent whose output contains it has leaked its
environment into its work (a sign of prompt-injection or of copying the answer key).
"""

from __future__ import annotations

from pytest_codegenie_eval.hashing import blake3_hex
from pytest_codegenie_eval.models import BenchCase

CANARY_ENV = "CODEGENIE_CANARY"
_DOMAIN = b"pytest-codegenie-eval canary v1\0"


def mint(seed: str) -> str:
    """The canary for a seed: ``CODEGENIE-CANARY-`` and 32 hex characters."""
    digest = blake3_hex(_DOMAIN + seed.strip().lower().encode("utf-8"))
    return f"CODEGENIE-CANARY-{digest[:32]}"


def canary_for(case: BenchCase) -> str:
    """The canary of a case (minted from its pin)."""
    return mint(case.cassette_canary_pin)


def leaked(canary: str, *texts: str) -> bool:
    """Whether any of the texts contains the canary."""
    return any(canary in text for text in texts)
