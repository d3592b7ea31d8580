"""Counting the processes the harness starts (to prove a cache hit starts none)."""

from __future__ import annotations

import pytest


def count_spawns(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    from pytest_codegenie_eval import process
    from pytest_codegenie_eval.execution import rubric_runner, sut

    spawned: list[list[str]] = []
    real = process.run_process

    def counting(argv: list[str], **kwargs: object) -> process.ProcessResult:
        spawned.append(list(argv))
        return real(argv, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rubric_runner, "run_process", counting)
    monkeypatch.setattr(sut, "run_process", counting)
    return spawned
