"""The static bench fence: one synthetic failing task class per rule, and the shipped benches.

Every fixture is a copy of ``tests/fixtures/bench/stub`` in ``tmp_path`` with exactly one
thing broken; the stub itself is never edited (other tests use it).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_codegenie_eval.taskclass.digests import write_digests
from pytest_codegenie_eval.taskclass.fence import (
    BANNED_SUBSTRINGS,
    SEED_FLOOR,
    Violation,
    check_bench_root,
    check_task_class,
    format_violations,
    main,
    task_class_dirs,
)

REPO = Path(__file__).resolve().parents[2]
STUB = REPO / "tests" / "fixtures" / "bench" / "stub"

REGISTRATION = """\
from pytest_codegenie_eval import register_task_class


{decorator}
class Stub:
    \"\"\"A copy of the stub task class.\"\"\"

    baseline_sut = "baseline_sut.py"
"""
BRONZE_ONLY = '@register_task_class("stub", min_cases_for_promotion={"bronze": 3})'


def write_registration(tc: Path, decorator: str) -> None:
    """Replace the copy's registration.py with one using *decorator*."""
    (tc / "registration.py").write_text(REGISTRATION.format(decorator=decorator))


@pytest.fixture
def bench_root(tmp_path: Path) -> Path:
    """A bench root holding a valid copy of the stub at ``<root>/stub``."""
    root = tmp_path / "bench"
    root.mkdir()
    tc = root / "stub"
    shutil.copytree(STUB, tc, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # the stub declares silver with 3 held-out cases; bronze-only makes the copy valid
    write_registration(tc, BRONZE_ONLY)
    return root


@pytest.fixture
def tc(bench_root: Path) -> Path:
    """The valid task class copy."""
    return bench_root / "stub"


def add_case(
    tc: Path, name: str, *, case_id: str | None = None, curation: str = "held-out"
) -> Path:
    """Add a case directory cloned from ``alpha`` (not re-pinned)."""
    case = tc / "cases" / name
    shutil.copytree(tc / "cases" / "alpha", case)
    text = (case / "case.toml").read_text()
    text = text.replace('case_id = "alpha"', f'case_id = "{case_id or name}"')
    text = text.replace('curation_class = "held-out"', f'curation_class = "{curation}"')
    (case / "case.toml").write_text(text)
    return case


def only(violations: list[Violation], rule: str) -> list[Violation]:
    """The violations of one rule."""
    return [v for v in violations if v.rule == rule]


def assert_reported(
    violations: list[Violation], rule: str, path: Path, root: Path, *, contains: str = ""
) -> Violation:
    """Exactly the given rule is broken, at *path*, and its line names the path and rule."""
    assert {v.rule for v in violations} == {rule}, format_violations(violations, root)
    hits = [v for v in violations if v.path == path]
    assert hits, format_violations(violations, root)
    line = hits[0].format(root)
    rel = path.relative_to(root).as_posix()
    assert line.startswith(f"{rel}: [{rule}] "), line
    assert "\n" not in line
    assert contains.lower() in line.lower(), line
    return hits[0]


# --------------------------------------------------------------------------------------------
# baseline


def test_valid_copy_has_no_violations(tc: Path, bench_root: Path) -> None:
    assert check_task_class(tc) == []
    assert check_bench_root(bench_root) == []


def test_shipped_stub_only_misses_the_held_out_floor() -> None:
    """The stub declares silver (bronze: 2, silver: 3) but ships 3 held-out cases, not 5."""
    violations = check_task_class(STUB)
    assert [(v.rule, v.path) for v in violations] == [("held-out-floor", STUB / "cases")]


def test_format_is_one_line_relative_to_root(tmp_path: Path) -> None:
    v = Violation(tmp_path / "tc" / "failure_modes.yaml", "failure-modes", "bad\n  thing")
    assert v.format(tmp_path) == "tc/failure_modes.yaml: [failure-modes] bad thing"
    assert v.format(Path("/elsewhere")) == f"{v.path.as_posix()}: [failure-modes] bad thing"
    assert v.format() == f"{v.path.as_posix()}: [failure-modes] bad thing"


# --------------------------------------------------------------------------------------------
# rule 1: directory-contract


@pytest.mark.parametrize(
    "entry",
    [
        "registration.py",
        "rubric.py",
        "breakdown_keys.py",
        "failure_modes.yaml",
        "cases/digests.yaml",
        "cases",
    ],
)
def test_directory_contract(tc: Path, bench_root: Path, entry: str) -> None:
    target = tc / entry
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()
    violations = check_task_class(tc)
    if entry == "cases":
        # no cases at all also falls short of the seed floor
        violations = [v for v in violations if v.rule != "min-case-count"]
    assert_reported(violations, "directory-contract", target, bench_root, contains="missing")


# --------------------------------------------------------------------------------------------
# rule 2: min-case-count


def test_min_case_count_below_declared_floor(tc: Path, bench_root: Path) -> None:
    write_registration(
        tc, '@register_task_class("stub", min_cases_for_promotion={"silver": 9, "gold": 4})'
    )
    violations = [v for v in check_task_class(tc) if v.rule != "held-out-floor"]
    assert_reported(violations, "min-case-count", tc / "cases", bench_root, contains="gold: 4")


def test_bronze_only_ships_at_the_seed_floor(tc: Path) -> None:
    write_registration(tc, '@register_task_class("stub", min_cases_for_promotion={"bronze": 25})')
    assert check_task_class(tc) == []


def test_bronze_only_below_the_seed_floor(tc: Path, bench_root: Path) -> None:
    shutil.rmtree(tc / "cases" / "gamma")
    write_digests(tc / "cases")
    violation = assert_reported(
        check_task_class(tc), "min-case-count", tc / "cases", bench_root, contains="seed floor"
    )
    assert f"({SEED_FLOOR})" in violation.message


@pytest.mark.parametrize(
    ("keyword", "needle"),
    [
        ("min_cases_for_promotion=FLOORS", "dict literal"),
        ('min_cases_for_promotion={"bronze": "3"}', "not a non-negative int"),
        ('min_cases_for_promotion={"bronze": True}', "not a non-negative int"),
        ('min_cases_for_promotion={"bronze": -1}', "not a non-negative int"),
        ('min_cases_for_promotion={"tin": 3}', "unknown tier"),
        ("min_cases_for_promotion={}", "empty"),
        ('description="no floors"', "declares no min_cases_for_promotion"),
        ("**OPTIONS", "**kwargs"),
    ],
)
def test_min_cases_must_be_a_readable_literal(
    tc: Path, bench_root: Path, keyword: str, needle: str
) -> None:
    write_registration(tc, f'@register_task_class("stub", {keyword})')
    assert_reported(
        check_task_class(tc), "min-case-count", tc / "registration.py", bench_root, contains=needle
    )


# --------------------------------------------------------------------------------------------
# rule 3: held-out-floor


def test_held_out_floor_applies_from_silver(tc: Path, bench_root: Path) -> None:
    write_registration(
        tc, '@register_task_class("stub", min_cases_for_promotion={"bronze": 3, "silver": 3})'
    )
    assert_reported(
        check_task_class(tc), "held-out-floor", tc / "cases", bench_root, contains="has 3"
    )


def test_held_out_floor_counts_only_held_out_cases(tc: Path, bench_root: Path) -> None:
    write_registration(
        tc, '@register_task_class("stub", min_cases_for_promotion={"bronze": 3, "platinum": 3})'
    )
    add_case(tc, "delta")
    add_case(tc, "epsilon", curation="rag-corpus-derived")
    write_digests(tc / "cases")
    assert_reported(
        check_task_class(tc), "held-out-floor", tc / "cases", bench_root, contains="has 4"
    )
    add_case(tc, "zeta")
    write_digests(tc / "cases")
    assert check_task_class(tc) == []


# --------------------------------------------------------------------------------------------
# rule 4: registration


@pytest.mark.parametrize(
    ("decorator", "needle"),
    [
        ("", "never calls"),
        (
            '@register_task_class("stub", min_cases_for_promotion={"bronze": 3})\n'
            '@register_task_class("stub", min_cases_for_promotion={"bronze": 3})',
            "2 times",
        ),
        ('@register_task_class(NAME, min_cases_for_promotion={"bronze": 3})', "string literal"),
        ('@register_task_class(f"stub", min_cases_for_promotion={"bronze": 3})', "string literal"),
        (
            '@register_task_class("not-stub", min_cases_for_promotion={"bronze": 3})',
            "'not-stub'",
        ),
    ],
    ids=["zero", "several", "name-variable", "name-fstring", "mismatch"],
)
def test_registration(tc: Path, bench_root: Path, decorator: str, needle: str) -> None:
    write_registration(tc, decorator)
    violations = [v for v in check_task_class(tc) if v.rule != "min-case-count"]
    assert_reported(violations, "registration", tc / "registration.py", bench_root, contains=needle)


def test_registration_call_outside_a_decorator(tc: Path, bench_root: Path) -> None:
    (tc / "registration.py").write_text(
        "from pytest_codegenie_eval import register_task_class\n\n"
        "def later():\n"
        '    register_task_class("stub", min_cases_for_promotion={"bronze": 3})\n'
    )
    assert_reported(
        check_task_class(tc),
        "registration",
        tc / "registration.py",
        bench_root,
        contains="module-level class",
    )


def test_registration_syntax_error(tc: Path, bench_root: Path) -> None:
    (tc / "registration.py").write_text("@register_task_class(\n")
    assert_reported(
        check_task_class(tc), "registration", tc / "registration.py", bench_root, contains="line"
    )


def test_registration_aliases_and_keyword_name_are_understood(tc: Path) -> None:
    (tc / "registration.py").write_text(
        "from pytest_codegenie_eval import register_task_class as rtc\n\n"
        '@rtc(name="stub", min_cases_for_promotion={"bronze": 3})\n'
        "class Stub:\n    pass\n"
    )
    assert check_task_class(tc) == []


def test_registration_is_never_imported(tc: Path) -> None:
    (tc / "registration.py").write_text(
        'raise SystemExit("imported!")\n'
        "from pytest_codegenie_eval import register_task_class\n\n" + BRONZE_ONLY + "\n"
        "class Stub:\n    pass\n"
    )
    (tc / "breakdown_keys.py").write_text(
        (tc / "breakdown_keys.py").read_text() + '\nraise SystemExit("imported!")\n'
    )
    assert check_task_class(tc) == []


# --------------------------------------------------------------------------------------------
# rule 5: breakdown-key-ban


@pytest.mark.parametrize("banned", BANNED_SUBSTRINGS)
def test_breakdown_key_member_name_ban(tc: Path, bench_root: Path, banned: str) -> None:
    path = tc / "breakdown_keys.py"
    member = f"AGENT_{banned.upper()}"
    path.write_text(path.read_text() + f'    {member} = "AGENT_OK"\n')
    assert_reported(
        check_task_class(tc), "breakdown-key-ban", path, bench_root, contains=f"'{banned}'"
    )


def test_breakdown_key_value_ban_is_case_insensitive(tc: Path, bench_root: Path) -> None:
    path = tc / "breakdown_keys.py"
    path.write_text(path.read_text() + '    JUDGED = "Judged_By_LLM"\n')
    assert_reported(
        check_task_class(tc), "breakdown-key-ban", path, bench_root, contains="Judged_By_LLM"
    )


def test_breakdown_key_class_missing(tc: Path, bench_root: Path) -> None:
    path = tc / "breakdown_keys.py"
    path.write_text("from enum import StrEnum\n\n\nclass Keys(StrEnum):\n    A = 'A'\n")
    assert_reported(
        check_task_class(tc), "breakdown-key-ban", path, bench_root, contains="class BreakdownKey"
    )


# --------------------------------------------------------------------------------------------
# rule 6: failure-modes

GOOD_MODE = '  answer.wrong: {severity: block, description: "wrong answer"}\n'


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "version: 1\nfailure_modes:\n" + GOOD_MODE + GOOD_MODE,
            "duplicate key 'failure_modes.answer.wrong'",
        ),
        (
            "version: 1\nfailure_modes:\n  answer.wrong: {severity: fatal, description: x}\n",
            "severity must be block, warn or info",
        ),
        (
            'version: 1\nfailure_modes:\n  answer.wrong: {severity: warn, description: " "}\n',
            "description must be a non-empty string",
        ),
        (
            "version: 1\nfailure_modes:\n  answer.wrong: {severity: warn}\n",
            "description must be a non-empty string",
        ),
        (
            "version: 1\nfailure_modes:\n  sut.crashed: {severity: block, description: x}\n",
            "reserved",
        ),
        (
            "version: 1\nfailure_modes:\n  harness.x: {severity: block, description: x}\n",
            "reserved",
        ),
        ("version: 2\nfailure_modes:\n" + GOOD_MODE, "version must be 1"),
        ("failure_modes:\n" + GOOD_MODE, "version must be 1"),
        ("version: 1\nfailure_modes: [answer.wrong]\n", "failure_modes must map"),
        ("version: 1\n", "failure_modes must map"),
        ("version: 1\nfailure_modes: {a: [\n", "not valid YAML"),
        ("- version\n", "must be a mapping"),
    ],
    ids=[
        "duplicate",
        "severity",
        "blank-description",
        "no-description",
        "reserved-sut",
        "reserved-harness",
        "version-2",
        "no-version",
        "list",
        "no-modes",
        "invalid-yaml",
        "not-mapping",
    ],
)
def test_failure_modes(tc: Path, bench_root: Path, text: str, needle: str) -> None:
    path = tc / "failure_modes.yaml"
    path.write_text(text)
    assert_reported(check_task_class(tc), "failure-modes", path, bench_root, contains=needle)


