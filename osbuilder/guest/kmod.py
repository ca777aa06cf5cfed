"""Which kernel modules a device needs, and in which order to load them (depmod's indexes).

modules.alias maps glob patterns of device modaliases to module names; modules.dep lists
each module's file and the files of everything it needs. Only the aliases of the buses the
machine actually has are parsed (one regular-expression pass over the file), and patterns
are indexed by their literal prefix, so matching a device costs a few dict look-ups rather
than a glob test against every one of ~30,000 patterns.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from fnmatch import fnmatchcase

_MODULE_SUFFIXES = (".ko.xz", ".ko.zst", ".ko.gz", ".ko")
_GLOB_CHARACTERS = re.compile(r"[*?\[]")


def module_name(path: str) -> str:
    """kernel/drivers/net/virtio_net.ko.xz -> virtio_net (the kernel treats - and _ alike)."""
    base = path.rsplit("/", 1)[-1]
    for suffix in _MODULE_SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return normalize(base)


def normalize(name: str) -> str:
    return name.replace("-", "_")


def bus_of(modalias: str) -> str:
    """pci:v00001AF4d... -> pci; acpi*:LNXPWRBN:* -> acpi (a pattern's bus may carry a *)."""
    return modalias.split(":", 1)[0].rstrip("*")


class ModuleIndex:
    def __init__(self) -> None:
        self.files: dict[str, str] = {}  # module -> path under the modules directory
        self.dependencies: dict[str, tuple[str, ...]] = {}
        self._aliases: dict[str, list[tuple[str, str]]] = {}  # literal prefix -> patterns

    def add_dependencies(self, modules_dep: str) -> None:
        for line in modules_dep.splitlines():
            path, separator, rest = line.partition(":")
            if not separator:
                continue
            name = module_name(path.strip())
            self.files[name] = path.strip()
            self.dependencies[name] = tuple(module_name(dep) for dep in rest.split())

    def add_aliases(self, modules_alias: str, buses: Collection[str] | None = None) -> None:
        """Index the alias lines; with `buses`, only those whose pattern is on one of them."""
        if buses is None:
            bus_pattern = r"\S+?"
        elif not buses:
            return
        else:
            bus_pattern = "(?:" + "|".join(sorted(re.escape(bus) for bus in buses)) + r")\*?"
        line = re.compile(rf"^alias ({bus_pattern}:\S*) (\S+)$", re.MULTILINE)
        for match in line.finditer(modules_alias):
            pattern, module = match.group(1), normalize(match.group(2))
            literal = _GLOB_CHARACTERS.split(pattern, 1)[0]
            self._aliases.setdefault(literal, []).append((pattern, module))

    def modules_for(self, modalias: str) -> list[str]:
        """Modules whose alias patterns match this device's modalias, in file order."""
        found: list[str] = []
        for end in range(len(modalias) + 1):
            for pattern, module in self._aliases.get(modalias[:end], ()):
                if module not in found and fnmatchcase(modalias, pattern):
                    found.append(module)
        return found

    def load_order(self, wanted: Iterable[str]) -> list[str]:
        """Every wanted module after all it depends on, each once; unknown names are skipped."""
        order: list[str] = []
        seen: set[str] = set()  # placed or being placed (a cycle in modules.dep ends here)

        def visit(name: str) -> None:
            if name in seen or name not in self.files:
                return
            seen.add(name)
            for dependency in self.dependencies.get(name, ()):
                visit(dependency)
            order.append(name)

        for name in wanted:
            visit(normalize(name))
        return order
