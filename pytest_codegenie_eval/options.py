"""Command-line and ini options, defined once and validated once (also used by the CLI)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest

GROUP = "codegenie-eval"


def add_options(parser: pytest.Parser) -> None:
    """Register every option under one group, each with an ini twin where it makes sense."""
    group = parser.getgroup(GROUP, "pytest-codegenie-eval: score agents on benches")
    group.addoption(
        "--codegenie-bench",
        action="append",
        default=None,
        metavar="NAME[,NAME]",
        help="task class(es) to run, by directory name under the bench root (repeatable)",
    )
    group.addoption(
        "--codegenie-bench-root",
        default=None,
        metavar="DIR",
        help="directory holding one folder per task class (default: bench)",
    )
    group.addoption(
        "--codegenie-sut",
        default=None,
        metavar="SUT",
        help="baseline (default), noop, or a command template like "
        "'python agent.py {workspace}' ({case_id} is also available)",
    )
    group.addoption(
        "--codegenie-no-cache",
        action="store_true",
        default=False,
        help="ignore and do not write the score cache",
    )
    group.addoption(
        "--codegenie-max-cost-usd",
        default=None,
        metavar="USD",
        help="stop starting new cases once recorded SUT cost passes USD",
    )
    group.addoption(
        "--codegenie-cassettes",
        default=None,
        metavar="DIR",
        help="recorded model interactions the SUT replays (CODEGENIE_CASSETTE_DIR)",
    )
    group.addoption(
        "--codegenie-jsonl",
        default=None,
        metavar="PATH",
        help="write one JSON line per case and one aggregate line ('-' = stdout)",
    )
    group.addoption(
        "--codegenie-state-dir",
        default=None,
        metavar="DIR",
        help="where cache/, runs/, audit.jsonl live (default: .codegenie/eval)",
    )
    group.addoption(
        "--codegenie-verdict",
        default=None,
        metavar="TIER",
        help="evaluate the read-only promotion gate for TIER at session end",
    )
    group.addoption(
        "--codegenie-tiers",
        default=None,
        metavar="PATH",
        help="trust tier configuration (default: docs/trust-tiers.yaml)",
    )
    group.addoption(
        "--codegenie-strict",
        action="store_true",
        default=False,
        help="abort before any SUT starts if a case's digest pin does not match",
    )
    group.addoption(
        "--codegenie-fence",
        action="store_true",
        default=False,
        help="check every task class directory against the contract; run no case",
    )
    group.addoption(
        "--codegenie-keep-workspaces",
        action="store_true",
        default=False,
        help="keep each case's workspace directory for inspection",
    )
    parser.addini("codegenie_bench", "default task class(es) to run", type="args", default=[])
    parser.addini("codegenie_bench_root", "bench root directory", default="bench")
    parser.addini("codegenie_sut", "default SUT (baseline, noop or a command)", default="")
    parser.addini("codegenie_max_cost_usd", "default cost cap in USD", default="")
    parser.addini("codegenie_state_dir", "state directory", default=".codegenie/eval")
    parser.addini("codegenie_tiers", "trust tier configuration", default="docs/trust-tiers.yaml")


@dataclass(frozen=True)
class Settings:
    """The validated options of one session."""

    benches: tuple[str, ...]
    bench_root: Path
    sut: str | None
    no_cache: bool
    max_cost_usd: float | None
    cassettes: Path | None
    jsonl: str | None
    state_dir: Path
    verdict_tier: str | None
    tiers_path: Path
    strict: bool
    fence: bool
    keep_workspaces: bool


def _path(root: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def settings_from_config(config: pytest.Config) -> Settings:
    """Command line over ini, validated; bad values are a ``pytest.UsageError``."""
    root = config.rootpath
    raw_benches = config.getoption("codegenie_bench") or config.getini("codegenie_bench") or []
    benches: list[str] = []
    for value in raw_benches:
        for name in str(value).split(","):
            name = name.strip()
            if name and name not in benches:
                benches.append(name)
    cap_raw = config.getoption("codegenie_max_cost_usd") or config.getini("codegenie_max_cost_usd")
    cap: float | None = None
    if cap_raw not in (None, ""):
        try:
            cap = float(cap_raw)
        except ValueError:
            raise pytest.UsageError(
                f"--codegenie-max-cost-usd must be a number of USD, got {cap_raw!r}"
            ) from None
        if not math.isfinite(cap) or cap < 0:
            raise pytest.UsageError(f"--codegenie-max-cost-usd must be >= 0, got {cap_raw!r}")
    sut = config.getoption("codegenie_sut") or config.getini("codegenie_sut") or None
    cassettes_raw = config.getoption("codegenie_cassettes")
    cassettes = _path(root, cassettes_raw) if cassettes_raw else None
    if cassettes is not None and not cassettes.is_dir():
        raise pytest.UsageError(f"--codegenie-cassettes {cassettes} is not a directory")
    bench_root = _path(
        root, config.getoption("codegenie_bench_root") or config.getini("codegenie_bench_root")
    )
    state_dir = _path(
        root, config.getoption("codegenie_state_dir") or config.getini("codegenie_state_dir")
    )
    tiers = _path(root, config.getoption("codegenie_tiers") or config.getini("codegenie_tiers"))
    return Settings(
        benches=tuple(benches),
        bench_root=bench_root,
        sut=str(sut) if sut else None,
        no_cache=bool(config.getoption("codegenie_no_cache")),
        max_cost_usd=cap,
        cassettes=cassettes,
        jsonl=config.getoption("codegenie_jsonl"),
        state_dir=state_dir,
        verdict_tier=config.getoption("codegenie_verdict"),
        tiers_path=tiers,
        strict=bool(config.getoption("codegenie_strict")),
        fence=bool(config.getoption("codegenie_fence")),
        keep_workspaces=bool(config.getoption("codegenie_keep_workspaces")),
    )
