"""dmsetup and what it loads, taken from the system's tree for the boot stage of --verity.

Debian's kernels build device-mapper as a module, so the kernel cannot set up the root's
dm-verity mapping itself (`dm-mod.create=`): the boot stage does, with the dmsetup of
the system's init image (osbuilder/init has it). It is a dynamic program: the stage
carries it with its dynamic loader and each library it needs (its ELF closure, found in
the system's library directories as ld.so finds them) side by side in one directory, and
runs it through the loader (`LOADER --library-path DIR DIR/dmsetup`): no paths of the
system's layout to rebuild in the stage.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from msgspec import Struct

from osbuilder.assemble.entry import Kind
from osbuilder.errors import UserError

if TYPE_CHECKING:
    from osbuilder.assemble.entry import Entry
    from osbuilder.assemble.tree import Tree
    from osbuilder.pkg.elf import ElfObject

DMSETUP = "sbin/dmsetup"
DMSETUP_DIRECTORY = "dm"  # in the boot stage: dmsetup, its loader and libraries


class DmsetupFiles(Struct, frozen=True):
    files: dict[str, Entry]  # by the name the stage gives them in DMSETUP_DIRECTORY
    loader: str  # which of them is the dynamic loader


def dmsetup_files(tree: Tree) -> DmsetupFiles:
    """The system's dmsetup and its ELF closure."""
    program = _file(tree, DMSETUP)
    if program is None:
        raise UserError(
            f"--verity: the system has no /{DMSETUP} to open its root through dm-verity "
            "with; build it with an init image that has one (osbuilder/init has)"
        )
    files = {"dmsetup": program}
    loader = None
    pending = [(DMSETUP, program)]
    while pending:
        path, entry = pending.pop()
        found = _elf(entry, path)
        wanted = list(found.needed)
        if found.interpreter is not None:
            loader = posixpath.basename(found.interpreter)
            wanted.append(found.interpreter)
        for name in wanted:
            library = posixpath.basename(name)
            if library in files:
                continue
            located = _locate(tree, name, found)
            if located is None:
                raise UserError(
                    f"--verity: /{path} needs {name}, which the system does not have; "
                    "the boot stage cannot run dmsetup without it"
                )
            files[library] = located[1]
            pending.append(located)
    if loader is None:
        raise UserError(f"--verity: /{DMSETUP} names no dynamic loader (PT_INTERP)")
    return DmsetupFiles(files, loader)


def _locate(tree: Tree, name: str, loader: ElfObject) -> tuple[str, Entry] | None:
    """Where ld.so finds the library `name` (a path, or a name in the default directories)
    for `loader`: one of its own class and machine."""
    from osbuilder.pkg.closure import DEFAULT_DIRECTORIES
    from osbuilder.pkg.elf import read_elf

    if "/" in name:
        candidates = [name.lstrip("/")]
    else:
        candidates = [f"{directory}/{name}" for directory in DEFAULT_DIRECTORIES]
    for candidate in candidates:
        path = tree.resolve(candidate, follow_last=True)
        entry = _file(tree, path)
        if entry is None or entry.content is None:
            continue
        with entry.content.open() as stream:
            found = read_elf(stream)
        if found is not None and found.kind == loader.kind:
            return path, entry
    return None


def _file(tree: Tree, path: str) -> Entry | None:
    entry = tree.get(tree.resolve(path, follow_last=True))
    if entry is None or entry.kind is not Kind.FILE or entry.content is None:
        return None
    return entry


def _elf(entry: Entry, path: str) -> ElfObject:
    from osbuilder.pkg.elf import read_elf

    assert entry.content is not None
    with entry.content.open() as stream:
        found = read_elf(stream)
    if found is None:
        raise UserError(f"--verity: /{path} is not an ELF file the boot stage can run")
    return found
