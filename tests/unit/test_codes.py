"""One catalogue of harness failure codes: every code the package writes is in it, every
code in it is written somewhere, and the taxonomy check and the cache read it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest_codegenie_eval
from pytest_codegenie_eval.codes import CATALOGUE, HARNESS_FAILURE_MODES, NOT_CACHED
from pytest_codegenie_eval.codes import RESERVED_PREFIXES as PREFIXES

PACKAGE = Path(pytest_codegenie_eval.__file__).parent
CODE = re.compile(r"^(?:sut|rubric|harness|canary|gateway)\.[a-z_]+$")
FILE_NAMES = (".py", ".json", ".toml", ".yaml", ".md", ".sock")


def written_codes() -> dict[str, set[str]]:
    """Every string literal of the package shaped like a harness code, by module (the
    catalogue itself left out)."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "codes.py" and path.parent == PACKAGE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and CODE.match(node.value)
                and not node.value.endswith(FILE_NAMES)
            ):
                found.setdefault(node.value, set()).add(str(path.relative_to(PACKAGE)))
    return found


def test_every_code_the_package_writes_is_in_the_catalogue() -> None:
    unknown = {code: where for code, where in written_codes().items() if code not in CATALOGUE}
    assert not unknown, f"codes missing from codes.CATALOGUE: {unknown}"


def test_every_catalogued_code_is_written_somewhere() -> None:
    unused = sorted(set(CATALOGUE) - set(written_codes()))
    assert not unused, f"catalogued but never written: {unused}"


def test_the_catalogue_owns_the_reserved_prefixes_and_the_cache_rule() -> None:
    assert all(code.startswith(PREFIXES) for code in CATALOGUE)
    assert set(HARNESS_FAILURE_MODES) == set(CATALOGUE)
    assert {"sut.timeout", "rubric.timeout", "harness.worker_crashed"} <= NOT_CACHED
    assert "sut.exception" not in NOT_CACHED


def test_the_scan_sees_a_code_in_a_call() -> None:
    tree = ast.parse('modes.append(_block("sut.new_thing", "x"))\nopen("rubric.py")\n')
    literals = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and CODE.match(n.value)
    ]
    assert [v for v in literals if not v.endswith(FILE_NAMES)] == ["sut.new_thing"]
