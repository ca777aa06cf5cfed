"""Write a root filesystem as an uncompressed EROFS image, the Linux kernel's read-only
file system (fs/erofs): the root disk of the `kernel+erofs` format.

The image is made here, in Python, from the entries alone: Debian 12's mkfs.erofs (1.5)
only reads a directory, which would need the tree on disk and root for its device nodes
and owners. What is written is the on-disk format of fs/erofs/erofs_fs.h that the 6.1
kernel reads:

- 4096-byte blocks. Block 0 holds the superblock at byte 1024 and also starts the
  metadata area (meta_blkaddr 0, as mkfs.erofs does): inodes follow the superblock, the
  root directory's first. Data that fills whole blocks comes after the metadata.
- Every inode is the extended (64-byte) form, so each keeps its own mtime, 32-bit owners
  and link count. Hard links (entries sharing one Content) are one inode with nlink names.
- Data layouts: the last partial block of a file, directory or symlink sits inline after
  its inode and xattrs (FLAT_INLINE) when the three fit in one block, which they must not
  cross; whole-block sizes, and tails too big to sit inline, are FLAT_PLAIN. Inodes are
  packed best-fit into the metadata blocks, so the tails of thousands of small files
  share blocks instead of taking one each.
- Extended attributes are inline after the inode, never shared. EROFS stores a name as
  one of its known prefixes (user., trusted., security., the POSIX ACLs) and the rest:
  any other name cannot be stored, and is an error.
- The superblock carries the crc32c the kernel then checks (COMPAT_SB_CHKSUM).

The image depends on the entries, `epoch` and `uuid` alone: the superblock's build time is
`epoch`, and the root directory, which the walk does not carry, is 0755 root:root with
mtime `epoch`. The whole layout is decided before the first byte is written, so the image
is written front to back in one pass and `out` only needs write(). Metadata is held in
memory (a few hundred bytes per entry); contents are streamed from their files in chunks.
set_uuid() gives a written image another uuid, e.g. one derived from its own bytes.
"""

from __future__ import annotations

import bisect
import io
import itertools
import os
import stat
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from msgspec import Struct, field

from osbuilder.assemble.entry import Content, ContentReader, Entry, Kind
from osbuilder.errors import UserError

BLOCK_SIZE = 4096
BLOCK_BITS = 12
SUPERBLOCK_OFFSET = 1024
MAGIC = 0xE0F5_E1E2
FEATURE_COMPAT_SB_CHKSUM = 0x1
FLAT_PLAIN = 0  # data in whole blocks from i_u's block address
FLAT_INLINE = 2  # the same, but the last partial block right after the inode
SLOT_SIZE = 32  # a nid counts 32-byte slots from the start of the metadata area
NAME_MAX = 255
NULL_ADDR = 0xFFFF_FFFF  # i_u of an inode without data blocks, as mkfs.erofs writes it
MAX_BLOCKS = 0xFFFF_FFFF  # block numbers are 32 bits, and NULL_ADDR is not a block
CHUNK_SIZE = 1 << 20  # contents are copied in chunks of this size, never whole

_SUPERBLOCK = struct.Struct("<IIIBBHQQIIII16s16sIHHH38x")
_INODE = struct.Struct("<HHHHQIIIIqII16x")  # erofs_inode_extended
_DIRENT = struct.Struct("<QHBx")
_XATTR_ENTRY = struct.Struct("<BBH")
_XATTR_HEADER = bytes(12)  # erofs_xattr_ibody_header: no name filter, no shared xattrs
_FIRST_INODE = SUPERBLOCK_OFFSET + _SUPERBLOCK.size
_CHECKSUM_OFFSET = SUPERBLOCK_OFFSET + 4
_UUID_OFFSET = SUPERBLOCK_OFFSET + 48
_EXTENDED = 1  # i_format bit 0: the 64-byte inode

