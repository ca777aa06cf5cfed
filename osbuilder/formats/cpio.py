"""Write a root filesystem as a newc ("070701") cpio archive: the format of a Linux initramfs.

What newc cannot carry, and what we do about it:

- Extended attributes: newc has no field for them and the kernel's initramfs unpacker
  (init/initramfs.c, Linux 6.1 included) sets none, so `Entry.xattrs` are dropped here.
  File capabilities (security.capability) are therefore lost in an initrd.
- Numbers: every header field is 32 bits, so files of 4 GiB or more, mtimes before 1970 or
  after 2106 and ids of 2**32 or more are rejected.
- Names and symlink targets longer than PATH_MAX: the kernel silently skips such members,
  so they are rejected here rather than vanishing at boot.

Hard links: all members of a link group share one inode number and carry its link count;
the data is attached to the last member and the others have size 0. That is what GNU cpio
writes and expects (it defers empty multiply-linked members until the one with data comes),
and the kernel accepts it too: it links every later member to the first one and writes
whatever data a member carries into the shared inode. The kernel forgets link groups at
each trailer, so a group never spans two archives.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Iterable
from typing import BinaryIO, NamedTuple

from osbuilder.assemble.entry import Content, ContentReader, Entry, Kind
from osbuilder.errors import UserError

MAGIC = b"070701"
TRAILER = b"TRAILER!!!"
PATH_MAX = 4096  # the kernel's limit on a name (with its NUL) and on a symlink target
FIELD_MAX = 0xFFFF_FFFF
CHUNK_SIZE = 1 << 20  # file content is copied in chunks of this size, never whole
_HEADER_FORMAT = MAGIC + b"%08X" * 13

_FILE_TYPE = {
    Kind.FILE: stat.S_IFREG,
    Kind.DIRECTORY: stat.S_IFDIR,
    Kind.SYMLINK: stat.S_IFLNK,
    Kind.CHAR: stat.S_IFCHR,
    Kind.BLOCK: stat.S_IFBLK,
    Kind.FIFO: stat.S_IFIFO,
}


class _Header(NamedTuple):
    """The numeric fields of a newc header, in their on-disk order."""

    ino: int = 0
    mode: int = 0  # file type and permission bits
    uid: int = 0
    gid: int = 0
    nlink: int = 0
    mtime: int = 0
    filesize: int = 0
    devmajor: int = 0  # the device holding the file: meaningless in an image, always 0
    devminor: int = 0
    rdevmajor: int = 0  # the device a device node stands for
    rdevminor: int = 0
    namesize: int = 0  # including the terminating NUL
    check: int = 0  # used only by the "070702" (crc) variant

    def pack(self) -> bytes:
        if min(self) < 0 or max(self) > FIELD_MAX:  # checked at once: this runs per member
            field, value = next(
                (field, value)
                for field, value in zip(self._fields, self, strict=True)
                if not 0 <= value <= FIELD_MAX
            )
            raise ValueError(f"{field} {value} does not fit in a newc cpio header")
        return _HEADER_FORMAT % self


def write_cpio(entries: Iterable[Entry], out: BinaryIO) -> None:
    """Write `entries` to `out` as a newc cpio archive, in the order given, then the trailer.

    Directories must come before their contents. Entry metadata is held in memory (a link
    group's size must be known when its first member is written); file content is streamed
    from the spool files.
    """
    entries = list(entries)
    inodes = _Inodes(entries)
    directories: set[str] = set()
    with ContentReader(CHUNK_SIZE) as contents:
        blocks = _Blocks(out, contents)
        for entry in entries:
            parent = _parent(entry.path)
            if parent and parent not in directories:
                raise ValueError(f"cpio: {entry.path!r} comes before its directory {parent!r}")
            if entry.kind is Kind.DIRECTORY:
                directories.add(entry.path)
            _write_member(blocks, entry, *inodes.next(entry))
        trailer = _Header(nlink=1, namesize=len(TRAILER) + 1)
        _write_record(blocks, trailer.pack(), TRAILER)
        blocks.flush()


class _Blocks:
    """The archive gathered into blocks of CHUNK_SIZE bytes, each handed to `out` whole.

    File contents are read from their files straight into the block (os.preadv): every
    byte is copied once on its way to the compressor, as when compressing a file, instead
    of into a new bytes object and then into a write buffer. `out` must be done with a
    block when its write returns (the block is reused).
    """

    def __init__(self, out: BinaryIO, contents: ContentReader) -> None:
        self._out = out
        self._contents = contents
        self._block = memoryview(bytearray(CHUNK_SIZE))
        self._used = 0

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            taken = min(CHUNK_SIZE - self._used, len(view))
            self._block[self._used : self._used + taken] = view[:taken]
            self._used += taken
            view = view[taken:]
            if self._used == CHUNK_SIZE:
                self.flush()

    def copy(self, content: Content) -> None:
        fd = self._contents.fd(content.path)
        offset, left = content.offset, content.size
        while left:
            want = min(CHUNK_SIZE - self._used, left)
            got = os.preadv(fd, [self._block[self._used : self._used + want]], offset)
            if not got:
                raise EOFError(f"{content.path} ends {left} bytes early")
            self._used += got
            offset += got
            left -= got
            if self._used == CHUNK_SIZE:
                self.flush()

    def flush(self) -> None:
        if self._used:
            self._out.write(self._block[: self._used])
            self._used = 0


class _Inodes:
    """Inode numbers in output order, from 1; the members of a link group share the first's."""

    def __init__(self, entries: list[Entry]) -> None:
        self._links = Counter(id(e.content) for e in entries if e.content is not None)
        self._links_left = self._links.copy()
        self._subdirectories = Counter(_parent(e.path) for e in entries if e.kind is Kind.DIRECTORY)
        self._group_inodes: dict[int, int] = {}  # id(Content) -> its first member's inode
        self._count = 0

    def next(self, entry: Entry) -> tuple[int, int, bool]:
        """The entry's inode number, its link count, and whether its data goes with it."""
        if entry.content is None:
            self._count += 1
            if entry.kind is Kind.DIRECTORY:  # ".", its name in its parent, each child's ".."
                return self._count, 2 + self._subdirectories[entry.path], True
            return self._count, 1, True
        group = id(entry.content)
        if group not in self._group_inodes:
            self._count += 1
            self._group_inodes[group] = self._count
        self._links_left[group] -= 1
        return self._group_inodes[group], self._links[group], self._links_left[group] == 0


def _write_member(out: _Blocks, entry: Entry, inode: int, nlink: int, has_data: bool) -> None:
    name = os.fsencode(entry.path)
    if len(name) + 1 > PATH_MAX:
        raise _unrepresentable(entry, f"its name is longer than {PATH_MAX - 1} bytes")
    target = os.fsencode(entry.linkname) if entry.kind is Kind.SYMLINK else b""
    if len(target) > PATH_MAX:
        raise _unrepresentable(entry, f"its symlink target is longer than {PATH_MAX} bytes")

    # A link group's data goes with its last member; the others say size 0.
    size = len(target) if entry.kind is Kind.SYMLINK else (entry.size if has_data else 0)
    header = _Header(
        ino=inode,
        mode=_FILE_TYPE[entry.kind] | stat.S_IMODE(entry.mode),
        uid=entry.uid,
        gid=entry.gid,
        nlink=nlink,
        mtime=entry.mtime,
        filesize=size,
        rdevmajor=entry.devmajor,
        rdevminor=entry.devminor,
        namesize=len(name) + 1,
    )
    try:
        packed = header.pack()
    except ValueError as error:
        raise _unrepresentable(entry, str(error)) from None
    _write_record(out, packed, name)
    if target:
        out.write(target)
    elif size and entry.content is not None:
        out.copy(entry.content)
    out.write(_padding(size))


def _write_record(out: _Blocks, header: bytes, name: bytes) -> None:
    """A header and its NUL-terminated name, padded so that the data starts 4-byte aligned."""
    record = header + name + b"\0"
    out.write(record + _padding(len(record)))


def _unrepresentable(entry: Entry, reason: str) -> UserError:
    where = f"{entry.path} (from {entry.source})" if entry.source else entry.path
    return UserError(f"{where} cannot go into an initramfs: {reason}")


def _padding(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _parent(path: str) -> str:
    return path.rpartition("/")[0]
