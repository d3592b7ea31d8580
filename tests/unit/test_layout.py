"""The one parser of task-class paths and case node ids."""

from __future__ import annotations

from pathlib import Path

from pytest_codegenie_eval.taskclass.layout import (
    attempt_from_nodeid,
    case_from_nodeid,
    item_name,
    locate,
    split_item_name,
    task_class_dir_above,
    task_class_dir_of_case,
)


def _task_class(root: Path) -> Path:
    tc = root / "bench" / "tc"
    (tc / "cases" / "one" / "input" / "cases").mkdir(parents=True)
    (tc / "registration.py").write_text("")
    return tc


def test_locate_finds_depth_under_the_task_classs_cases(tmp_path: Path) -> None:
    tc = _task_class(tmp_path)
    assert [locate(p).depth for p in (tc / "cases", tc / "cases" / "one")] == [0, 1]  # type: ignore[union-attr]
    toml = locate(tc / "cases" / "one" / "case.toml")
    assert toml is not None
    assert (toml.task_class_dir, toml.depth, toml.is_case_toml_slot) == (tc, 2, True)
    # a folder named cases inside a case's input is data, not a task class's cases/
    nested = locate(tc / "cases" / "one" / "input" / "cases" / "x")
    assert nested is not None
    assert (nested.task_class_dir, nested.depth) == (tc, 4)
    assert locate(tmp_path / "elsewhere" / "cases" / "one") is None


def test_case_paths_and_node_ids(tmp_path: Path) -> None:
    tc = _task_class(tmp_path)
    assert task_class_dir_of_case(tc / "cases" / "one" / "case.toml") == tc
    assert task_class_dir_of_case(tc / "cases" / "one" / "other.toml") is None
    assert task_class_dir_above(tc / "cases" / "one" / "input") == tc
    assert task_class_dir_above(tmp_path) is None
    assert case_from_nodeid("bench/tc/cases/one/case.toml::case-1") == ("tc", "case-1")
    # a case id cannot hold brackets: "[r2]" names attempt 2 under --codegenie-repeat
    assert case_from_nodeid("bench/tc/cases/one/case.toml::case-1[r2]") == ("tc", "case-1")
    assert attempt_from_nodeid("bench/tc/cases/one/case.toml::case-1[r2]") == ("tc", "case-1", 2)
    assert attempt_from_nodeid("bench/tc/cases/one/case.toml::case-1") == ("tc", "case-1", 1)
    assert split_item_name("case-1[r0]") == ("case-1[r0]", 1)  # attempts count from 1
    assert item_name("case-1", 3, 5) == "case-1[r3]"
    assert item_name("case-1", 1, 1) == "case-1"
    assert case_from_nodeid("tests/test_x.py::test_y") is None
    assert case_from_nodeid("bench/tc/cases/one/case.toml") is None
