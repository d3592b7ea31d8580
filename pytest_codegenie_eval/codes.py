"""Every failure-mode code the harness itself raises: what it means and whether a result
carrying it may be cached. All are block severity, and none may appear in a task class's
taxonomy (their prefixes are reserved). ``tests/unit/test_codes.py`` checks that every code
the package writes is listed here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

# prefixes a task class's own failure modes may not use
RESERVED_PREFIXES: tuple[str, ...] = ("sut.", "rubric.", "canary.", "harness.", "gateway.")


@dataclass(frozen=True)
class HarnessCode:
    """One code: what it means, and whether a result carrying it is ever cached (a crash,
    a timeout or tampering says nothing reusable about the agent)."""

    meaning: str
    cached: bool = True


CATALOGUE: Mapping[str, HarnessCode] = MappingProxyType(
    {
        "sut.exception": HarnessCode("the SUT exited non-zero or raised"),
        "sut.timeout": HarnessCode(
            "the SUT ran past the case's sut_timeout_s and was killed", cached=False
        ),
        "sut.escaped_workspace": HarnessCode(
            "the SUT wrote outside its workspace or left a link out of it"
        ),
        "sut.tampered_bench": HarnessCode(
            "the task class definition or the case changed during the SUT run", cached=False
        ),
        "sut.workspace_too_large": HarnessCode(
            "the workspace or the SUT's private /tmp, HOME and /dev/shm grew past "
            "--codegenie-sut-max-workspace-mb or --codegenie-sut-max-files"
        ),
        "sut.memory_exceeded": HarnessCode(
            "the SUT's processes together needed more memory than --codegenie-sut-max-memory-mb"
        ),
        "rubric.malformed_output": HarnessCode(
            "the rubric did not print exactly one valid BenchScore JSON"
        ),
        "rubric.timeout": HarnessCode(
            "the rubric ran past the case's rubric_timeout_s and was killed", cached=False
        ),
        "rubric.tampered_bench": HarnessCode(
            "the task class or the case changed while the rubric ran", cached=False
        ),
        "rubric.unknown_breakdown_key": HarnessCode("the rubric emitted a key not in BreakdownKey"),
        "rubric.unknown_failure_mode": HarnessCode(
            "the rubric emitted a code not in failure_modes.yaml"
        ),
        "canary.leaked": HarnessCode("the SUT's output contains the case's canary"),
        "harness.case_invalid": HarnessCode("the case could not be loaded"),
        "harness.digest_mismatch": HarnessCode(
            "the case's content does not match its digests.yaml pin"
        ),
        "harness.worker_crashed": HarnessCode(
            "the pytest worker running the case crashed", cached=False
        ),
        "harness.worker_lost": HarnessCode(
            "the Dask worker running the case died, and so did its retry", cached=False
        ),
        "harness.bundle_mismatch": HarnessCode(
            "a Dask worker received task class or case bytes whose digest differs from the "
            "one the controller computed",
            cached=False,
        ),
        "harness.internal_error": HarnessCode("the harness itself failed while running the case"),
        "gateway.upstream_error": HarnessCode(
            "a model call failed upstream (connection, timeout or a 5xx after the gateway's "
            "retries): infrastructure, not the agent",
            cached=False,
        ),
        "gateway.cassette_miss": HarnessCode(
            "--codegenie-model-gateway=replay: the agent made a model call its cassette does "
            "not hold"
        ),
        "gateway.limit_reached": HarnessCode(
            "the attempt reached --codegenie-gateway-max-calls or --codegenie-gateway-max-tokens; "
            "the gateway refused its further model calls"
        ),
        "gateway.unpriced_model": HarnessCode(
            "under a cost cap, the agent called a model the price table does not price; the "
            "gateway refused the call"
        ),
        "gateway.cost_cap_reached": HarnessCode(
            "the run's metered spend passed --codegenie-max-cost-usd; the gateway refused the "
            "agent's further model calls",
            cached=False,
        ),
    }
)

# code -> meaning, as the taxonomy check and the docs list them
HARNESS_FAILURE_MODES: Mapping[str, str] = MappingProxyType(
    {code: entry.meaning for code, entry in CATALOGUE.items()}
)
NOT_CACHED: frozenset[str] = frozenset(c for c, entry in CATALOGUE.items() if not entry.cached)
# failures of the infrastructure, not of the agent: a run with one is not complete evidence
INFRASTRUCTURE: frozenset[str] = frozenset({"gateway.upstream_error"})
