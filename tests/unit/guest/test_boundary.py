"""The guest's boundary: osbuilder/guest/ (and the package's __init__, which Python runs
first) run on the built system's Python with its standard library only, so they import
nothing else of osbuilder and no third-party module; and what PID 1 runs at boot
imports neither typing nor dataclasses nor pathlib nor socket (their imports cost boot
time under emulation), except under TYPE_CHECKING. Only a QEMU boot would notice otherwise."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
GUEST = REPO / "osbuilder/guest"
GUEST_FILES = sorted(GUEST.glob("*.py"))
#: PID 1's entry point (pkg/init/init runs its main() with `python3.11 -c`).
PID1 = "osbuilder.guest.__main__"
#: Modules whose import costs PID 1's start most, for what it would use of them: typing
#: and dataclasses; pathlib, which imports urllib.parse and ipaddress (the guest's paths
#: are osbuilder.guest.fspath's); socket, whose enums of every constant cost more than the
#: init's sockets (theirs are _socket's).
BOOT_SLOW = {"typing", "dataclasses", "pathlib", "socket"}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def imports(path: Path) -> Iterator[tuple[str, bool, int]]:
    """(module, at run time, line) of each import in `path`: `at run time` is False under
    an `if TYPE_CHECKING:` block."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path).rsplit(".", 1)[0] if path.is_relative_to(REPO) else ""

    def walk(node: ast.AST, runtime: bool) -> Iterator[tuple[str, bool, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for statement in child.body:
                    yield from walk_one(statement, False)
                for statement in child.orelse:
                    yield from walk_one(statement, runtime)
            else:
                yield from walk_one(child, runtime)

    def walk_one(node: ast.AST, runtime: bool) -> Iterator[tuple[str, bool, int]]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, runtime, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the package
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            if base == "__future__":
                return
            if base in ("osbuilder.guest", "osbuilder"):  # `from osbuilder.guest import x`
                for alias in node.names:
                    yield f"{base}.{alias.name}", runtime, node.lineno
            else:
                yield base, runtime, node.lineno
        else:
            yield from walk(node, runtime)

    yield from walk(tree, True)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _defined_in_init(name: str) -> bool:
    """`osbuilder` itself or `osbuilder.NAME` that is no module of the package."""
    parts = name.split(".")
    return len(parts) == 1 or (
        len(parts) == 2
        and guest_module_path(name) is None
        and not (REPO / "osbuilder" / parts[1]).is_dir()
    )


def guest_module_path(name: str) -> Path | None:
    path = REPO / (name.replace(".", "/") + ".py")
    if path.is_file():
        return path
    package = REPO / name.replace(".", "/") / "__init__.py"
    return package if package.is_file() else None


@pytest.mark.parametrize("path", [*GUEST_FILES, REPO / "osbuilder/__init__.py"], ids=str)
def test_the_guest_imports_only_the_standard_library_and_itself(path: Path) -> None:
    for name, _, line in imports(path):
        top = name.split(".")[0]
        if top == "osbuilder":
            # (a name of the package's own __init__, such as __version__, is inside it)
            assert name.startswith("osbuilder.guest") or _defined_in_init(name), (
                f"{path.relative_to(REPO)}:{line}: imports {name}: the guest may import only "
                "osbuilder.guest (it runs on the built system, without the rest of osbuilder)"
            )
        else:
            assert top in sys.stdlib_module_names, (
                f"{path.relative_to(REPO)}:{line}: imports {name}, which is not in the "
                "standard library: the guest's Python has nothing else"
            )


def test_pid1_imports_none_of_the_modules_slow_to_import_at_boot() -> None:
    """Follow PID 1's imports at run time through the guest's modules."""
    seen: set[str] = set()
    pending = [PID1]
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        path = guest_module_path(module)
        if path is None:
            continue
        for name, runtime, line in imports(path):
            if not runtime:
                continue
            assert name.split(".")[0] not in BOOT_SLOW, (
                f"{path.relative_to(REPO)}:{line}: imports {name} at boot (PID 1 reaches this "
                "module); import it under `if TYPE_CHECKING:` instead"
            )
            if name.startswith("osbuilder."):
                pending.append(name)
    assert "osbuilder.guest.init" in seen  # (the walk really followed PID 1's imports)


def test_a_stray_import_would_be_caught(tmp_path: Path) -> None:
    """The walk sees imports in functions and under TYPE_CHECKING's else."""
    path = tmp_path / "stray.py"
    path.write_text(
        "TYPE_CHECKING = False\n"
        "if TYPE_CHECKING:\n    import typing\nelse:\n    import json\n"
        "def f():\n    from osbuilder.oci import store\n"
    )
    found = [(name, runtime) for name, runtime, _ in imports(path)]
    assert found == [("typing", False), ("json", True), ("osbuilder.oci", True)]