# --------------------------------------------------------------------------------------------
# rule 7: case-id-unique (and case-toml)


def test_case_id_unique(tc: Path, bench_root: Path) -> None:
    add_case(tc, "delta", case_id="beta")
    write_digests(tc / "cases")
    violation = assert_reported(
        check_task_class(tc),
        "case-id-unique",
        tc / "cases" / "delta" / "case.toml",
        bench_root,
        contains="'beta'",
    )
    assert "cases/beta" in violation.message


def test_unparseable_case_toml(tc: Path, bench_root: Path) -> None:
    path = tc / "cases" / "beta" / "case.toml"
    path.write_text('case_id = "beta\n')
    write_digests(tc / "cases")
    assert_reported(check_task_class(tc), "case-toml", path, bench_root, contains="not valid TOML")


def test_invalid_case_toml_names_the_key(tc: Path, bench_root: Path) -> None:
    path = tc / "cases" / "beta" / "case.toml"
    path.write_text(path.read_text().replace("title =", "titel ="))
    write_digests(tc / "cases")
    assert_reported(check_task_class(tc), "case-toml", path, bench_root, contains="'titel'")


def test_a_boolean_timeout_is_not_one_second(tc: Path, bench_root: Path) -> None:
    path = tc / "cases" / "beta" / "case.toml"
    text = path.read_text()
    assert "sut_timeout_s = 30\n" in text
    path.write_text(text.replace("sut_timeout_s = 30\n", "sut_timeout_s = true\n"))
    write_digests(tc / "cases")
    assert_reported(
        check_task_class(tc), "case-toml", path, bench_root, contains="sut_timeout_s: Input"
    )