# Each kind's file type bits (i_mode) and its EROFS_FT_* (dirents).
_TYPES = {
    Kind.FILE: (stat.S_IFREG, 1),
    Kind.DIRECTORY: (stat.S_IFDIR, 2),
    Kind.CHAR: (stat.S_IFCHR, 3),
    Kind.BLOCK: (stat.S_IFBLK, 4),
    Kind.FIFO: (stat.S_IFIFO, 5),
    Kind.SYMLINK: (stat.S_IFLNK, 7),
}
# EROFS_XATTR_INDEX_*: the ACLs' whole names, else the prefix of the name.
_XATTR_NAMES = {b"system.posix_acl_access": 2, b"system.posix_acl_default": 3}
_XATTR_PREFIXES = ((b"user.", 1), (b"trusted.", 4), (b"security.", 6))


def write_erofs(entries: Iterable[Entry], out: BinaryIO, *, epoch: int, uuid: bytes) -> None:
    """Write the entries (parents before children, as Tree.walk() yields them; the root
    directory itself is not among them) as an uncompressed EROFS image into `out`.

    Writes sequentially from `out`'s position 0 (only write() is used). A name, file or
    xattr EROFS cannot hold is a UserError naming the path.
    """
    if len(uuid) != 16:
        raise ValueError(f"an EROFS uuid is 16 bytes, not {len(uuid)}")
    inodes = _inodes(entries, epoch)
    meta_blocks = _place(inodes)
    blocks = meta_blocks
    for inode in inodes:
        if inode.blocks:
            inode.blkaddr = blocks
            blocks += inode.blocks
            if blocks > MAX_BLOCKS:
                raise _unrepresentable(inode.entry, "the image would be over 16 TiB")
    root = inodes[0]
    superblock = _SUPERBLOCK.pack(
        MAGIC,
        0,  # the checksum, set once block 0 is complete
        FEATURE_COMPAT_SB_CHKSUM,
        BLOCK_BITS,
        0,  # no extension slots
        root.nid,
        len(inodes),
        epoch,  # build_time, which dump.erofs shows
        0,
        blocks,
        0,  # meta_blkaddr
        0,  # xattr_blkaddr: no shared xattrs
        uuid,
        b"",  # no volume name
        0,  # feature_incompat: none
        0,
        0,  # no extra devices
        0,
    )
    with ContentReader(CHUNK_SIZE) as contents:
        _write_metadata(inodes, meta_blocks, superblock, contents, out)
        for inode in inodes:
            if inode.blocks:
                _write_data(inode, contents, out)


class _Inode(Struct, eq=False):
    entry: Entry  # its first name's entry (the root's is made up)
    number: int  # i_ino: only 32-bit stat() shows it, the kernel numbers inodes by nid
    nlink: int = 1
    xattrs: bytes = b""  # the inline xattr body, header included
    size: int = 0
    target: bytes = b""  # a symlink's
    layout: int = FLAT_PLAIN
    blocks: int = 0  # data blocks after the metadata area
    blkaddr: int = NULL_ADDR
    position: int = 0  # byte offset of the inode in the image, from which its nid follows
    parent: _Inode | None = None  # a directory's
    dirents: list[tuple[bytes, _Inode]] = field(default_factory=list)  # sorted, with . and ..
    dirents_per_block: list[int] = field(default_factory=list)

    @property
    def nid(self) -> int:
        return self.position // SLOT_SIZE  # meta_blkaddr is 0: positions count from 0

    @property
    def tail(self) -> int:
        return self.size % BLOCK_SIZE if self.layout == FLAT_INLINE else 0

    @property
    def record(self) -> int:
        """Its bytes in the metadata area: inode, xattrs, inline tail."""
        return _INODE.size + len(self.xattrs) + self.tail


