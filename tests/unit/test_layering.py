"""The import graph of osbuilder/: no cycles, and each package builds only on those below it.

Read from the source with ast, so that a lazy import (inside a function) counts as what it
is, an import; only those under `if TYPE_CHECKING:` do not, as they never run. A cycle
makes the order of imports matter and hides which module is the foundation of which.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

OSBUILDER = Path(__file__).resolve().parents[2] / "osbuilder"

#: Packages (and top-level modules) from the bottom up: each may import its own layer and
#: those before it, never one after. The pipeline's stages build on the earlier stages'
#: types (spec on oci's references, assemble on spec, formats on assemble; systems, vm and
#: cloud ship or run what formats write; lock and build drive them, the commands drive
#: those). The guest, PID 1 of the built system, stands apart (its own test).
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(layer.split())
    for layer in (
        "osbuilder errors runner atomicfile epoch media jsonfields",
        "oci",
        "spec trust",
        "assemble pkg",
        "formats",
        "systems vm cloud",
        "lock build",
        "commands",
        "cli __main__",
    )
)
APART = "guest"


@cache
def modules() -> dict[str, Path]:
    """Every module of osbuilder/ by its dotted name (a package by its __init__.py)."""
    found = {}
    for path in sorted(OSBUILDER.rglob("*.py")):
        parts = path.relative_to(OSBUILDER.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(node: ast.AST) -> Iterator[ast.AST]:
    """Every statement below `node` that runs, at import or later (not TYPE_CHECKING's)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for statement in child.orelse:
                yield statement
                yield from _statements(statement)
            continue
        yield child
        yield from _statements(child)


@cache
def imports_of(module: str) -> frozenset[str]:
    """The modules of osbuilder that `module` imports (`from PKG import NAME` is the
    module PKG.NAME when there is one, else PKG)."""
    known = modules()
    path = known[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _statements(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                name = f"{base}.{alias.name}"
                found.add(name if name in known else base)
    return frozenset(name for name in found if name in known and name != module)


def _layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _cycle_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A shortest path from `start` back to itself, if there is one."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for target in sorted(graph[module]):
                if target == start:
                    return [*paths[module], start]
                if target not in paths:
                    paths[target] = [*paths[module], target]
                    following.append(target)
        frontier = following
    return None


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each module that is on one, each cycle named once."""
    cycles: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    for module in sorted(graph):
        cycle = _cycle_through(graph, module)
        if cycle is not None and frozenset(cycle) not in seen:
            seen.add(frozenset(cycle))
            cycles.append(cycle)
    return cycles


def import_graph() -> dict[str, set[str]]:
    return {module: set(imports_of(module)) for module in modules()}


def test_no_module_imports_itself_back() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_package_imports_another_that_imports_it_back() -> None:
    # (spec.templates importing pkg.recipe, which imports spec.model, is no cycle of
    # modules, but one of packages: spec and pkg could no longer be read one at a time.)
    packages: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        outside = {_layer_of(t) for t in targets} - {_layer_of(module)}
        packages.setdefault(_layer_of(module), set()).update(outside)
    cycles = find_cycles(packages)
    assert not cycles, "cycles of packages: " + "; ".join(" -> ".join(c) for c in cycles)


def test_each_package_imports_only_its_layer_and_those_below() -> None:
    rank = {name: index for index, layer in enumerate(LAYERS) for name in layer}
    unplaced = {_layer_of(m) for m in modules()} - rank.keys() - {APART}
    assert not unplaced, f"give these a layer in LAYERS: {sorted(unplaced)}"
    upward = [
        f"{module} -> {target}"
        for module in modules()
        if _layer_of(module) != APART
        for target in sorted(imports_of(module))
        if _layer_of(target) == APART or rank[_layer_of(target)] > rank[_layer_of(module)]
    ]
    assert not upward, "imports of a layer above (see LAYERS): " + ", ".join(upward)


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c", "a"]]),
        ({"a": {"a"}}, [["a", "a"]]),
    ],
)
def test_a_cycle_is_named_module_by_module(
    graph: dict[str, set[str]], expected: list[list[str]]
) -> None:
    assert find_cycles(graph) == expected


def test_lazy_imports_count_and_type_checking_ones_do_not() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import never\nelse:\n    import always\n"
        "def later():\n    import lazily\n"
    )
    imported = {
        alias.name
        for node in _statements(ast.parse(source))
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert imported == {"always", "lazily"}