def test_case_directory_without_case_toml(tc: Path, bench_root: Path) -> None:
    stray = tc / "cases" / "stray"
    stray.mkdir()
    assert_reported(check_task_class(tc), "case-toml", stray, bench_root, contains="no case.toml")


# --------------------------------------------------------------------------------------------
# bonus: digest-pins

Breaker = Callable[[Path], Path]


def _edit_case(tc: Path) -> Path:
    (tc / "cases" / "beta" / "expected" / "answer.txt").write_text("changed\n")
    return tc / "cases" / "beta"


def _unpin_case(tc: Path) -> Path:
    add_case(tc, "delta")
    return tc / "cases" / "delta"


def _orphan_pin(tc: Path) -> Path:
    path = tc / "cases" / "digests.yaml"
    path.write_text(path.read_text() + "ghost: " + "0" * 64 + "\n")
    return path


def _bad_pin_file(tc: Path) -> Path:
    path = tc / "cases" / "digests.yaml"
    path.write_text("alpha: nothex\n")
    return path


@pytest.mark.parametrize(
    ("breaker", "needle"),
    [
        (_edit_case, "stale pin"),
        (_unpin_case, "not pinned"),
        (_orphan_pin, "'ghost'"),
        (_bad_pin_file, "64 lowercase hex"),
    ],
    ids=["stale", "unpinned", "orphan", "malformed"],
)
def test_digest_pins(tc: Path, bench_root: Path, breaker: Breaker, needle: str) -> None:
    at_fault = breaker(tc)
    assert_reported(check_task_class(tc), "digest-pins", at_fault, bench_root, contains=needle)