def _inodes(entries: Iterable[Entry], epoch: int) -> list[_Inode]:
    """One inode per file (hard links share one), the root first, then in walk order; with
    each one's size, layout and directory contents decided."""
    root = _Inode(Entry("", Kind.DIRECTORY, 0o755, mtime=epoch), 1, nlink=2)
    root.parent = root
    inodes = [root]
    directories = {"": root}
    # id(Content) -> its inode; the inode's entry holds the Content, so the id stays its own
    links: dict[int, _Inode] = {}
    for entry in entries:
        parent_path, _, name = entry.path.rpartition("/")
        parent = directories.get(parent_path)
        if parent is None:
            raise ValueError(f"erofs: {entry.path!r} comes before its directory {parent_path!r}")
        encoded = os.fsencode(name)
        if len(encoded) > NAME_MAX:
            raise _unrepresentable(entry, f"its name is longer than {NAME_MAX} bytes")
        inode = links.get(id(entry.content)) if entry.content is not None else None
        if inode is not None:
            inode.nlink += 1
        else:
            inode = _new_inode(entry, len(inodes) + 1)
            inodes.append(inode)
            if entry.content is not None:
                links[id(entry.content)] = inode
            if entry.kind is Kind.DIRECTORY:
                inode.nlink = 2  # its name and its "."; each subdirectory's ".." adds one
                inode.parent = parent
                parent.nlink += 1
                directories[entry.path] = inode
        parent.dirents.append((encoded, inode))
    for inode in inodes:
        if inode.parent is not None:
            _lay_out_directory(inode)
        _choose_layout(inode)
    return inodes


def _new_inode(entry: Entry, number: int) -> _Inode:
    if not 0 <= entry.uid <= 0xFFFF_FFFF or not 0 <= entry.gid <= 0xFFFF_FFFF:
        raise _unrepresentable(entry, f"its owner {entry.uid}:{entry.gid} is over 32 bits")
    if not -(1 << 63) <= entry.mtime < 1 << 63:
        raise _unrepresentable(entry, f"its mtime {entry.mtime} is over 64 bits")
    if entry.kind in (Kind.CHAR, Kind.BLOCK) and (
        not 0 <= entry.devmajor <= 0xFFF or not 0 <= entry.devminor <= 0xF_FFFF
    ):
        raise _unrepresentable(
            entry, f"device {entry.devmajor}:{entry.devminor} is over Linux's 12:20 bits"
        )
    inode = _Inode(entry, number, xattrs=_xattr_body(entry), size=entry.size)
    if entry.kind is Kind.SYMLINK:
        inode.target = os.fsencode(entry.linkname)
        inode.size = len(inode.target)
        if inode.size >= BLOCK_SIZE:  # the kernel reads a target from one page, NUL included
            raise _unrepresentable(entry, f"its symlink target is over {BLOCK_SIZE - 1} bytes")
    return inode


def _xattr_body(entry: Entry) -> bytes:
    """The inline xattrs: the ibody header, then each entry padded to 4 bytes."""
    if not entry.xattrs:
        return b""
    items: list[tuple[int, bytes, bytes]] = []
    for name, value in entry.xattrs.items():
        encoded = os.fsencode(name)
        index, suffix = _XATTR_NAMES.get(encoded, 0), b""
        for prefix, prefix_index in _XATTR_PREFIXES if not index else ():
            if encoded.startswith(prefix):
                index, suffix = prefix_index, encoded[len(prefix) :]
                break
        if not index:
            raise _unrepresentable(
                entry, f"EROFS has no prefix for the name of its extended attribute {name!r}"
            )
        if len(suffix) > 255 or len(value) > 0xFFFF:
            raise _unrepresentable(entry, f"its extended attribute {name!r} is too long")
        items.append((index, suffix, value))
    parts = [_XATTR_HEADER]
    for index, suffix, value in sorted(items):  # sorted: the image must not vary with dict order
        item = _XATTR_ENTRY.pack(len(suffix), index, len(value)) + suffix + value
        parts.append(item + bytes(-len(item) % 4))
    body = b"".join(parts)
    if _xattr_count(body) > 0xFFFF:
        raise _unrepresentable(entry, "its extended attributes are over 256 KiB")
    return body


def _xattr_count(body: bytes) -> int:
    """i_xattr_icount: the body's size as the header plus 4-byte units."""
    return (len(body) - len(_XATTR_HEADER)) // 4 + 1 if body else 0


