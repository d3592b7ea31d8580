"""docs/trust-tiers.yaml: loading, validation errors with key and line, tier order."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from pytest_codegenie_eval.errors import TierConfigInvalid
from pytest_codegenie_eval.evidence.tiers import TierConfig, UnknownTier, load_tier_config

REPO_ROOT = Path(__file__).resolve().parents[2]

VALID = """\
# uncalibrated
schema_version: 1
uncalibrated: true
thresholds:
  bronze: 0.70
  silver: 0.80
  gold: 0.90
current_tiers:
  vuln-remediation: none
  other: bronze
evidence_window: 2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trust-tiers.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_shipped_config_is_marked_uncalibrated_and_loads() -> None:
    path = REPO_ROOT / "docs" / "trust-tiers.yaml"
    text = path.read_text(encoding="utf-8")
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any("UNCALIBRATED" in line.upper() for line in header)

    config = load_tier_config(path)

    assert config.uncalibrated is True
    assert config.schema_version == 1
    assert config.thresholds == {"bronze": 0.70, "silver": 0.80, "gold": 0.90}
    assert config.current_tiers == {
        "vuln-remediation": None,
        "migration-chainguard-distroless": None,
    }
    assert config.evidence_window == 1


def test_valid_config_loads(tmp_path: Path) -> None:
    config = load_tier_config(write(tmp_path, VALID))

    assert config.tiers == ("bronze", "silver", "gold")
    assert config.threshold("silver") == 0.80
    assert config.current_tier("vuln-remediation") is None
    assert config.current_tier("other") == "bronze"
    assert config.current_tier("never-mentioned") is None
    assert config.evidence_window == 2


def test_optional_keys_default(tmp_path: Path) -> None:
    config = load_tier_config(write(tmp_path, "schema_version: 1\nthresholds: {bronze: 1}\n"))

    assert config.uncalibrated is True
    assert config.current_tiers == {}
    assert config.evidence_window == 1
    assert config.threshold("bronze") == 1.0


def test_null_current_tier_means_none(tmp_path: Path) -> None:
    text = "schema_version: 1\nthresholds: {bronze: 0.7}\ncurrent_tiers: {a: null, b: none}\n"
    config = load_tier_config(write(tmp_path, text))

    assert config.current_tiers == {"a": None, "b": None}


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_tier_config(write(tmp_path, VALID))

    with pytest.raises(ValidationError):
        config.evidence_window = 5


