"""Counting the processes the harness starts (to prove a cache hit starts none)."""

from __future__ import annotations

import pytest


def count_spawns(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    from pytest_codegenie_eval import process
    from pytest_codegenie_eval.execution import rubric_runner, sut

    spawned: list[list[str]] = []
    real_run, real_start = process.run_process, process.start_process

    def counting(argv: list[str], **kwargs: object) -> process.ProcessResult:
        spawned.append(list(argv))
        return real_run(argv, **kwargs)  # type: ignore[arg-type]

    def counting_start(
        argv: list[str], **kwargs: object
    ) -> process.StartedProcess | process.ProcessResult:
        spawned.append(list(argv))
        return real_start(argv, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rubric_runner, "start_process", counting_start)  # the rubric
    monkeypatch.setattr(sut, "run_process", counting)  # the SUT
    return spawned