def _lay_out_directory(directory: _Inode) -> None:
    """Sort the dirents (the kernel's lookup bisects across blocks, then within one) and split
    them into blocks that each hold whole dirents and names; the size follows."""
    assert directory.parent is not None
    dirents = [(b".", directory), (b"..", directory.parent), *directory.dirents]
    dirents.sort(key=lambda dirent: dirent[0])
    for (name, _), (following, _) in itertools.pairwise(dirents):
        if name == following:
            where = directory.entry.path or "/"
            raise ValueError(f"erofs: {os.fsdecode(name)!r} comes twice in {where!r}")
    directory.dirents = dirents
    counts, used = [0], 0
    for name, _ in dirents:
        if used + _DIRENT.size + len(name) > BLOCK_SIZE:
            counts.append(0)
            used = 0
        counts[-1] += 1
        used += _DIRENT.size + len(name)
    directory.dirents_per_block = counts
    directory.size = (len(counts) - 1) * BLOCK_SIZE + used


def _choose_layout(inode: _Inode) -> None:
    """Inline the last partial block if it fits in one metadata block with the inode."""
    tail = inode.size % BLOCK_SIZE
    if tail and _INODE.size + len(inode.xattrs) + tail <= BLOCK_SIZE:
        inode.layout = FLAT_INLINE
        inode.blocks = inode.size // BLOCK_SIZE
    else:
        inode.layout = FLAT_PLAIN
        inode.blocks = -(-inode.size // BLOCK_SIZE)


def _place(inodes: list[_Inode]) -> int:
    """Give each inode its position in the metadata area (best fit, in walk order so that
    a directory's files stay near it); the number of blocks the area takes."""
    # (bytes left at the end of a block, block), sorted; block 0 starts after the superblock
    room = [(BLOCK_SIZE - _FIRST_INODE, 0)]
    blocks = 1
    for inode in inodes:  # the root first: its nid must fit the superblock's 16 bits
        need = -(-inode.record // SLOT_SIZE) * SLOT_SIZE
        if need > BLOCK_SIZE:  # large xattrs: blocks of its own (no tail is inline then)
            inode.position = blocks * BLOCK_SIZE
            blocks += -(-need // BLOCK_SIZE)
            left, block = -need % BLOCK_SIZE, blocks - 1
        else:
            found = bisect.bisect_left(room, (need, 0))
            if found < len(room):
                free, block = room.pop(found)
            else:
                free, block = BLOCK_SIZE, blocks
                blocks += 1
            inode.position = block * BLOCK_SIZE + BLOCK_SIZE - free
            left = free - need
        if left >= _INODE.size:
            bisect.insort(room, (left, block))
    assert inodes[0].nid <= 0xFFFF
    return blocks


def set_uuid(image: Path, uuid: bytes) -> None:
    """Give an image written by write_erofs() another uuid, the superblock's checksum
    following: so that a uuid can be derived from the image's own bytes."""
    if len(uuid) != 16:
        raise ValueError(f"an EROFS uuid is 16 bytes, not {len(uuid)}")
    with image.open("r+b") as file:
        block = bytearray(file.read(BLOCK_SIZE))
        if len(block) < BLOCK_SIZE or block[SUPERBLOCK_OFFSET : SUPERBLOCK_OFFSET + 4] != (
            MAGIC.to_bytes(4, "little")
        ):
            raise ValueError(f"{image} is not an EROFS image")
        block[_UUID_OFFSET : _UUID_OFFSET + 16] = uuid
        block[_CHECKSUM_OFFSET : _CHECKSUM_OFFSET + 4] = bytes(4)  # summed as zeros
        checksum = _crc32c(bytes(block[SUPERBLOCK_OFFSET:]))
        block[_CHECKSUM_OFFSET : _CHECKSUM_OFFSET + 4] = checksum.to_bytes(4, "little")
        file.seek(0)
        file.write(block)


def _write_metadata(
    inodes: list[_Inode],
    meta_blocks: int,
    superblock: bytes,
    contents: ContentReader,
    out: BinaryIO,
) -> None:
    """Block 0 with the superblock, then every inode, its xattrs and inline tail, in
    position order, buffered and written a chunk at a time."""
    buffer = io.BytesIO()
    buffer.write(bytes(SUPERBLOCK_OFFSET) + superblock)
    written = 0  # the image's bytes before the buffer's
    for inode in sorted(inodes, key=lambda inode: inode.position):
        buffer.write(bytes(inode.position - written - buffer.tell()))
        buffer.write(_inode_bytes(inode))
        buffer.write(inode.xattrs)
        if inode.tail:
            _write_tail(inode, contents, buffer)
        if buffer.tell() >= CHUNK_SIZE:
            written += _flush(buffer, out, first=not written)
    buffer.write(bytes(meta_blocks * BLOCK_SIZE - written - buffer.tell()))
    _flush(buffer, out, first=not written)


def _flush(buffer: io.BytesIO, out: BinaryIO, *, first: bool) -> int:
    """Write out the buffer and empty it; the first time, with the superblock's checksum
    (of block 0 from the superblock on, block 0 being whole by then)."""
    with buffer.getbuffer() as data:
        if first:
            checksum = _crc32c(bytes(data[SUPERBLOCK_OFFSET:BLOCK_SIZE]))
            data[_CHECKSUM_OFFSET : _CHECKSUM_OFFSET + 4] = checksum.to_bytes(4, "little")
        out.write(data)
        length = len(data)
    buffer.seek(0)
    buffer.truncate()
    return length


def _inode_bytes(inode: _Inode) -> bytes:
    entry = inode.entry
    file_type = _TYPES[entry.kind][0]
    if entry.kind in (Kind.CHAR, Kind.BLOCK):
        i_u = _encode_device(entry.devmajor, entry.devminor)
    elif entry.kind is Kind.FIFO:
        i_u = 0
    else:
        i_u = inode.blkaddr
    return _INODE.pack(
        _EXTENDED | inode.layout << 1,
        _xattr_count(inode.xattrs),
        file_type | stat.S_IMODE(entry.mode),
        0,
        inode.size,
        i_u,
        inode.number,
        entry.uid,
        entry.gid,
        entry.mtime,
        0,
        inode.nlink,
    )


def _write_tail(inode: _Inode, contents: ContentReader, buffer: io.BytesIO) -> None:
    kind, content = inode.entry.kind, inode.entry.content
    if kind is Kind.FILE and content is not None:
        full = inode.blocks * BLOCK_SIZE
        contents.copy(Content(content.path, inode.tail, content.offset + full), buffer)
    elif kind is Kind.DIRECTORY:
        buffer.write(_directory_block(inode, len(inode.dirents_per_block) - 1))
    else:
        buffer.write(inode.target)


def _write_data(inode: _Inode, contents: ContentReader, out: BinaryIO) -> None:
    """The inode's blocks in the data area, each one padded to the block size."""
    kind, content = inode.entry.kind, inode.entry.content
    if kind is Kind.FILE and content is not None:
        written = min(inode.size, inode.blocks * BLOCK_SIZE)
        contents.copy(Content(content.path, written, content.offset), out)
        out.write(bytes(-written % BLOCK_SIZE))
    elif kind is Kind.DIRECTORY:
        for index in range(inode.blocks):
            block = _directory_block(inode, index)
            out.write(block + bytes(BLOCK_SIZE - len(block)))
    else:
        out.write(inode.target + bytes(-len(inode.target) % BLOCK_SIZE))


def _directory_block(directory: _Inode, index: int) -> bytes:
    """A directory's block `index`: its 12-byte dirents, then their names (no NULs: a name
    ends where the next begins, or at the end of the block or of the directory)."""
    counts = directory.dirents_per_block
    start = sum(counts[:index])
    heads, names = [], []
    nameoff = counts[index] * _DIRENT.size
    for name, inode in directory.dirents[start : start + counts[index]]:
        heads.append(_DIRENT.pack(inode.nid, nameoff, _TYPES[inode.entry.kind][1]))
        names.append(name)
        nameoff += len(name)
    return b"".join(heads) + b"".join(names)


def _encode_device(major: int, minor: int) -> int:
    """The kernel's new_encode_dev(), which the 6.1 kernel decodes i_u.rdev with."""
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F6_3B78 if crc & 1 else 0)
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def _crc32c(data: bytes) -> int:
    """CRC-32C as the kernel's crc32c(~0, data) computes it: seeded with ~0, not inverted."""
    crc = 0xFFFF_FFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


def _unrepresentable(entry: Entry, reason: str) -> UserError:
    where = f"{entry.path} (from {entry.source})" if entry.source else entry.path
    return UserError(f"{where} cannot go into an erofs image: {reason}")
