"""One entry of an assembled root filesystem, as the output writers receive it.

The assembler resolves layers, whiteouts, overrides and links into a tree of
these; writers (cpio, tar, disk images) walk it in order. Regular file
content stays on disk, never in memory: in a layer's snapshot (its
uncompressed tar) or in the build's spool file.
"""

from __future__ import annotations

import enum
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from msgspec import Struct, field


class Kind(enum.Enum):
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"


class Content(Struct, frozen=True):
    """The bytes of a regular file: `size` bytes at `offset` in the file `path`.

    Entries that share one Content object are hard links to one another.
    """

    path: Path
    size: int
    offset: int = 0

    def open(self) -> IO[bytes]:
        """A reader of exactly these bytes."""
        window = FileWindow(self.path.open("rb", buffering=0), self.offset, self.size, owns=True)
        return io.BufferedReader(window, 1024 * 1024)

    def read_bytes(self) -> bytes:
        with self.open() as stream:
            return stream.read()


class ContentReader:
    """Copies contents out for a writer, keeping each file open from one entry to the next.

    Contents live in a handful of files (layer snapshots, the spool), so opening the file
    anew for each of thousands of entries would be most of the cost of small ones.
    """

    def __init__(self, chunk_size: int = 1024 * 1024) -> None:
        self._chunk_size = chunk_size
        self._files: dict[Path, int] = {}

    def fd(self, path: Path) -> int:
        """An open descriptor of `path`, for reading at offsets (os.pread)."""
        fd = self._files.get(path)
        if fd is None:
            fd = self._files[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        return fd

    def copy(self, content: Content, out: IO[bytes]) -> None:
        for chunk in self.chunks(content):
            out.write(chunk)

    def chunks(self, content: Content) -> Iterator[bytes]:
        """The content's bytes, a chunk at a time."""
        fd = self.fd(content.path)
        offset, left = content.offset, content.size
        while left:
            chunk = os.pread(fd, min(self._chunk_size, left), offset)
            if not chunk:
                raise EOFError(f"{content.path} ends {left} bytes early")
            yield chunk
            offset += len(chunk)
            left -= len(chunk)

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()

    def __enter__(self) -> ContentReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class FileWindow(io.RawIOBase):
    """`size` bytes of `raw` from `offset`, as a seekable file of their own.

    A read that finds `raw` ending before the window does raises EOFError: contents are
    never silently cut short.
    """

    def __init__(self, raw: IO[bytes], offset: int, size: int, *, owns: bool = False) -> None:
        super().__init__()
        self._raw, self._offset, self._size, self._owns = raw, offset, size, owns
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, position: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + position)
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")[: max(0, self._size - self._position)]
        if not view:
            return 0
        self._raw.seek(self._offset + self._position)
        count = int(self._raw.readinto(view) or 0)  # type: ignore[attr-defined]
        if not count:
            raise EOFError(f"{getattr(self._raw, 'name', 'the file')} ends early")
        self._position += count
        return count

    def close(self) -> None:
        if self._owns:
            self._raw.close()
        super().close()


class Entry(Struct):
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
