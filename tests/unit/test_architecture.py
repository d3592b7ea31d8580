"""The package's layers, checked from its source: every import (module level and inside
functions) goes down a layer or stays in its own, and no import cycle exists.

Layers, top to bottom (docs/architecture.md)::

    pytest_plugin/, cli/      pytest hooks and the console script
    output/                   renderers
    execution/ | evidence/    one attempt and its executors | numbers and judgements
    taskclass/                a task-class directory on disk
    store/                    the state directory
    ground                    the package's top-level modules (models, errors, hashing, ...)

``execution/`` and ``evidence/`` are siblings: neither imports the other. ``cli/`` may use
the plugin's option definitions; the plugin never imports the CLI. The package's own
``__init__`` is the public facade (it names the public types lazily, wherever they live)
and is not part of a layer. A cycle counts only imports that run: one written under
``if TYPE_CHECKING:`` is a dependency for the layers, never part of a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import pytest_codegenie_eval

PACKAGE = Path(pytest_codegenie_eval.__file__).parent
NAME = "pytest_codegenie_eval"
RANK = {
    "ground": 0,
    "store": 1,
    "taskclass": 2,
    "execution": 3,
    "evidence": 3,
    "output": 4,
    "pytest_plugin": 5,
    "cli": 6,
}
SIBLINGS = {frozenset({"execution", "evidence"})}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANK) else "ground"


def _type_only(tree: ast.AST) -> set[int]:
    """The ids of the import nodes under ``if TYPE_CHECKING:``."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                found |= {id(n) for n in ast.walk(inner)}
    return found


def imports_of(path: Path, *, type_only: bool = True) -> Iterator[str]:
    """Every package module ``path`` imports, at module level or inside a function;
    ``TYPE_CHECKING`` blocks too unless ``type_only`` is false (a type is a dependency of
    the layers, but such an import never runs)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path)
    skip = set() if type_only else _type_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(NAME + "."):
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: -node.level] if path.name != "__init__.py" else here
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if not module.startswith(NAME):
                continue
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                yield candidate if _is_module(candidate) else module


def _is_module(dotted: str) -> bool:
    rel = Path(*dotted.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def graph(*, type_only: bool = True) -> dict[str, set[str]]:
    """Module -> the package modules it imports (the package's facade ``__init__`` left out)."""
    edges: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        here = module_name(path)
        if here == NAME:
            continue
        found = imports_of(path, type_only=type_only)
        edges[here] = {m for m in found if m not in (here, NAME)}
    return edges


def violations(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    found = set()
    for source, targets in edges.items():
        for target in targets:
            a, b = layer(source), layer(target)
            if RANK[b] > RANK[a] or frozenset({a, b}) in SIBLINGS:
                found.add((source, target))
    return found


def cycles(edges: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == node:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_goes_up_a_layer_or_across_siblings() -> None:
    found = sorted(violations(graph()))
    assert not found, f"imports against the layers: {found}"


def test_no_import_cycle() -> None:
    found = [sorted(c) for c in cycles(graph(type_only=False))]
    assert not found, f"import cycles: {found}"


def test_subpackage_init_files_stay_empty() -> None:
    for init in PACKAGE.rglob("__init__.py"):
        if init.parent == PACKAGE or init.parent.name == "html":
            continue
        assert init.read_text(encoding="utf-8").strip() == "", init


def test_the_checker_sees_upward_imports_cycles_and_imports_inside_functions() -> None:
    edges = {
        f"{NAME}.store.audit": {f"{NAME}.pytest_plugin.session"},
        f"{NAME}.evidence.stats": {f"{NAME}.execution.sut"},
        f"{NAME}.execution.sut": {f"{NAME}.evidence.stats"},
        f"{NAME}.output.github": {f"{NAME}.models"},
    }
    assert violations(edges) == {
        (f"{NAME}.store.audit", f"{NAME}.pytest_plugin.session"),
        (f"{NAME}.evidence.stats", f"{NAME}.execution.sut"),
        (f"{NAME}.execution.sut", f"{NAME}.evidence.stats"),
    }
    assert cycles(edges) == {frozenset({f"{NAME}.evidence.stats", f"{NAME}.execution.sut"})}
    # hooks import their work inside the hook functions; a TYPE_CHECKING import is seen
    # for the layers and left out of the cycles
    hooks = set(imports_of(PACKAGE / "pytest_plugin" / "hooks.py"))
    assert f"{NAME}.pytest_plugin.dispatch" in hooks
    activation = PACKAGE / "pytest_plugin" / "activation.py"
    assert f"{NAME}.pytest_plugin.session" in set(imports_of(activation))
    assert f"{NAME}.pytest_plugin.session" not in set(imports_of(activation, type_only=False))


def test_layout_figures(capsys: pytest.CaptureFixture[str]) -> None:
    edges = graph()
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    largest = max(PACKAGE.rglob("*.py"), key=lambda p: len(p.read_text().splitlines()))
    with capsys.disabled():
        print(
            f"\nlayout: {len(top)} top-level modules, {len(edges)} modules in all, largest "
            f"{largest.relative_to(PACKAGE)} ({len(largest.read_text().splitlines())} lines), "
            f"{len(cycles(graph(type_only=False)))} import cycles, "
            f"{len(violations(edges))} upward imports"
        )


def test_only_the_hashing_module_calls_blake3() -> None:
    callers = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "hashing.py"
        and any(
            (isinstance(n, ast.Import) and any(a.name == "blake3" for a in n.names))
            or (isinstance(n, ast.ImportFrom) and n.module == "blake3")
            for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        )
    )
    assert callers == [], f"hash through pytest_codegenie_eval.hashing instead: {callers}"


def test_only_the_junit_renderer_touches_pytests_junitxml() -> None:
    touching = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "_pytest.junitxml" in path.read_text(encoding="utf-8")
    )
    assert touching == ["output/junit.py"]


def _calls(tree: ast.AST, owner: str, method: str) -> bool:
    return any(
        isinstance(n, ast.Attribute)
        and n.attr == method
        and isinstance(n.value, ast.Name)
        and n.value.id == owner
        for n in ast.walk(tree)
    )


def test_only_the_store_parses_reports_and_recommendations() -> None:
    """Only ``store/`` parses what the state directory holds: a run report's JSON or a
    recommendation file. Everyone else asks the store, so there is one error
    policy for an unreadable file."""
    readers = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] != "store"
        and (
            _calls(
                tree := ast.parse(path.read_text(encoding="utf-8")),
                "BenchRunReport",
                "model_validate_json",
            )
            or _calls(tree, "PromotionVerdict", "model_validate")
            or _calls(tree, "PromotionVerdict", "model_validate_json")
        )
    )
    assert readers == [], f"read the state directory through store/: {readers}"