@pytest.mark.parametrize(
    ("text", "key", "line", "fragment"),
    [
        pytest.param(
            "schema_version: 1\nthresholds: {bronze: 0.7}\ntiers: {}\n",
            "tiers",
            3,
            "unknown key 'tiers'",
            id="unknown-top-level-key",
        ),
        pytest.param(
            "# header\nthresholds: {bronze: 0.7}\n",
            "schema_version",
            2,
            "missing required key 'schema_version'",
            id="missing-schema-version",
        ),
        pytest.param(
            "schema_version: 1\nuncalibrated: true\n",
            "thresholds",
            1,
            "missing required key 'thresholds'",
            id="missing-thresholds",
        ),
        pytest.param(
            "schema_version: 2\nthresholds: {bronze: 0.7}\n",
            "schema_version",
            1,
            "unsupported schema_version 2",
            id="wrong-schema-version",
        ),
        pytest.param(
            "schema_version: 1\nthresholds:\n  bronze: 0.7\n  silver: high\n",
            "thresholds.silver",
            4,
            "threshold must be a number in [0, 1], got 'high'",
            id="non-float-threshold",
        ),
        pytest.param(
            'schema_version: 1\nthresholds:\n  bronze: "0.7"\n',
            "thresholds.bronze",
            3,
            "got '0.7'",
            id="quoted-threshold",
        ),
        pytest.param(
            "schema_version: 1\nthresholds:\n  bronze: yes\n",
            "thresholds.bronze",
            3,
            "got True",
            id="boolean-threshold",
        ),
        pytest.param(
            "schema_version: 1\nthresholds:\n  bronze: 0.7\n  gold: 1.5\n",
            "thresholds.gold",
            4,
            "outside [0, 1]",
            id="threshold-above-one",
        ),
        pytest.param(
            "schema_version: 1\nthresholds:\n  bronze: -0.1\n",
            "thresholds.bronze",
            3,
            "outside [0, 1]",
            id="threshold-below-zero",
        ),
        pytest.param(
            "schema_version: 1\nthresholds:\n  bronze: .nan\n",
            "thresholds.bronze",
            3,
            "outside [0, 1]",
            id="threshold-nan",
        ),
        pytest.param(
            "schema_version: 1\nthresholds:\n  bronze: 0.7\n  silver: 0.65\n  gold: 0.9\n",
            "thresholds.silver",
            4,
            "silver threshold 0.65 is below bronze threshold 0.7",
            id="non-monotone-thresholds",
        ),
        pytest.param(
            "schema_version: 1\nthresholds:\n  bronze: 0.7\n  diamond: 0.99\n",
            "thresholds.diamond",
            4,
            "unknown tier 'diamond'",
            id="unknown-tier-in-thresholds",
        ),
        pytest.param(
            "schema_version: 1\nthresholds: {}\n",
            "thresholds",
            2,
            "at least one tier",
            id="empty-thresholds",
        ),
        pytest.param(
            "schema_version: 1\nthresholds: [0.7]\n",
            "thresholds",
            2,
            "must be a mapping",
            id="thresholds-not-a-mapping",
        ),
        pytest.param(
            "schema_version: 1\nthresholds: {bronze: 0.7}\ncurrent_tiers:\n"
            "  vuln-remediation: none\n  other: silver\n",
            "current_tiers.other",
            5,
            "unknown tier 'silver'",
            id="current-tier-not-configured",
        ),
        pytest.param(
            "schema_version: 1\nthresholds: {bronze: 0.7}\ncurrent_tiers:\n  x: Bronze\n",
            "current_tiers.x",
            4,
            "unknown tier 'Bronze'",
            id="current-tier-wrong-case",
        ),
        pytest.param(
            "schema_version: 1\nthresholds: {bronze: 0.7}\ncurrent_tiers: [a]\n",
            "current_tiers",
            3,
            "must be a mapping",
            id="current-tiers-not-a-mapping",
        ),
        pytest.param(
            "schema_version: 1\nthresholds: {bronze: 0.7}\nevidence_window: 0\n",
            "evidence_window",
            3,
            "integer >= 1",
            id="evidence-window-zero",
        ),
        pytest.param(
            "schema_version: 1\nthresholds: {bronze: 0.7}\nuncalibrated: maybe\n",
            "uncalibrated",
            3,
            "true or false",
            id="uncalibrated-not-bool",
        ),
        pytest.param(
            "schema_version: 1\nthresholds:\n  bronze: 0.7\n  silver: 0.8\n  silver: 0.6\n",
            "thresholds.silver",
            5,
            "duplicate key 'thresholds.silver' (first defined on line 4)",
            id="duplicate-nested-key",
        ),
        pytest.param(
            "schema_version: 1\nthresholds: {bronze: 0.7}\nschema_version: 1\n",
            "schema_version",
            3,
            "duplicate key 'schema_version'",
            id="duplicate-top-level-key",
        ),
        pytest.param(
            "schema_version: 1\nthresholds: {bronze: 0.7}\n"
            "current_tiers:\n  a: none\n  a: bronze\n",
            "current_tiers.a",
            5,
            "duplicate key",
            id="duplicate-current-tier",
        ),
    ],
)
def test_invalid_config_names_key_and_line(
    tmp_path: Path, text: str, key: str, line: int, fragment: str
) -> None:
    path = write(tmp_path, text)

    with pytest.raises(TierConfigInvalid) as excinfo:
        load_tier_config(path)

    error = excinfo.value
    assert error.path == path
    assert error.key == key
    assert error.line == line
    assert fragment in error.problem
    assert str(error).startswith(f"{path}:{line} [{key}]: ")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(TierConfigInvalid, match="does not exist") as excinfo:
        load_tier_config(path)

    assert excinfo.value.path == path
    assert excinfo.value.line is None


def test_invalid_yaml_reports_line(tmp_path: Path) -> None:
    path = write(tmp_path, "schema_version: 1\nthresholds:\n  bronze: [0.7\n  silver: 0.8\n")

    with pytest.raises(TierConfigInvalid, match="invalid YAML") as excinfo:
        load_tier_config(path)

    assert excinfo.value.line == 4
    assert excinfo.value.key is None


