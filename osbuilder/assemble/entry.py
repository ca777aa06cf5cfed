"""One entry of an assembled root filesystem, as the output writers receive it.

The assembler resolves layers, whiteouts, overrides and links into a tree of
these; writers (cpio, tar, disk images) walk it in order. Regular file
content lives in a spool file on disk, never in memory.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path


class Kind(enum.Enum):
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"


@dataclass(frozen=True)
class Content:
    """The bytes of a regular file: `size` bytes in the spool file at `path`.

    Entries that share one Content object are hard links to one another.
    """

    path: Path
    size: int


@dataclass
class Entry:
    """A path of the tree (relative, no leading '/', '' never appears) and its metadata."""

    path: str
    kind: Kind
    mode: int  # permission bits, including setuid/setgid/sticky (no file type bits)
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    content: Content | None = None  # FILE only
    linkname: str = ""  # SYMLINK only: the symlink's target, as stored
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)  # e.g. security.capability
    source: str = ""  # where it came from, e.g. "docker.io/osbuilder/redis:TAG"
    location: str = ""  # which part of the spec, e.g. "services[1]" (LinuxKit's location)

    @property
    def size(self) -> int:
        return self.content.size if self.content is not None else 0