# --------------------------------------------------------------------------------------------
# bench roots


def test_missing_bench_root_is_one_violation(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    violations = check_bench_root(missing)
    assert len(violations) == 1
    assert violations[0].rule == "bench-root"
    assert violations[0].format() == f"{missing.as_posix()}: [bench-root] bench root does not exist"


def test_bench_root_checks_task_class_dirs_in_order(bench_root: Path) -> None:
    (bench_root / "docs").mkdir()  # not a task class: ignored
    (bench_root / "README.md").write_text("benches\n")
    half = bench_root / "a-half-written"
    half.mkdir()
    (half / "rubric.py").write_text("")
    zzz = bench_root / "zzz"
    shutil.copytree(bench_root / "stub", zzz)
    assert task_class_dirs(bench_root) == [half, bench_root / "stub", zzz]
    violations = check_bench_root(bench_root)
    dirs = [v.path.relative_to(bench_root).parts[0] for v in violations]
    assert dirs == sorted(dirs)
    assert set(dirs) == {"a-half-written", "zzz"}
    zzz_rules = {v.rule for v in violations if v.path.is_relative_to(zzz)}
    assert zzz_rules == {"registration"}  # registers "stub" in directory "zzz"


def test_main_prints_one_line_per_violation(
    bench_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(bench_root)]) == 0
    (bench_root / "stub" / "rubric.py").unlink()
    assert main([str(bench_root)]) == 1
    out = capsys.readouterr().out
    assert out == "stub/rubric.py: [directory-contract] is missing: every task class needs it\n"


