"""Command-line and ini options, defined once and validated once (also used by the CLI)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest

from pytest_codegenie_eval import defaults
from pytest_codegenie_eval.pytest_plugin.activation import bench_names

if TYPE_CHECKING:
    # declaring the options imports only the defaults: the rest is needed once a bench runs
    from pytest_codegenie_eval.evidence.shards import Shard
    from pytest_codegenie_eval.execution.executors.spec import ExecutorSpec
    from pytest_codegenie_eval.execution.gateway.metering import PriceTable
    from pytest_codegenie_eval.execution.gateway.settings import GatewayMode, GatewaySettings
    from pytest_codegenie_eval.execution.isolation.sandbox import NetworkMode, SandboxMode
    from pytest_codegenie_eval.execution.sut import SutPolicy

DEFAULT_IMPORT_TIMEOUT_S = defaults.IMPORT_TIMEOUT_S
GATEWAY_MODES = defaults.GATEWAY_MODES
UPSTREAM_HELP = defaults.UPSTREAM_HELP

GROUP = "codegenie-eval"
RUBRIC_SANDBOXES = defaults.RUBRIC_SANDBOXES
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# (option dest and ini name, SutLimits field, flag, default)
_LIMIT_OPTIONS = (
    (
        "codegenie_sut_max_workspace_mb",
        "max_workspace_mb",
        "--codegenie-sut-max-workspace-mb",
        defaults.SUT_MAX_WORKSPACE_MB,
    ),
    (
        "codegenie_sut_max_memory_mb",
        "memory_mb",
        "--codegenie-sut-max-memory-mb",
        defaults.SUT_MEMORY_MB,
    ),
    ("codegenie_sut_max_procs", "max_procs", "--codegenie-sut-max-procs", defaults.SUT_MAX_PROCS),
    (
        "codegenie_sut_max_file_mb",
        "max_file_mb",
        "--codegenie-sut-max-file-mb",
        defaults.SUT_MAX_FILE_MB,
    ),
    ("codegenie_sut_max_files", "max_files", "--codegenie-sut-max-files", defaults.SUT_MAX_FILES),
)


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
        "--codegenie-model-gateway",
        default=None,
        choices=GATEWAY_MODES,
        help="the agent reaches models only through the harness's gateway: live (forward, "
        "meter, keep transcripts), record (live, and write cassettes to "
        "--codegenie-cassettes), replay (answer from the cassettes, no upstream); off "
        "(default) leaves the SUT's network as --codegenie-sut-network says (needs the "
        "gateway extra)",
    )
    group.addoption(
        "--codegenie-upstream",
        action="append",
        default=None,
        metavar="NAME=URL",
        help=UPSTREAM_HELP,
    )
    group.addoption(
        "--codegenie-prices",
        default=None,
        metavar="PATH",
        help="price table (YAML: per model, USD per million input/output/cached-input "
        "tokens) that turns the gateway's metered tokens into each case's cost",
    )
    group.addoption(
        "--codegenie-sut-egress",
        action="append",
        default=None,
        metavar="HOST[:PORT]",
        help="a host (port 443 unless given) the sandboxed agent may reach through the "
        "model gateway as its HTTPS proxy (repeatable); every other host is refused and "
        "recorded",
    )
    group.addoption(
        "--codegenie-gateway-max-calls",
        default=None,
        metavar="N",
        help="most model calls one attempt may make through the gateway; further calls are "
        "refused (HTTP 429) and the case fails with gateway.limit_reached",
    )
    group.addoption(
        "--codegenie-gateway-max-tokens",
        default=None,
        metavar="N",
        help="most tokens (input and output) one attempt may use through the gateway; "
        "further calls are refused (HTTP 429) and the case fails with gateway.limit_reached",
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
    group.addoption(
        "--codegenie-sut-sandbox",
        default=None,
        choices=("bwrap", "none"),
        help="confine command and baseline SUTs with bubblewrap (default: bwrap) or run "
        "them with only an environment allowlist (none)",
    )
    group.addoption(
        "--codegenie-sut-network",
        default=None,
        choices=("none", "host"),
        help="the sandboxed SUT's network: none (default) or the host's (an agent that "
        "calls a model API needs host)",
    )
    group.addoption(
        "--codegenie-sut-ro",
        action="append",
        default=None,
        metavar="PATH",
        help="an extra path the sandboxed SUT may read, e.g. an agent's installation (repeatable)",
    )
    group.addoption(
        "--codegenie-sut-env",
        action="append",
        default=None,
        metavar="NAME",
        help="pass the harness's environment variable NAME to the SUT, e.g. an API key "
        "(repeatable)",
    )
    for dest, attr, flag, default in _LIMIT_OPTIONS:
        group.addoption(
            flag,
            dest=dest,
            default=None,
            metavar="N",
            help=f"SUT limit: {attr.replace('_', ' ')} (default {default})",
        )
    group.addoption(
        "--codegenie-label",
        default=None,
        metavar="NAME",
        help="the name of the agent under test, stored in the report (one series per label "
        "on the results page); metadata only, never part of the run id",
    )
    group.addoption(
        "--codegenie-progress",
        default=None,
        metavar="SECONDS|off",
        help="print a progress line (cases done, failures, elapsed, spend, time left) at most "
        "every SECONDS while cases finish (default 30; 0: after every case; off: never)",
    )
    group.addoption(
        "--codegenie-cases",
        default=None,
        metavar="ID[,ID...]",
        help="run only these case ids of the selected task classes (exact ids; an unknown "
        "id is a usage error); like -k, the run is a subset",
    )
    group.addoption(
        "--codegenie-gate",
        default=None,
        metavar="TIER",
        help="CI gate on the evidence: judge every selected task class for TIER and exit 0 "
        "when the evidence is sufficient, 1 when it is not (failing cases stay failures in "
        "the report and junitxml, but no longer decide the exit status alone)",
    )
    group.addoption(
        "--codegenie-chain-key-env",
        default=None,
        metavar="VAR",
        help="key the audit chain: the environment variable holding the secret (e.g. a CI "
        "secret); records are hashed with BLAKE3's keyed mode, so the chain cannot be "
        "re-hashed without it, and a keyed chain is only checked with it",
    )
    group.addoption(
        "--codegenie-sandbox-user",
        default=None,
        metavar="USER",
        help="when the harness runs as root: the unprivileged host user (NAME, UID or "
        f"UID:GID) every SUT and rubric sandbox runs as (default {defaults.JAIL_USER})",
    )
    group.addoption(
        "--codegenie-require-sandbox",
        action="store_true",
        default=False,
        help="refuse to start when the SUT sandbox (bubblewrap) is unavailable",
    )
    group.addoption(
        "--codegenie-rubric-sandbox",
        default=None,
        choices=RUBRIC_SANDBOXES,
        help="how rubrics are isolated: auto (default: bwrap, else namespaces, else "
        "environment only), bwrap, namespaces or none",
    )
    group.addoption(
        "--codegenie-compare-to",
        default=None,
        metavar="REPORT",
        help="at session end, compare each task class's run with this one (a report file, "
        "a recorded run id, or latest:TASK_CLASS[:SUT], resolved before any case runs)",
    )
    group.addoption(
        "--codegenie-fail-on-partial",
        action="store_true",
        default=None,
        help="exit non-zero when a run is partial (cost cap, or a subset of cases)",
    )
    group.addoption(
        "--codegenie-github-annotations",
        default=None,
        choices=("on", "off"),
        help="under GitHub Actions, one ::error annotation per failed case (default on)",
    )
    group.addoption(
        "--codegenie-repeat",
        default=None,
        metavar="K",
        help="run each case K times, as K items <case_id>[r1]..[rK]; the case stays the "
        "unit of evidence (default 1)",
    )
    group.addoption(
        "--codegenie-executor",
        default=None,
        metavar="WHERE",
        help="where cases run: local (default), local:N (N attempts at once in this pytest "
        "process: for agents that wait on a model), dask-local[:WORKERS] (a LocalCluster), "
        "dask+tls://HOST:PORT (a running scheduler, TLS with Dask's own security config), "
        "dask://HOST:PORT (plain TCP: refused with --codegenie-sut-network=host); needs the "
        "dask extra",
    )
    group.addoption(
        "--codegenie-html",
        default=None,
        metavar="DIR",
        help="at session end, build the static results page of the state directory in DIR "
        "(needs the html extra)",
    )
    group.addoption(
        "--codegenie-shard",
        default=None,
        metavar="I/N",
        help="run shard I of N of each task class's cases (a CI matrix job); join the shard "
        "reports with `codegenie-eval merge`",
    )
    group.addoption(
        "--codegenie-import-timeout",
        default=None,
        metavar="SECONDS",
        help="time limit for importing a task class's registration.py and breakdown_keys.py "
        f"(in a child process; default {DEFAULT_IMPORT_TIMEOUT_S:g})",
    )
    parser.addini("codegenie_bench", "default task class(es) to run", type="args", default=[])
    parser.addini("codegenie_bench_root", "bench root directory", default=defaults.BENCH_ROOT)
    parser.addini("codegenie_sut", "default SUT (baseline, noop or a command)", default="")
    parser.addini("codegenie_max_cost_usd", "default cost cap in USD", default="")
    parser.addini("codegenie_state_dir", "state directory", default=defaults.STATE_DIR)
    parser.addini("codegenie_tiers", "trust tier configuration", default=defaults.TIERS)
    parser.addini("codegenie_sut_sandbox", "SUT sandbox: bwrap or none", default="")
    parser.addini("codegenie_sut_network", "sandboxed SUT network: none or host", default="")
    parser.addini("codegenie_sut_ro", "extra read-only paths for the SUT", type="args", default=[])
    parser.addini(
        "codegenie_sandbox_user", "host user of the sandboxes when the harness is root", default=""
    )
    parser.addini(
        "codegenie_chain_key_env", "environment variable holding the audit chain key", default=""
    )
    parser.addini("codegenie_gate", "CI gate: the tier whose verdict decides the exit", default="")
    parser.addini(
        "codegenie_progress", "progress line every SECONDS (0: each case; off)", default=""
    )
    parser.addini("codegenie_label", "the name of the agent under test (in the report)", default="")
    parser.addini(
        "codegenie_sut_env", "environment variables passed to the SUT", type="args", default=[]
    )
    for dest, attr, _flag, _default in _LIMIT_OPTIONS:
        parser.addini(dest, f"SUT limit: {attr}", default="")
    parser.addini(
        "codegenie_require_sandbox",
        "refuse to run without the SUT sandbox",
        type="bool",
        default=False,
    )
    parser.addini(
        "codegenie_rubric_sandbox", "rubric isolation: auto, bwrap, namespaces, none", default=""
    )
    parser.addini("codegenie_import_timeout", "task class import time limit (s)", default="")
    parser.addini("codegenie_repeat", "attempts per case (default 1)", default="")
    parser.addini(
        "codegenie_fail_on_partial", "exit non-zero on a partial run", type="bool", default=False
    )
    parser.addini("codegenie_github_annotations", "on or off (default on)", default="")
    parser.addini("codegenie_cache", "score cache: on (default) or off", default="")
    parser.addini(
        "codegenie_executor",
        "local, local:N, dask-local[:N], dask+tls://HOST:PORT or dask://HOST:PORT",
        default="",
    )
    parser.addini("codegenie_html", "results page directory, built at session end", default="")
    parser.addini("codegenie_model_gateway", "off (default), live, record or replay", default="")
    parser.addini("codegenie_upstream", "NAME=URL upstreams of the gateway", type="linelist")
    parser.addini("codegenie_prices", "the gateway's price table (YAML)", default="")
    parser.addini("codegenie_gateway_max_calls", "model calls per attempt", default="")
    parser.addini("codegenie_sut_egress", "HOST[:PORT] the agent may reach", type="linelist")
    parser.addini("codegenie_gateway_max_tokens", "model tokens per attempt", default="")


def _default_gateway() -> GatewaySettings:
    from pytest_codegenie_eval.execution.gateway.settings import GatewaySettings

    return GatewaySettings()


def _gateway(
    config: pytest.Config,
    root: Path,
    cassettes: Path | None,
    cap: float | None,
    env_names: tuple[str, ...],
) -> GatewaySettings:
    """The model gateway's settings, every value checked once."""
    from pytest_codegenie_eval.execution.gateway.settings import (
        GatewayConfigError,
        GatewaySettings,
        parse_upstream,
        with_upstreams,
    )

    mode = _choice(config, "codegenie_model_gateway", GATEWAY_MODES, "off")
    raw = list(config.getoption("codegenie_upstream") or config.getini("codegenie_upstream"))
    try:
        extra = tuple(parse_upstream(str(text)) for text in raw)
    except GatewayConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    prices = _optional_path(root, config, "codegenie_prices")
    from pytest_codegenie_eval.execution.gateway.egress import parse_egress

    raw_egress = config.getoption("codegenie_sut_egress") or config.getini("codegenie_sut_egress")
    try:
        egress = tuple(parse_egress(str(text)) for text in raw_egress)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    if mode == "off":
        if egress:
            raise pytest.UsageError(
                "--codegenie-sut-egress needs --codegenie-model-gateway: the allowed hosts are "
                "reached through the gateway"
            )
        return GatewaySettings(upstreams=with_upstreams(extra))
    upstreams = with_upstreams(extra)
    keys = sorted({u.key_env for u in upstreams} & set(env_names))
    if keys:
        raise pytest.UsageError(
            f"--codegenie-sut-env={keys[0]} with --codegenie-model-gateway={mode}: the gateway "
            "keeps the key outside the sandbox and adds it to each model call itself; passing "
            "it to the agent would only expose it (drop --codegenie-sut-env for it)"
        )
    limits = {}
    for name in ("codegenie_gateway_max_calls", "codegenie_gateway_max_tokens"):
        raw_limit = config.getoption(name) or config.getini(name)
        if raw_limit in (None, ""):
            continue
        if not str(raw_limit).isdigit() or int(raw_limit) < 1:
            flag = "--" + name.replace("_", "-")
            raise pytest.UsageError(f"{flag} must be a positive whole number, got {raw_limit!r}")
        limits[name.removeprefix("codegenie_gateway_")] = int(raw_limit)
    if mode in ("record", "replay") and cassettes is None:
        raise pytest.UsageError(
            f"--codegenie-model-gateway={mode} needs --codegenie-cassettes=DIR (where the "
            "cassettes are written and read)"
        )
    if cap is not None and prices is None:
        raise pytest.UsageError(
            "--codegenie-max-cost-usd with --codegenie-model-gateway needs a price table "
            "(--codegenie-prices=PATH): the cap counts metered cost, not what the agent claims"
        )
    return GatewaySettings(
        mode=cast("GatewayMode", mode),
        upstreams=upstreams,
        cassette_dir=cassettes,
        prices=_price_table(prices),
        max_calls=limits.get("max_calls"),
        max_tokens=limits.get("max_tokens"),
        egress=egress,
    )


