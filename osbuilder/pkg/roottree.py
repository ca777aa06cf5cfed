"""A root filesystem as a tar lists it: its paths, symlinks, hard links and ELF files.

Made from one pass over the tar (mmdebstrap's, spooled to disk), without unpacking it:
enough to follow a path through the root's symlinks as the kernel would inside it, and
to know what the dynamic loader would find there.
"""

from __future__ import annotations

import enum
import fnmatch
import tarfile
from collections.abc import Callable, Iterator
from typing import IO

from osbuilder.pkg.elf import ElfObject, read_elf

# What ld.so.conf names: the directories ld.so's cache covers (ldconfig's input).
LD_SO_CONF = "etc/ld.so.conf"
LD_SO_CONF_D = "etc/ld.so.conf.d/*.conf"
#: The kernel's limit on symlinks followed in one lookup (ELOOP beyond).
_MAX_SYMLINKS = 40


class Kind(enum.Enum):
    DIRECTORY = "directory"
    FILE = "file"
    SYMLINK = "symlink"
    OTHER = "other"  # device nodes, FIFOs: nothing to follow or load


def entry_name(name: str) -> str:
    """A tar member's name as a layer has it: no leading './' nor trailing '/'."""
    return name.removeprefix("./").rstrip("/")


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


class RootTree:
    """The entries of a root filesystem by name (relative, as in a layer)."""

    def __init__(self) -> None:
        self.kinds: dict[str, Kind] = {"": Kind.DIRECTORY}
        self.symlinks: dict[str, str] = {}  # name -> target
        self.hard_links: dict[str, str] = {}  # name -> the name of the file it is
        self.sizes: dict[str, int] = {}
        self.objects: dict[str, ElfObject] = {}  # ELF files by name
        self.texts: dict[str, str] = {}  # ld.so.conf and its includes
        #: Names the recipe's `drop` left out (to say why a library is missing).
        self.dropped: set[str] = set()

    def add(self, member: tarfile.TarInfo, data: IO[bytes] | None) -> None:
        name = entry_name(member.name)
        if not name:
            return
        parts = name.split("/")
        for depth in range(1, len(parts)):
            self.kinds.setdefault("/".join(parts[:depth]), Kind.DIRECTORY)
        if member.isdir():
            self.kinds[name] = Kind.DIRECTORY
        elif member.issym():
            self.kinds[name] = Kind.SYMLINK
            self.symlinks[name] = member.linkname
        elif member.islnk():
            self.kinds[name] = Kind.FILE
            self.hard_links[name] = self.identity(entry_name(member.linkname))
        elif member.isfile():
            self.kinds[name] = Kind.FILE
            self.sizes[name] = member.size
            if data is not None:
                self._read(name, data)
        else:
            self.kinds[name] = Kind.OTHER

    def _read(self, name: str, data: IO[bytes]) -> None:
        if name == LD_SO_CONF or fnmatch.fnmatchcase(name, LD_SO_CONF_D):
            self.texts[name] = data.read().decode(errors="replace")
            return
        found = read_elf(data)
        if found is not None:
            self.objects[name] = found

    def names(self) -> Iterator[str]:
        return (name for name in self.kinds if name)

    def identity(self, name: str) -> str:
        """The name of the file `name` is (itself, or what it is a hard link to)."""
        return self.hard_links.get(name, name)

    def object(self, name: str) -> ElfObject | None:
        return self.objects.get(self.identity(name))

    def resolve(self, path: str, passed: set[str] | None = None) -> str | None:
        """The entry `path` leads to inside the root, following symlinks (absolute ones
        from the root), or None when it leads nowhere. The symlinks it goes through are
        added to `passed`."""
        pending = _parts(path)[::-1]
        current: list[str] = []
        followed = 0
        while pending:
            part = pending.pop()
            if part == "..":
                if current:
                    current.pop()
                continue
            name = "/".join([*current, part])
            kind = self.kinds.get(name)
            if kind is None:
                return None
            if kind is Kind.SYMLINK:
                followed += 1
                if followed > _MAX_SYMLINKS:
                    return None
                if passed is not None:
                    passed.add(name)
                target = self.symlinks[name]
                if target.startswith("/"):
                    current = []
                pending.extend(_parts(target)[::-1])
                continue
            if pending and kind is not Kind.DIRECTORY:
                return None
            current.append(part)
        return "/".join(current)

    def is_directory(self, name: str) -> bool:
        return self.kinds.get(name) is Kind.DIRECTORY

    def configured_directories(self) -> list[str]:
        """The directories ld.so.conf lists, with its includes (Debian's includes
        ld.so.conf.d/*.conf; without an ld.so.conf, as libc6 alone leaves it, those)."""
        if LD_SO_CONF in self.texts:
            return self._conf_directories(LD_SO_CONF, set())
        directories: list[str] = []
        for name in sorted(n for n in self.texts if n != LD_SO_CONF):
            directories += self._conf_directories(name, {name})
        return directories

    def _conf_directories(self, name: str, seen: set[str]) -> list[str]:
        directories: list[str] = []
        for raw in self.texts.get(name, "").splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line or line.startswith("hwcap "):
                continue
            if line.startswith("include "):
                for pattern in line.split()[1:]:
                    glob = pattern.lstrip("/") if pattern.startswith("/") else f"etc/{pattern}"
                    for included in sorted(fnmatch.filter(self.texts, glob)):
                        if included not in seen:
                            seen.add(included)
                            directories += self._conf_directories(included, seen)
                continue
            directories += [d.lstrip("/") for d in line.replace(",", " ").split()]
        return directories


def scan_root(source: tarfile.TarFile, dropped: Callable[[str], bool]) -> RootTree:
    """The tree of a root filesystem's tar, without what `dropped` leaves out."""
    tree = RootTree()
    for member in source:
        name = entry_name(member.name)
        if name and dropped(name):
            tree.dropped.add(name)
            continue
        tree.add(member, source.extractfile(member) if member.isfile() else None)
    return tree