# --------------------------------------------------------------------------------------------
# the shipped benches


def test_shipped_benches_pass_the_fence() -> None:
    bench = REPO / "bench"
    if not task_class_dirs(bench):
        pytest.skip(f"{bench} holds no task class yet (benches are still being written)")
    started = time.perf_counter()
    violations = check_bench_root(bench)
    elapsed = time.perf_counter() - started
    print(f"fence over {bench}: {len(violations)} violation(s) in {elapsed:.3f}s")
    assert violations == [], "\n" + format_violations(violations, bench)


# --------------------------------------------------------------------------------------------
# input-links: input/ is copied into the SUT's workspace, so it must not reach the answer key


@pytest.mark.parametrize(
    ("name", "target"),
    [("answer", "../expected"), ("key.txt", "../expected/answer.txt"), ("host", "/etc")],
    ids=["dir-to-expected", "file-in-expected", "outside-the-case"],
)
def test_a_link_out_of_input_is_reported_even_when_pinned(
    tc: Path, bench_root: Path, tmp_path: Path, name: str, target: str
) -> None:
    from pytest_codegenie_eval.taskclass.digests import write_digests

    link = tc / "cases" / "alpha" / "input" / name
    link.symlink_to(target)
    if target.startswith(".."):
        # live: a plain copy of input/ (what a workspace is) follows the link to the answer
        copied = tmp_path / "naive-workspace"
        shutil.copytree(link.parent, copied, symlinks=False)
        answer = (tc / "cases" / "alpha" / "expected" / "answer.txt").read_text()
        found = [p.read_text() for p in copied.rglob("*") if p.is_file()]
        assert answer in found
    if target != "/etc":
        write_digests(tc / "cases")  # an author who re-pinned: the link must still be caught
    violations = [v for v in check_task_class(tc) if v.rule == "input-links"]
    assert len(violations) == 1, check_task_class(tc)
    assert violations[0].path == link
    assert "symlink leaves input/" in violations[0].message