def _price_table(path: Path | None) -> PriceTable | None:
    if path is None:
        return None
    from pytest_codegenie_eval.errors import CodegenieEvalError
    from pytest_codegenie_eval.execution.gateway.metering import load_price_table

    try:
        return load_price_table(path)
    except CodegenieEvalError as exc:
        raise pytest.UsageError(f"--codegenie-prices: {exc}") from None


def _default_policy() -> SutPolicy:
    from pytest_codegenie_eval.execution.sut import SutPolicy

    return SutPolicy()


DEFAULT_PROGRESS_S = 30.0
"""Seconds between progress lines unless --codegenie-progress says otherwise."""


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
    sut_policy: SutPolicy = field(default_factory=lambda: _default_policy())
    require_sandbox: bool = False
    rubric_sandbox: str = "auto"
    import_timeout_s: float = DEFAULT_IMPORT_TIMEOUT_S
    repeat: int = 1
    compare_to: str | None = None
    fail_on_partial: bool = False
    github_annotations: bool = True
    shard: Shard | None = None
    html: Path | None = None  # --codegenie-html
    executor: ExecutorSpec | None = None  # None: local (in pytest or its xdist workers)
    gateway: GatewaySettings = field(default_factory=lambda: _default_gateway())
    chain_key: bytes | None = field(default=None, repr=False)  # --codegenie-chain-key-env
    gate_tier: str | None = None  # --codegenie-gate: the verdict for it decides the exit
    cases: frozenset[str] | None = None  # --codegenie-cases: only these case ids
    progress_every_s: float | None = DEFAULT_PROGRESS_S  # --codegenie-progress (None: off)
    label: str = ""  # --codegenie-label

    @property
    def executor_label(self) -> str:
        return self.executor.label if self.executor is not None else "local"


