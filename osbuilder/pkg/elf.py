"""What the dynamic loader reads of an ELF file: its machine, interpreter and dynamic section.

Read with pyelftools from any seekable stream (a member of a tar on disk), so a root
filesystem is never unpacked to learn which libraries its programs load.
"""

from __future__ import annotations

from typing import IO

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment
from msgspec import Struct

MAGIC = b"\x7fELF"
#: The dynamic tags whose value is a string the loader reads, by pyelftools' name for it.
_STRING_TAGS = {"DT_NEEDED": "needed", "DT_RPATH": "rpath", "DT_RUNPATH": "runpath"}


class ElfObject(Struct, frozen=True):
    """An ELF file as ld.so sees it."""

    #: (class, machine): ld.so loads a library only for an object of the same kind.
    kind: tuple[int, str]
    #: ET_DYN: a shared library (or a position-independent program).
    shared: bool
    #: PT_INTERP: the dynamic loader a program names (None: static, or a library).
    interpreter: str | None = None
    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()

    @property
    def dynamic(self) -> bool:
        return self.interpreter is not None or bool(self.needed)


def read_elf(stream: IO[bytes]) -> ElfObject | None:
    """The ELF facts of `stream` (seekable, at its start), or None when it is no ELF file
    (or one too damaged to read: the loader could not use it either)."""
    if stream.read(4) != MAGIC:
        return None
    stream.seek(0)
    try:
        elf = ELFFile(stream)
        interpreter = None
        strings: dict[str, list[str]] = {field: [] for field in _STRING_TAGS.values()}
        for segment in elf.iter_segments():
            if isinstance(segment, InterpSegment):
                interpreter = segment.get_interp_name()
            elif isinstance(segment, DynamicSegment):
                for tag in segment.iter_tags():
                    field = _STRING_TAGS.get(tag.entry.d_tag)
                    if field is not None:
                        # pyelftools gives a tag's string as an attribute named after it.
                        strings[field].append(str(getattr(tag, field)))
        return ElfObject(
            kind=(elf.elfclass, elf["e_machine"]),
            shared=elf["e_type"] == "ET_DYN",
            interpreter=interpreter,
            needed=tuple(strings["needed"]),
            rpath=tuple(_search_list(strings["rpath"])),
            runpath=tuple(_search_list(strings["runpath"])),
        )
    except (ELFError, ValueError, KeyError, OSError):
        return None


def _search_list(values: list[str]) -> list[str]:
    """DT_RPATH or DT_RUNPATH strings (colon-separated lists) as one list of entries."""
    return [entry for value in values for entry in value.split(":") if entry]
