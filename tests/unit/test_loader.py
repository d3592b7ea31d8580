"""Loading task classes and cases: typed errors naming file and field, nothing lost."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_codegenie_eval.errors import (
    BenchCaseDigestMismatch,
    BenchCaseIDCollision,
    BenchCaseLoadError,
    BenchRootMissing,
    DigestsFileInvalid,
    TaskClassAlreadyRegistered,
    TaskClassInvalid,
    TaskClassNotFound,
)
from pytest_codegenie_eval.registry import TaskClassRegistry, register_task_class
from pytest_codegenie_eval.taskclass.digests import case_digest, read_digests, render_digests
from pytest_codegenie_eval.taskclass.loader import (
    load_failure_modes,
    load_task_class,
    parse_case_toml,
    resolve_task_class_dir,
)
from tests.conftest import copy_stub, repin

GOOD = """case_id = "c1"
title = "t"
curation_class = "held-out"
cassette_canary_pin = "0123456789abcdef"
"""


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_integer_seconds_are_still_seconds(tmp_path: Path) -> None:
    case = parse_case_toml(_write(tmp_path / "case.toml", GOOD + "sut_timeout_s = 60\n"))
    assert case.sut_timeout_s == 60.0


def test_good_case_toml_defaults(tmp_path: Path) -> None:
    case = parse_case_toml(_write(tmp_path / "case.toml", GOOD))
    assert case.pass_threshold == 1.0
    assert case.sut_timeout_s == 300
    assert case.rubric_timeout_s == 60
    assert case.metadata == {}


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        ("", None, "is empty"),
        (GOOD + "surprise = 1\n", "surprise", "unknown key 'surprise'"),
        (GOOD.replace('title = "t"', "title = 3"), "title", "title"),
        (GOOD + "pass_threshold = 1.5\n", "pass_threshold", "pass_threshold"),
        (GOOD + "[metadata]\ncve = 7\n", "metadata.cve", "metadata.cve"),
        (GOOD.replace('"held-out"', '"vibes"'), "curation_class", "curation_class"),
        (GOOD.replace('"c1"', '"../escape"'), "case_id", "case_id"),
        (GOOD.replace("0123456789abcdef", "not-hex-at-all"), "cassette_canary_pin", "hexadecimal"),
        ('case_id = "c1"\n', "title", "missing required key 'title'"),
        ("case_id = = 1", None, "not valid TOML"),
        # no silent conversion: true would have run the agent with a 1-second timeout
        (GOOD + "sut_timeout_s = true\n", "sut_timeout_s", "sut_timeout_s: Input should be"),
        (GOOD + 'pass_threshold = "1"\n', "pass_threshold", "pass_threshold"),
        (GOOD + "rubric_timeout_s = false\n", "rubric_timeout_s", "rubric_timeout_s"),
    ],
)
def test_bad_case_toml_names_file_and_field(
    tmp_path: Path, text: str, field: str | None, fragment: str
) -> None:
    path = _write(tmp_path / "case.toml", text)
    with pytest.raises(BenchCaseLoadError) as excinfo:
        parse_case_toml(path)
    assert str(path) in str(excinfo.value)
    assert fragment in str(excinfo.value)
    if field is not None:
        assert excinfo.value.field == field


def test_non_utf8_case_toml(tmp_path: Path) -> None:
    path = _write(tmp_path / "case.toml", GOOD.encode() + b'title2 = "\xff"\n')
    with pytest.raises(BenchCaseLoadError, match="not UTF-8"):
        parse_case_toml(path)


def test_missing_case_toml(tmp_path: Path) -> None:
    with pytest.raises(BenchCaseLoadError, match="missing"):
        parse_case_toml(tmp_path / "case.toml")


def test_stub_loads(tmp_path: Path) -> None:
    loaded = load_task_class(copy_stub(tmp_path))
    assert loaded.name == "stub"
    assert [e.case_id for e in loaded.cases] == ["alpha", "beta", "gamma"]
    assert all(e.error is None for e in loaded.cases)
    assert loaded.breakdown_keys == {"ANSWER_CORRECT", "NO_EXTRA_FILES"}
    assert loaded.severity_of("answer.wrong") == "block"
    assert loaded.severity_of("sut.timeout") == "block"
    assert loaded.severity_of("nope") is None
    assert loaded.task_class.min_cases_for_promotion == {"bronze": 2, "silver": 3}


def test_loading_twice_imports_registration_once(tmp_path: Path) -> None:
    bench = copy_stub(tmp_path)
    marker = tmp_path / "imports.txt"
    reg = bench / "registration.py"
    reg.write_text(
        reg.read_text() + f"\nwith open({str(marker)!r}, 'a') as _f:\n    _f.write('x')\n"
    )
    first = load_task_class(bench)
    second = load_task_class(bench)
    assert first.task_class == second.task_class
    assert marker.read_text() == "x"


def test_digest_mismatch_fails_only_that_case(tmp_path: Path) -> None:
    bench = copy_stub(tmp_path)
    (bench / "cases" / "beta" / "input" / "question.txt").write_text("tampered\n")
    loaded = load_task_class(bench)
    errors = {e.case_id: e.error for e in loaded.cases}
    assert isinstance(errors["beta"], BenchCaseDigestMismatch)
    assert errors["alpha"] is None
    assert errors["gamma"] is None
    assert "beta" in str(errors["beta"])


def test_digests_missing_entry_and_extra_entry(tmp_path: Path) -> None:
    bench = copy_stub(tmp_path)
    pins = read_digests(bench / "cases")
    del pins["gamma"]
    pins["deleted-case"] = "0" * 64
    (bench / "cases" / "digests.yaml").write_text(render_digests(pins))
    loaded = load_task_class(bench)
    gamma = next(e for e in loaded.cases if e.case_id == "gamma")
    assert isinstance(gamma.error, BenchCaseDigestMismatch)
    assert gamma.error.expected is None
    assert loaded.orphan_pins == ("deleted-case",)


def test_malformed_digests_file(tmp_path: Path) -> None:
    bench = copy_stub(tmp_path)
    (bench / "cases" / "digests.yaml").write_text("alpha: [1, 2]\n")
    loaded = load_task_class(bench)
    assert all(isinstance(e.error, DigestsFileInvalid) for e in loaded.cases)


def test_case_dir_without_case_toml(tmp_path: Path) -> None:
    bench = copy_stub(tmp_path)
    (bench / "cases" / "delta").mkdir()
    loaded = load_task_class(bench)
    delta = next(e for e in loaded.cases if e.name == "delta")
    assert isinstance(delta.error, BenchCaseLoadError)
    assert "case.toml" in str(delta.error)


def test_duplicated_case_id(tmp_path: Path) -> None:
    bench = copy_stub(tmp_path)
    toml = bench / "cases" / "gamma" / "case.toml"
    toml.write_text(toml.read_text().replace('case_id = "gamma"', 'case_id = "beta"'))
    repin(bench)
    loaded = load_task_class(bench)
    errors = {e.name: e.error for e in loaded.cases}
    assert errors["beta"] is None
    assert isinstance(errors["gamma"], BenchCaseIDCollision)
    assert "gamma" in str(errors["gamma"])


def test_symlink_leaving_the_case_is_refused(tmp_path: Path) -> None:
    bench = copy_stub(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    os.symlink(secret, bench / "cases" / "alpha" / "input" / "leak.txt")
    with pytest.raises(BenchCaseLoadError, match="symlink leaves the case directory"):
        case_digest(bench / "cases" / "alpha")
    loaded = load_task_class(bench)
    alpha = next(e for e in loaded.cases if e.name == "alpha")
    assert isinstance(alpha.error, BenchCaseLoadError)


def test_symlink_inside_the_case_is_hashed_as_content(tmp_path: Path) -> None:
    case = tmp_path / "c"
    _write(case / "a.txt", "same")
    plain = case_digest(case)
    os.symlink(case / "a.txt", case / "b.txt")
    linked = case_digest(case)
    (case / "b.txt").unlink()
    _write(case / "b.txt", "same")
    assert linked == case_digest(case) != plain


def test_pycache_does_not_change_the_digest(tmp_path: Path) -> None:
    case = tmp_path / "c"
    _write(case / "a.py", "x = 1\n")
    before = case_digest(case)
    _write(case / "__pycache__" / "a.cpython-311.pyc", b"\0junk")
    assert case_digest(case) == before


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.text("abc/", min_size=1, max_size=6).filter(
            lambda p: not p.startswith("/") and "//" not in p and not p.endswith("/")
        ),
        st.binary(max_size=8),
        min_size=1,
        max_size=4,
    ),
    st.dictionaries(
        st.text("abc/", min_size=1, max_size=6).filter(
            lambda p: not p.startswith("/") and "//" not in p and not p.endswith("/")
        ),
        st.binary(max_size=8),
        min_size=1,
        max_size=4,
    ),
)
def test_different_trees_have_different_digests(
    tmp_path_factory: pytest.TempPathFactory, a: dict[str, bytes], b: dict[str, bytes]
) -> None:
    def build(files: dict[str, bytes]) -> Path | None:
        root = tmp_path_factory.mktemp("tree")
        try:
            for rel, data in files.items():
                _write(root / rel, data)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            return None  # a path that is both a file and a directory: not a tree
        return root

    ta, tb = build(a), build(b)
    if ta is None or tb is None:
        return
    same = {k: v for k, v in a.items()} == {k: v for k, v in b.items()}
    assert (case_digest(ta) == case_digest(tb)) == same


def test_failure_modes_validation(tmp_path: Path) -> None:
    path = tmp_path / "failure_modes.yaml"
    cases = {
        "version: 2\nfailure_modes: {}\n": "version",
        "version: 1\nfailure_modes:\n  a: {severity: fatal, description: x}\n": "severity",
        "version: 1\nfailure_modes:\n  a: {severity: warn}\n": "description",
        "version: 1\nfailure_modes:\n  sut.mine: {severity: warn, description: x}\n": "reserved",
        "version: 1\nfailure_modes: [1]\n": "failure_modes",
        "version: 1\nfailure_modes: {a: {severity: warn, description: x, extra: 1}}\n": "extra",
        "version: [\n": "not valid YAML",
    }
    for text, fragment in cases.items():
        path.write_text(text)
        with pytest.raises(TaskClassInvalid) as excinfo:
            load_failure_modes(tmp_path)
        assert str(path) in str(excinfo.value)
        assert fragment in str(excinfo.value), text


def test_registration_name_must_match_directory(tmp_path: Path) -> None:
    bench = copy_stub(tmp_path, "renamed")
    with pytest.raises(TaskClassInvalid, match="registers 'stub' but lives in directory"):
        load_task_class(bench)


def test_resolve_task_class_dir_errors(tmp_path: Path) -> None:
    with pytest.raises(BenchRootMissing):
        resolve_task_class_dir(tmp_path / "nope", "x")
    copy_stub(tmp_path)
    with pytest.raises(TaskClassNotFound, match=r"available: stub"):
        resolve_task_class_dir(tmp_path / "bench", "other")


def test_registry_rejects_a_second_class_with_the_same_name() -> None:
    registry = TaskClassRegistry()
    from pytest_codegenie_eval.registry import TaskClass

    first = TaskClass(name="x", qualname="a.A")
    registry.add(first)
    assert registry.add(first) is first
    with pytest.raises(TaskClassAlreadyRegistered) as excinfo:
        registry.add(TaskClass(name="x", qualname="b.B"))
    assert excinfo.value.existing_qualname == "a.A"
    assert excinfo.value.incoming_qualname == "b.B"
    assert "a.A" in str(excinfo.value)


def test_decorator_returns_the_class_unchanged_and_validates_floors() -> None:
    from pytest_codegenie_eval.registry import capture_registrations

    with capture_registrations() as captured:

        @register_task_class("demo", min_cases_for_promotion={"bronze": 1})
        class Demo:
            baseline_sut = "b.py"

    assert Demo.__name__ == "Demo"
    assert captured[0].name == "demo"
    assert captured[0].baseline_sut == "b.py"
    with pytest.raises(TypeError):
        register_task_class("bad", min_cases_for_promotion={"bronze": -1})


def test_symlink_loop_is_refused_not_followed_forever(tmp_path: Path) -> None:
    case = tmp_path / "c"
    _write(case / "input" / "a.txt", "x")
    os.symlink("..", case / "input" / "loop")
    with pytest.raises(BenchCaseLoadError, match="loops back"):
        case_digest(case)


def test_symlinked_directory_inside_the_case_is_hashed_once(tmp_path: Path) -> None:
    case = tmp_path / "c"
    _write(case / "shared" / "a.txt", "x")
    (case / "input").mkdir()
    os.symlink("../shared", case / "input" / "link")
    before = case_digest(case)
    (case / "shared" / "a.txt").write_text("y")
    assert case_digest(case) != before