def test_unsafe_tag_is_invalid_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "schema_version: 1\nthresholds: !!python/object:os.system {}\n")

    with pytest.raises(TierConfigInvalid, match="invalid YAML") as excinfo:
        load_tier_config(path)

    assert excinfo.value.line == 2


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        pytest.param("", None, "empty document", id="empty"),
        pytest.param("# only a comment\n", None, "empty document", id="comment-only"),
        pytest.param("- bronze\n- silver\n", 1, "a sequence", id="sequence"),
        pytest.param("just text\n", 1, "a scalar", id="scalar"),
    ],
)
def test_not_a_mapping(tmp_path: Path, text: str, line: int | None, fragment: str) -> None:
    with pytest.raises(TierConfigInvalid, match="must be a mapping") as excinfo:
        load_tier_config(write(tmp_path, text))

    assert excinfo.value.line == line
    assert fragment in excinfo.value.problem


def test_threshold_of_unknown_tier_is_a_value_error(tmp_path: Path) -> None:
    config = load_tier_config(write(tmp_path, VALID))

    with pytest.raises(UnknownTier, match=r"'platinum'.*declared: bronze, silver, gold"):
        config.threshold("platinum")
    with pytest.raises(ValueError, match="diamond"):
        config.threshold("diamond")


def test_next_tier_walks_configured_tiers_in_order(tmp_path: Path) -> None:
    config = load_tier_config(write(tmp_path, VALID))

    assert config.next_tier(None) == "bronze"
    assert config.next_tier("bronze") == "silver"
    assert config.next_tier("silver") == "gold"
    assert config.next_tier("gold") is None
    with pytest.raises(UnknownTier, match="platinum"):
        config.next_tier("platinum")


def test_equal_thresholds_are_allowed(tmp_path: Path) -> None:
    text = "schema_version: 1\nthresholds: {bronze: 0.8, silver: 0.8}\n"

    assert load_tier_config(write(tmp_path, text)).tiers == ("bronze", "silver")


def test_direct_construction_applies_the_same_contract() -> None:
    with pytest.raises(ValidationError, match=r"thresholds\.silver"):
        TierConfig(schema_version=1, thresholds={"bronze": 0.8, "silver": 0.7})
    with pytest.raises(ValidationError, match=r"current_tiers\.x"):
        TierConfig(schema_version=1, thresholds={"bronze": 0.8}, current_tiers={"x": "gold"})
    with pytest.raises(ValidationError):
        TierConfig(schema_version=1, thresholds={"bronze": "0.8"})  # type: ignore[dict-item]
    with pytest.raises(ValidationError):
        TierConfig(schema_version=1, thresholds={"bronze": 0.8}, typo=True)  # type: ignore[call-arg]

    config = TierConfig(
        schema_version=1, thresholds={"bronze": 0.8}, current_tiers={"x": "none", "y": "bronze"}
    )
    assert config.current_tiers == {"x": None, "y": "bronze"}


# --- required_sut_isolation ---------------------------------------------------------------


def test_required_sut_isolation_defaults_to_bwrap_for_every_tier(tmp_path: Path) -> None:
    config = load_tier_config(write(tmp_path, "schema_version: 1\nthresholds: {bronze: 1}\n"))
    assert config.required_isolation("bronze") == "bwrap"
    assert config.isolation_suffices("bronze", "bwrap")
    assert not config.isolation_suffices("bronze", "env-only")
    assert not config.isolation_suffices("bronze", "in-process")
    assert not config.isolation_suffices("bronze", "")  # unrecorded is never evidence


def test_required_sut_isolation_per_tier(tmp_path: Path) -> None:
    text = (
        "schema_version: 1\nthresholds: {bronze: 0.5, silver: 0.8}\n"
        "required_sut_isolation: {bronze: in-process}\n"
    )
    config = load_tier_config(write(tmp_path, text))
    assert config.isolation_suffices("bronze", "in-process")
    assert config.isolation_suffices("bronze", "bwrap")
    assert config.required_isolation("silver") == "bwrap"


@pytest.mark.parametrize(
    ("value", "key", "fragment"),
    [
        ("sandboxed", "required_sut_isolation", "must be one of bwrap, env-only, in-process"),
        ("{gold: bwrap}", "required_sut_isolation.gold", "has no threshold"),
        ("{bronze: docker}", "required_sut_isolation.bronze", "must be one of"),
        ("[bwrap]", "required_sut_isolation", "or a mapping of tier"),
    ],
)
def test_invalid_required_sut_isolation_names_the_key(
    tmp_path: Path, value: str, key: str, fragment: str
) -> None:
    text = f"schema_version: 1\nthresholds: {{bronze: 0.5}}\nrequired_sut_isolation: {value}\n"
    with pytest.raises(TierConfigInvalid) as info:
        load_tier_config(write(tmp_path, text))
    assert info.value.key == key
    assert fragment in str(info.value)
