"""File names made from text the harness does not control (task class names, case ids,
run ids, tier names): the one rule for turning them into one safe path component."""

from __future__ import annotations

import re

from pytest_codegenie_eval.hashing import blake3_hex

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def name_part(text: str, *, max_chars: int = 64, fallback: str = "x") -> str:
    """``text`` as one path component: each run of characters other than letters, digits
    and ``._+-`` becomes ``_``, leading and trailing ``._-`` go (no hidden file, no ``..``),
    at most ``max_chars`` characters; ``fallback`` when nothing is left."""
    return _UNSAFE.sub("_", text).strip("._-")[:max_chars] or fallback


def unique_name_part(text: str, *, max_chars: int = 80) -> str:
    """``text`` itself when it is already a safe component (see :func:`name_part`), else
    the safe form followed by a short digest of ``text``, so two different texts never
    share a name."""
    cleaned = name_part(text, max_chars=max_chars)
    if cleaned == text:
        return text
    return f"{cleaned}-{blake3_hex(text.encode())[:8]}"


__all__ = ["name_part", "unique_name_part"]
