"""Shared libraries a root filesystem's programs load, and what goes because none does.

A recipe's `programs` (with `dlopen`, the libraries they load at run time, which no
ELF header shows) are the roots: the ELF closure of each is what ld.so would load for
it: its interpreter (PT_INTERP), and each DT_NEEDED library found as ld.so finds it,
in DT_RPATH (the object's, then its loaders') or else DT_RUNPATH, then the
directories of ld.so.conf and the system's defaults, skipping a library of another
class or machine. A library a root needs that is nowhere is the build's error, not
the boot's. Every shared library of those directories outside the closure goes, and
so does every other ELF file (a program, a plugin) that needed one that went, and
every symlink left pointing at one of them.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterable

from msgspec import Struct

from osbuilder.errors import UserError
from osbuilder.pkg.elf import ElfObject
from osbuilder.pkg.roottree import Kind, RootTree

#: glibc's own search directories, searched after ld.so.conf's: Debian's multiarch ones
#: first, for each architecture osbuilder builds.
DEFAULT_DIRECTORIES = (
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib/aarch64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "lib64",
    "usr/lib64",
    "lib",
    "usr/lib",
)


#: What a library dlopen()s itself, which its programs cannot know to declare: glibc
#: unwinds with libgcc_s for pthread_exit and pthread_cancel (and aborts without it). Kept
#: with the library when the image has it.
LOADED_BY = {"libc.so.6": ("libgcc_s.so.1",)}


class MissingLibrary(UserError):
    """A library (or loader) a listed program needs, which the image lacks."""


class Pruning(Struct, frozen=True):
    """What the closure leaves out of a root: names (files and symlinks) to drop."""

    removed: frozenset[str]
    libraries: int  # shared libraries outside the closure
    dependents: int  # other ELF files that needed one of them
    size: int  # bytes of the files removed


class _Step(Struct, frozen=True):
    """One object of the walk: what it is, where it was found (its $ORIGIN), the DT_RPATH
    of the objects that loaded it, and the root it is loaded for (for errors)."""

    name: str
    origin: str
    inherited: tuple[str, ...]
    root: str


class Closure:
    """The closure of a root tree's programs and the libraries they dlopen."""

    def __init__(self, tree: RootTree, what: str) -> None:
        self.tree = tree
        self.what = what
        self.search = self._search_directories()
        #: The files loaded (by identity: hard links are one) and the symlinks passed.
        self.kept: set[str] = set()

    def _search_directories(self) -> tuple[str, ...]:
        """ld.so.conf's directories, then the defaults: each one that is a directory of
        the tree, by its own name (symlinks followed), once."""
        found: dict[str, None] = {}
        for directory in (*self.tree.configured_directories(), *DEFAULT_DIRECTORIES):
            resolved = self.tree.resolve(directory)
            if resolved is not None and self.tree.is_directory(resolved):
                found.setdefault(resolved)
        return tuple(found)

    def roots(self, patterns: Iterable[str], field: str) -> list[str]:
        """The ELF files the globs of `field` match (symlinks followed); each glob must
        match something, else it is misspelt or its package is gone."""
        chosen: dict[str, None] = {}
        names = list(self.tree.names())
        for pattern in patterns:
            glob = pattern.strip("/")
            matched = [n for n in names if fnmatch.fnmatchcase(n, glob)]
            if not matched and (through := self.tree.resolve(glob)) is not None:
                matched = [through]  # a path through a symlinked directory (bin -> usr/bin)
            if not matched:
                raise UserError(
                    f"{self.what}: {field} names {pattern!r}, which the image does not have"
                )
            for name in matched:
                target = self.tree.resolve(name)
                if target is not None and self.tree.object(target) is not None:
                    chosen.setdefault(target)
        return list(chosen)

    def walk(self, roots: Iterable[str]) -> None:
        """Add the closure of each root to `kept`; a library one needs and the image
        lacks is a MissingLibrary naming both."""
        pending = [_Step(r, posixpath.dirname(r), (), r) for r in roots]
        seen: set[tuple[str, tuple[str, ...]]] = set()
        while pending:
            step = pending.pop()
            identity = self.tree.identity(step.name)
            if (identity, step.inherited) in seen:
                continue
            seen.add((identity, step.inherited))
            self.kept.add(identity)
            found = self.tree.object(identity)
            assert found is not None
            own = () if found.runpath else _expand(found.rpath, step.origin)
            passed_on = (*own, *step.inherited)
            first = _expand(found.runpath, step.origin) if found.runpath else passed_on
            wanted = [(found.interpreter, ())] if found.interpreter is not None else []
            for library, inherited in [*wanted, *((n, passed_on) for n in found.needed)]:
                location = self._locate(library, first, found)
                if location is None:
                    raise self._missing(step, library, first)
                # What the library loads itself (if the image has it), in the default paths.
                also = (self._locate(extra, (), found) for extra in LOADED_BY.get(library, ()))
                for target, passed in [location, *filter(None, also)]:
                    self.kept.update(passed)
                    pending.append(_Step(target, posixpath.dirname(target), inherited, step.root))

    def _locate(
        self,
        library: str,
        first: tuple[str, ...],
        loader: ElfObject,
        removed: frozenset[str] = frozenset(),
    ) -> tuple[str, set[str]] | None:
        """Where ld.so finds `library` for `loader` (a name with a '/' is a path), without
        the files `removed`: the file, with the symlinks on the way; or None."""
        candidates = (
            [library.lstrip("/")]
            if "/" in library
            else [f"{d}/{library}" for d in (*first, *self.search)]
        )
        for candidate in candidates:
            passed: set[str] = set()
            target = self.tree.resolve(candidate, passed)
            if target is None or self.tree.identity(target) in removed:
                continue
            found = self.tree.object(target)
            if found is None or found.kind != loader.kind:
                continue
            return target, passed
        return None

    def _missing(self, step: _Step, library: str, first: tuple[str, ...]) -> MissingLibrary:
        through = f" (for {step.name})" if step.name != step.root else ""
        dropped = self.tree.dropped
        where = [library.lstrip("/")] + [f"{d}/{library}" for d in (*first, *self.search)]
        why = (
            "which the recipe's 'drop' removes"
            if any(name in dropped for name in where)
            else "which no package of the image provides"
        )
        return MissingLibrary(f"{self.what}: {step.root} needs {library}{through}, {why}")

    def prune(self) -> Pruning:
        """What goes: the shared libraries of the search directories outside `kept`,
        then every other ELF file that needed one, then the symlinks to any of them."""
        tree = self.tree
        removed: set[str] = set()
        directories = set(self.search)
        for name in tree.names():
            if posixpath.dirname(name) not in directories:
                continue
            target = tree.resolve(name)
            found = tree.object(target) if target is not None else None
            if target is not None and found is not None and found.shared:
                identity = tree.identity(target)
                if identity not in self.kept:
                    removed.add(identity)
        libraries = len(removed)
        # What needed a library that went could not load any more: it goes too, and
        # then what needed it, until nothing more breaks.
        while True:
            broken = {
                name
                for name, found in tree.objects.items()
                if name not in removed
                and name not in self.kept
                and self._breaks(found, posixpath.dirname(name), frozenset(removed))
            }
            if not broken:
                break
            removed |= broken
        names = {
            name
            for name in tree.names()
            if tree.kinds[name] is not Kind.DIRECTORY
            and (target := tree.resolve(name)) is not None
            and tree.identity(target) in removed
        }
        return Pruning(
            removed=frozenset(names),
            libraries=libraries,
            dependents=len(removed) - libraries,
            size=sum(tree.sizes.get(n, 0) for n in names),
        )

    def _breaks(self, found: ElfObject, origin: str, removed: frozenset[str]) -> bool:
        """Whether an object that loaded before the removal would miss something now
        (what it missed already is not the removal's doing)."""
        first = _expand(found.runpath or found.rpath, origin)
        wanted = [*found.needed] + ([found.interpreter] if found.interpreter else [])
        return any(
            self._locate(library, first, found) is not None
            and self._locate(library, first, found, removed) is None
            for library in wanted
        )


def _expand(entries: tuple[str, ...], origin: str) -> tuple[str, ...]:
    """DT_RPATH or DT_RUNPATH entries as names in the tree ($ORIGIN: the object's
    directory)."""
    expanded = []
    for entry in entries:
        path = entry.replace("${ORIGIN}", "/" + origin).replace("$ORIGIN", "/" + origin)
        expanded.append(posixpath.normpath(path).lstrip("/"))
    return tuple(expanded)


def prune_root(
    tree: RootTree, programs: Iterable[str], dlopen: Iterable[str], what: str
) -> Pruning:
    """The names to leave out of `tree`: what no program of `programs` (globs) loads,
    with the libraries of `dlopen` (globs) kept as if a program needed them."""
    closure = Closure(tree, what)
    closure.walk(closure.roots(programs, "'programs'") + closure.roots(dlopen, "'dlopen'"))
    return closure.prune()