def _positive_seconds(config: pytest.Config, name: str, default: float) -> float:
    raw = config.getoption(name) or config.getini(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        flag = "--" + name.replace("_", "-")
        raise pytest.UsageError(f"{flag} must be a positive number of seconds, got {raw!r}")
    return value


def _on_off(config: pytest.Config, name: str) -> bool:
    raw = str(config.getoption(name, None) or config.getini(name) or "on").lower()
    if raw not in ("on", "off"):
        raise pytest.UsageError(f"{name} must be on or off, got {raw!r}")
    return raw == "on"


MAX_REPEAT = 1000


def _repeat(config: pytest.Config) -> int:
    raw = config.getoption("codegenie_repeat") or config.getini("codegenie_repeat")
    if raw in (None, ""):
        return 1
    try:
        value = int(str(raw))
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_REPEAT:
        raise pytest.UsageError(
            f"--codegenie-repeat must be a whole number from 1 to {MAX_REPEAT}, got {raw!r}"
        )
    return value


def _path(root: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def _optional_path(root: Path, config: pytest.Config, name: str) -> Path | None:
    raw = config.getoption(name) or config.getini(name)
    return _path(root, str(raw)) if raw else None


def _executor(config: pytest.Config) -> ExecutorSpec | None:
    raw = config.getoption("codegenie_executor") or config.getini("codegenie_executor")
    if not raw or str(raw).strip() == "local":
        return None
    from pytest_codegenie_eval.execution.executors.spec import parse_executor

    try:
        spec = parse_executor(str(raw))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    if spec.kind == "local" and not spec.concurrent_local:
        return None  # local:1 is local
    workers = config.getoption("numprocesses", None)
    if workers not in (None, 0, "0"):
        runs = (
            f"this process runs {spec.workers} attempts at once"
            if spec.concurrent_local
            else "the Dask cluster runs the cases in parallel"
        )
        raise pytest.UsageError(
            f"--codegenie-executor={spec.label} and -n {workers}: one fan-out at a time "
            f"({runs}; drop -n)"
        )
    return spec


def _shard(config: pytest.Config) -> Shard | None:
    raw = config.getoption("codegenie_shard")
    if not raw:
        return None
    from pytest_codegenie_eval.evidence.shards import parse_shard

    try:
        return parse_shard(str(raw))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def settings_from_config(config: pytest.Config) -> Settings:
    """Command line over ini, validated; bad values are a ``pytest.UsageError``."""
    root = config.rootpath
    benches = bench_names(config)
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
    bench_root = _path(
        root, config.getoption("codegenie_bench_root") or config.getini("codegenie_bench_root")
    )
    state_dir = _path(
        root, config.getoption("codegenie_state_dir") or config.getini("codegenie_state_dir")
    )
    tiers = _path(root, config.getoption("codegenie_tiers") or config.getini("codegenie_tiers"))
    cassettes_raw = config.getoption("codegenie_cassettes")
    cassettes = _path(root, cassettes_raw).resolve() if cassettes_raw else None
    recording = (
        config.getoption("codegenie_model_gateway") or config.getini("codegenie_model_gateway")
    ) == "record"
    if cassettes is not None and recording:
        cassettes.mkdir(parents=True, exist_ok=True)
    if cassettes is not None:
        if not cassettes.is_dir():
            raise pytest.UsageError(f"--codegenie-cassettes {cassettes} is not a directory")
        # the SUT reads it inside its sandbox: the same guards as --codegenie-sut-ro
        _refuse_guarded(
            "--codegenie-cassettes", cassettes_raw, cassettes, root, bench_root, state_dir
        )
    policy = _sut_policy(config, root, bench_root=bench_root, state_dir=state_dir)
    rubric_sandbox = str(
        config.getoption("codegenie_rubric_sandbox")
        or config.getini("codegenie_rubric_sandbox")
        or "auto"
    )
    if rubric_sandbox not in RUBRIC_SANDBOXES:
        raise pytest.UsageError(
            f"codegenie_rubric_sandbox must be one of {', '.join(RUBRIC_SANDBOXES)}, "
            f"got {rubric_sandbox!r}"
        )
    return Settings(
        benches=tuple(benches),
        bench_root=bench_root,
        sut=str(sut) if sut else None,
        no_cache=bool(config.getoption("codegenie_no_cache"))
        or not _on_off(config, "codegenie_cache"),
        max_cost_usd=cap,
        cassettes=cassettes,
        jsonl=config.getoption("codegenie_jsonl"),
        state_dir=state_dir,
        verdict_tier=_verdict_tier(config),
        tiers_path=tiers,
        strict=bool(config.getoption("codegenie_strict")),
        fence=bool(config.getoption("codegenie_fence")),
        keep_workspaces=bool(config.getoption("codegenie_keep_workspaces")),
        sut_policy=policy,
        require_sandbox=bool(
            config.getoption("codegenie_require_sandbox")
            or config.getini("codegenie_require_sandbox")
        ),
        rubric_sandbox=rubric_sandbox,
        import_timeout_s=_positive_seconds(
            config, "codegenie_import_timeout", DEFAULT_IMPORT_TIMEOUT_S
        ),
        repeat=_repeat(config),
        compare_to=config.getoption("codegenie_compare_to") or None,
        fail_on_partial=bool(
            config.getoption("codegenie_fail_on_partial")
            or config.getini("codegenie_fail_on_partial")
        ),
        github_annotations=_on_off(config, "codegenie_github_annotations"),
        shard=_shard(config),
        html=_optional_path(root, config, "codegenie_html"),
        executor=_executor(config),
        gateway=_gateway(config, root, cassettes, cap, policy.env_names),
        chain_key=_chain_key(config),
        gate_tier=_gate_tier(config),
        cases=_cases(config),
        progress_every_s=_progress_every(config),
        label=_label(config),
    )


def _choice(config: pytest.Config, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = str(config.getoption(name) or config.getini(name) or default)
    if value not in allowed:
        raise pytest.UsageError(
            f"{name} must be one of {', '.join(allowed)}, got {value!r} "
            f"(--{name.replace('_', '-')} / ini {name})"
        )
    return value


def _sut_policy(
    config: pytest.Config, root: Path, *, bench_root: Path, state_dir: Path
) -> SutPolicy:
    """The SUT's confinement from the options, every value checked once."""
    from pytest_codegenie_eval.execution.isolation.jailuser import (
        JailUserError,
        harness_is_root,
        resolve_jail_user,
    )
    from pytest_codegenie_eval.execution.sut import SutLimits, SutPolicy

    sandbox = cast(
        "SandboxMode", _choice(config, "codegenie_sut_sandbox", ("bwrap", "none"), "bwrap")
    )
    network = cast(
        "NetworkMode", _choice(config, "codegenie_sut_network", ("none", "host"), "none")
    )
    limits: dict[str, int] = {}
    for dest, attr, flag, _default in _LIMIT_OPTIONS:
        raw = config.getoption(dest) or config.getini(dest)
        if raw in (None, ""):
            continue
        try:
            value = int(str(raw))
        except ValueError:
            raise pytest.UsageError(f"{flag} must be a whole number, got {raw!r}") from None
        if value < 1:
            raise pytest.UsageError(f"{flag} must be at least 1, got {raw!r}")
        limits[attr] = value
    env_names: list[str] = []
    for name in config.getoption("codegenie_sut_env") or config.getini("codegenie_sut_env") or []:
        if not _ENV_NAME.match(str(name)):
            raise pytest.UsageError(
                f"--codegenie-sut-env takes a variable name (letters, digits, _), got {name!r}"
            )
        if name not in env_names:
            env_names.append(str(name))
    ro_paths: list[Path] = []
    for raw in config.getoption("codegenie_sut_ro") or config.getini("codegenie_sut_ro") or []:
        path = _path(root, str(raw)).resolve()
        if not path.exists():
            raise pytest.UsageError(f"--codegenie-sut-ro {raw!r}: {path} does not exist")
        _refuse_guarded("--codegenie-sut-ro", str(raw), path, root, bench_root, state_dir)
        if path not in ro_paths:
            ro_paths.append(path)
    user_raw = config.getoption("codegenie_sandbox_user") or config.getini("codegenie_sandbox_user")
    try:
        user = resolve_jail_user(str(user_raw) if user_raw else None)
    except JailUserError as exc:
        raise pytest.UsageError(str(exc)) from None
    return SutPolicy(
        sandbox=sandbox,
        network=network,
        ro_paths=tuple(ro_paths),
        env_names=tuple(env_names),
        limits=SutLimits(**limits),
        # a harness that is not root starts its jails as itself
        jail_user=user if harness_is_root() else None,
    )


def _label(config: pytest.Config) -> str:
    raw = str(config.getoption("codegenie_label") or config.getini("codegenie_label") or "")
    label = raw.strip()
    if len(label) > 200 or any(not ch.isprintable() for ch in label):
        raise pytest.UsageError(
            "--codegenie-label must be printable text of at most 200 characters"
        )
    return label


def _progress_every(config: pytest.Config) -> float | None:
    raw = config.getoption("codegenie_progress") or config.getini("codegenie_progress")
    if raw in (None, ""):
        return DEFAULT_PROGRESS_S
    if str(raw).lower() == "off":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise pytest.UsageError(
            f"--codegenie-progress must be a number of seconds (0: after every case) or off, "
            f"got {raw!r}"
        )
    return value


def _cases(config: pytest.Config) -> frozenset[str] | None:
    raw = config.getoption("codegenie_cases")
    if not raw:
        return None
    ids = frozenset(part.strip() for part in str(raw).split(",") if part.strip())
    if not ids:
        raise pytest.UsageError("--codegenie-cases names no case id")
    return ids


def _gate_tier(config: pytest.Config) -> str | None:
    raw = config.getoption("codegenie_gate") or config.getini("codegenie_gate")
    return str(raw) if raw else None


def _verdict_tier(config: pytest.Config) -> str | None:
    """The tier to judge: --codegenie-verdict, or the gate's (the gate needs its verdict)."""
    asked = config.getoption("codegenie_verdict")
    gate = _gate_tier(config)
    if asked and gate and asked != gate:
        raise pytest.UsageError(
            f"--codegenie-verdict={asked} and --codegenie-gate={gate} name different tiers; "
            "the gate judges its own tier"
        )
    return str(asked) if asked else gate


def _chain_key(config: pytest.Config) -> bytes | None:
    variable = config.getoption("codegenie_chain_key_env") or config.getini(
        "codegenie_chain_key_env"
    )
    if not variable:
        return None
    from pytest_codegenie_eval.store.audit import key_from_environment

    try:
        return key_from_environment(str(variable))
    except ValueError as exc:
        raise pytest.UsageError(f"--codegenie-chain-key-env: {exc}") from None


def _refuse_guarded(
    flag: str, raw: str, path: Path, root: Path, bench_root: Path, state_dir: Path
) -> None:
    """A path the SUT's sandbox binds may neither hold nor lie inside the rootdir's guarded
    trees: the rootdir, the bench root (every answer key) or the state directory."""
    guarded = {
        "the pytest rootdir": root.resolve(),
        "the bench root (it holds every answer key)": bench_root.resolve(),
        "the state directory (cache, reports, audit chain)": state_dir.resolve(),
    }
    for what, guarded_path in guarded.items():
        if guarded_path == path or guarded_path.is_relative_to(path):
            raise pytest.UsageError(
                f"{flag} {raw!r} would show the SUT {what} ({guarded_path}); "
                "name the agent's own directory instead"
            )
    if path.is_relative_to(bench_root.resolve()) or path.is_relative_to(state_dir.resolve()):
        raise pytest.UsageError(
            f"{flag} {raw!r} lies inside the bench root or the state "
            "directory, which the SUT must never see"
        )
