"""The EROFS writer, checked with erofs-utils: fsck.erofs checks the image and extracts it
(contents, modes, owners, targets, devices), dump.erofs shows inodes, directories and the
superblock; what neither shows (xattrs, setuid bits) is read from the image's own bytes."""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import subprocess
import time
import uuid as uuid_module
from datetime import UTC, datetime
from pathlib import Path

import pytest

from osbuilder.assemble.entry import Content, Entry, Kind
from osbuilder.errors import UserError
from osbuilder.formats.erofs import set_uuid, write_erofs
from tests.unit.formats.helpers import (
    BINARY_XATTR,
    BUSYBOX_LINKS,
    CAPABILITY,
    MTIME,
    Spool,
    run_tool,
    sample_tree,
)
from tests.unit.formats.test_memory import ByteCounter

EPOCH = 1_600_000_000
UUID = bytes.fromhex("0123456789abcdef0011223344556677")
BLOCK = 4096
IS_ROOT = os.geteuid() == 0
# EROFS_FT_* of each kind, as dirents carry them
FILE_TYPES = {
    Kind.FILE: 1,
    Kind.DIRECTORY: 2,
    Kind.CHAR: 3,
    Kind.BLOCK: 4,
    Kind.FIFO: 5,
    Kind.SYMLINK: 7,
}
KIND_OF_MODE = {
    stat.S_IFREG: Kind.FILE,
    stat.S_IFDIR: Kind.DIRECTORY,
    stat.S_IFLNK: Kind.SYMLINK,
    stat.S_IFCHR: Kind.CHAR,
    stat.S_IFBLK: Kind.BLOCK,
    stat.S_IFIFO: Kind.FIFO,
}
# erofs_xattr_entry's e_name_index, from erofs_fs.h
XATTR_INDEXES = {
    1: "user.",
    2: "system.posix_acl_access",
    3: "system.posix_acl_default",
    4: "trusted.",
    6: "security.",
}


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    """dump.erofs shows times in local time."""
    monkeypatch.setenv("TZ", "UTC")


def write_image(path: Path, entries: list[Entry], *, uuid: bytes = UUID) -> Path:
    with path.open("wb") as out:
        write_erofs(entries, out, epoch=EPOCH, uuid=uuid)
    return path


@pytest.fixture
def image(tmp_path: Path, tree: list[Entry]) -> Path:
    return write_image(tmp_path / "root.erofs", tree)


def extract(image: Path, directory: Path) -> Path:
    """fsck.erofs checks the image as it extracts it."""
    preserve = "--preserve" if IS_ROOT else "--preserve-perms"
    run_tool("fsck.erofs", f"--extract={directory}", preserve, image)
    return directory


def dump(image: Path, path: str) -> dict[str, str]:
    """dump.erofs's fields for `path` ("NID", "Links", "Timestamp", ...)."""
    fields: dict[str, str] = {}
    output = run_tool("dump.erofs", f"--path=/{path}", image)
    for line in output.decode(errors="surrogateescape").splitlines():
        if line.startswith("File : "):
            continue
        parts = [part.strip() for part in line.replace("  ", "\0").split("\0") if part.strip()]
        for part in parts:
            key, _, value = part.partition(": ")
            fields[key] = value
    return fields


def listing(image: Path, path: str) -> list[tuple[bytes, int, int]]:
    """dump.erofs --ls: each dirent's name, nid and file type, in on-disk order."""
    output = run_tool("dump.erofs", f"--path=/{path}", "--ls", image)
    lines = output.split(b"\n       NID TYPE  FILENAME\n", 1)[1].splitlines()
    dirents = []
    for line in lines:
        nid, file_type, name = line.split(maxsplit=2)
        dirents.append((name, int(nid), int(file_type)))
    return dirents


def superblock(image: Path) -> dict[str, str]:
    fields = {}
    for line in run_tool("dump.erofs", "-s", image).decode().splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def raw_inode(image: Path, path: str) -> tuple[int, dict[str, bytes]]:
    """The i_mode and the inline xattrs of `path`'s inode, parsed from the image's bytes at
    the nid dump.erofs finds for it (dump.erofs 1.5 shows neither setuid bits nor xattrs)."""
    fields = dump(image, path)
    meta_blkaddr = int(superblock(image)["Filesystem inode metadata start block"])
    inode_size, xattr_size = int(fields["Inode size"]), int(fields["Xattr size"])
    data = image.read_bytes()
    start = meta_blkaddr * BLOCK + int(fields["NID"]) * 32
    i_format, i_xattr_icount, i_mode = struct.unpack_from("<HHH", data, start)
    assert i_format & 1 and inode_size == 64  # the extended inode
    assert xattr_size == (12 + 4 * (i_xattr_icount - 1) if i_xattr_icount else 0)
    xattrs: dict[str, bytes] = {}
    if not xattr_size:
        return i_mode, xattrs
    assert data[start + inode_size + 4] == 0  # h_shared_count: no shared xattrs
    offset, end = start + inode_size + 12, start + inode_size + xattr_size
    while offset < end:
        name_len, index, value_size = struct.unpack_from("<BBH", data, offset)
        name = data[offset + 4 : offset + 4 + name_len]
        value = data[offset + 4 + name_len : offset + 4 + name_len + value_size]
        xattrs[XATTR_INDEXES[index] + os.fsdecode(name)] = value
        offset += (4 + name_len + value_size + 3) & ~3
    assert offset == end
    return i_mode, xattrs


def parent(path: str) -> str:
    return path.rpartition("/")[0]


def utc_time(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def pattern(size: int, seed: int = 0) -> bytes:
    """Bytes that differ in every block, so a block out of place shows."""
    blocks = (hashlib.sha256(b"%d %d" % (seed, n)).digest() * 128 for n in range(size // BLOCK + 1))
    return b"".join(blocks)[:size]


def assert_extracted(root: Path, entries: list[Entry]) -> None:
    for entry in entries:
        path = root / entry.path
        info = path.lstat()
        assert KIND_OF_MODE[stat.S_IFMT(info.st_mode)] is entry.kind, entry.path
        # fsck.erofs chowns after its chmod, which drops setuid and setgid bits: raw_inode()
        # checks those
        assert stat.S_IMODE(info.st_mode) & 0o1777 == entry.mode & 0o1777, entry.path
        assert int(info.st_mtime) == entry.mtime, entry.path
        if IS_ROOT:
            assert (info.st_uid, info.st_gid) == (entry.uid, entry.gid), entry.path
        if entry.kind is Kind.FILE:
            expected = entry.content.read_bytes() if entry.content else b""
            assert path.read_bytes() == expected, entry.path
        elif entry.kind is Kind.SYMLINK:
            assert os.readlink(path) == entry.linkname, entry.path
        elif entry.kind in (Kind.CHAR, Kind.BLOCK):
            assert os.major(info.st_rdev) == entry.devmajor, entry.path
            assert os.minor(info.st_rdev) == entry.devminor, entry.path
        elif entry.kind is Kind.DIRECTORY:
            names = {e.path.rpartition("/")[2] for e in entries if parent(e.path) == entry.path}
            assert {child.name for child in path.iterdir()} == names, entry.path


def test_extracted_tree_matches_the_entries(tmp_path: Path, image: Path, tree: list[Entry]) -> None:
    run_tool("fsck.erofs", image)
    root = extract(image, tmp_path / "extracted")
    assert_extracted(root, tree)
    assert stat.S_IMODE(root.stat().st_mode) == 0o755
    assert sorted(os.listdir(root)) == sorted({e.path.split("/")[0] for e in tree})


def test_inodes_keep_mtimes_owners_and_links(image: Path, tree: list[Entry]) -> None:
    nids: dict[str, int] = {}
    for entry in tree:
        fields = dump(image, entry.path)
        nids[entry.path] = int(fields["NID"])
        assert fields["Timestamp"] == f"{utc_time(entry.mtime)}.000000000", entry.path
        assert (int(fields["Uid"]), int(fields["Gid"])) == (entry.uid, entry.gid), entry.path
        assert fields["Access"].split("/")[0] == f"{entry.mode & 0o777:04o}", entry.path
        if entry.kind is not Kind.DIRECTORY:
            size = len(os.fsencode(entry.linkname)) if entry.kind is Kind.SYMLINK else entry.size
            assert int(fields["Size"]) == size, entry.path
        if entry.path in BUSYBOX_LINKS:
            links = len(BUSYBOX_LINKS)
        elif entry.kind is Kind.DIRECTORY:  # its name, its ".", each subdirectory's ".."
            links = 2 + sum(e.kind is Kind.DIRECTORY and parent(e.path) == entry.path for e in tree)
        else:
            links = 1
        assert int(fields["Links"]) == links, entry.path
    # one inode for the three names of busybox, one each for all else
    assert len({nids[path] for path in BUSYBOX_LINKS}) == 1
    assert len(set(nids.values())) == len(tree) - len(BUSYBOX_LINKS) + 1

    root = dump(image, "")
    assert root["Timestamp"] == f"{utc_time(EPOCH)}.000000000"
    assert (root["Uid"], root["Gid"], root["Access"]) == ("0", "0", "0755/rwxr-xr-x")
    top_directories = {e.path for e in tree if e.kind is Kind.DIRECTORY and "/" not in e.path}
    assert int(root["Links"]) == 2 + len(top_directories)

    # every directory lists its names, "." and "..", in byte order, with their types
    by_path = {entry.path: entry for entry in tree}
    directories = {""} | {e.path for e in tree if e.kind is Kind.DIRECTORY}
    for directory in directories:
        dirents = listing(image, directory)
        assert [name for name, _, _ in dirents] == sorted(name for name, _, _ in dirents)
        own = int(dump(image, directory)["NID"])
        assert (b".", own, 2) in dirents
        up = int(dump(image, parent(directory))["NID"]) if directory else own
        assert (b"..", up, 2) in dirents
        for name, nid, file_type in dirents:
            if name not in (b".", b".."):
                path = os.fsdecode(os.fsencode(directory) + b"/" + name).lstrip("/")
                assert (nid, file_type) == (nids[path], FILE_TYPES[by_path[path].kind])


def test_superblock(image: Path, tree: list[Entry]) -> None:
    fields = superblock(image)
    assert fields["Filesystem magic number"] == "0xE0F5E1E2"
    assert fields["Filesystem created"] == time.asctime(time.gmtime(EPOCH))
    assert fields["Filesystem UUID"] == str(uuid_module.UUID(bytes=UUID))
    assert int(fields["Filesystem inode count"]) == len(tree) - len(BUSYBOX_LINKS) + 2
    assert int(fields["Filesystem blocks"]) * BLOCK == image.stat().st_size
    assert int(fields["Filesystem root nid"]) == int(dump(image, "")["NID"])
    assert fields["Filesystem features"].split() == ["sb_csum"]


def test_superblock_checksum_covers_block_zero(image: Path) -> None:
    def fsck_errors() -> str:
        # fsck.erofs 1.5 says the checksum is wrong, but then checks the rest and exits 0
        done = subprocess.run(["fsck.erofs", image], capture_output=True, check=False)
        return done.stderr.decode()

    run_tool("fsck.erofs", image)

    assert "chksum" not in fsck_errors()
    data = bytearray(image.read_bytes())
    data[BLOCK - 1] ^= 1  # the last byte of block 0, which only the checksum covers
    image.write_bytes(data)
    assert "superblock chksum doesn't match" in fsck_errors()


def test_set_uuid_rewrites_the_superblock(tmp_path: Path, image: Path, tree: list[Entry]) -> None:
    zero = write_image(tmp_path / "zero.erofs", tree, uuid=bytes(16))
    set_uuid(zero, UUID)
    assert zero.read_bytes() == image.read_bytes()  # as if written with that uuid
    assert superblock(zero)["Filesystem UUID"] == str(uuid_module.UUID(bytes=UUID))
    other = tmp_path / "other"
    other.write_bytes(bytes(BLOCK))
    with pytest.raises(ValueError, match="not an EROFS image"):
        set_uuid(other, UUID)
    assert other.read_bytes() == bytes(BLOCK)


def test_xattrs_and_setuid_bits_are_in_the_inode(image: Path, tree: list[Entry]) -> None:
    for entry in tree:
        mode, xattrs = raw_inode(image, entry.path)
        assert stat.S_IMODE(mode) == entry.mode, entry.path
        assert xattrs == entry.xattrs, entry.path
    assert raw_inode(image, "usr/bin/ping") == (
        stat.S_IFREG | 0o4755,
        {"security.capability": CAPABILITY, "user.blob": BINARY_XATTR},
    )


def test_a_directory_of_several_blocks_reads_back_in_byte_order(
    tmp_path: Path, spool: Spool
) -> None:
    names = [f"{n:03d}-" + "x" * 36 for n in range(500)]  # 40 bytes each: 8 or so blocks
    # names whose str order is not their byte order: surrogate escapes sort before U+E000
    names += ["\udcff-undecodable", "\ue000-private-use", "Zebra", "_under"]
    entries = [Entry("many", Kind.DIRECTORY, 0o755, mtime=MTIME)]
    entries += [
        Entry(
            f"many/{name}", Kind.FILE, 0o644, content=spool(name.encode(errors="surrogateescape"))
        )
        for name in reversed(names)  # not in order: the writer sorts
    ]
    image = write_image(tmp_path / "many.erofs", entries)
    assert int(dump(image, "many")["Size"]) > 6 * BLOCK
    dirents = listing(image, "many")
    expected = sorted([b".", b".."] + [os.fsencode(name) for name in names])
    assert [name for name, _, _ in dirents] == expected
    for name, nid, _ in dirents:  # lookups find every name, whatever its block
        if name not in (b".", b".."):
            assert int(dump(image, "many/" + os.fsdecode(name))["NID"]) == nid
    assert_extracted(extract(image, tmp_path / "extracted"), entries)


@pytest.mark.parametrize(
    ("size", "layout"),
    [
        (0, 0),
        (1, 2),
        (4032, 2),  # the inode and its tail fill a block exactly
        (4033, 0),  # one byte more: the tail gets a block of its own
        (4095, 0),
        (4096, 0),  # whole blocks: FLAT_PLAIN, nothing inline
        (4097, 2),
        (8192, 0),
        (10010, 2),
        (3 * BLOCK + 4000, 2),  # a tail that fits only at the start of a block
    ],
)
def test_file_sizes_around_the_block_size(
    tmp_path: Path, spool: Spool, size: int, layout: int
) -> None:
    entries = [
        Entry("a", Kind.FILE, 0o644, content=spool(pattern(size, 1)), mtime=MTIME),
        Entry("b", Kind.FILE, 0o644, content=spool(pattern(size, 2)), mtime=MTIME),
        Entry("c", Kind.FILE, 0o644, content=spool(pattern(777, 3)), mtime=MTIME),
    ]
    image = write_image(tmp_path / "sizes.erofs", entries)
    fields = dump(image, "a")
    assert (int(fields["Size"]), int(fields["Layout"])) == (size, layout)
    assert_extracted(extract(image, tmp_path / "extracted"), entries)
    assert image.stat().st_size % BLOCK == 0
    assert image.stat().st_size <= BLOCK * (1 + 2 * (size // BLOCK + 1))


def test_empty_directories(tmp_path: Path) -> None:
    entries = [
        Entry("empty", Kind.DIRECTORY, 0o700, mtime=MTIME),
        Entry("outer", Kind.DIRECTORY, 0o755, mtime=MTIME),
        Entry("outer/inner", Kind.DIRECTORY, 0o750, uid=5, gid=6, mtime=MTIME + 5),
    ]
    image = write_image(tmp_path / "empty.erofs", entries)
    empty = dump(image, "empty")
    assert [name for name, _, _ in listing(image, "empty")] == [b".", b".."]
    assert (empty["Links"], empty["Size"]) == ("2", "27")
    assert dump(image, "outer")["Links"] == "3"
    assert [name for name, _, _ in listing(image, "outer/inner")] == [b".", b".."]
    assert_extracted(extract(image, tmp_path / "extracted"), entries)


def test_small_files_share_metadata_blocks(tmp_path: Path, spool: Spool) -> None:
    entries = [Entry("d", Kind.DIRECTORY, 0o755, mtime=MTIME)]
    # 1000 tails of 100 bytes and 300 of 1000 to 3900: packed, none may cross a block
    entries += [
        Entry(f"d/s{n:04d}", Kind.FILE, 0o644, content=spool(pattern(100, n)), mtime=MTIME)
        for n in range(1000)
    ]
    entries += [
        Entry(f"d/t{n:04d}", Kind.FILE, 0o644, content=spool(pattern(1000 + n * 29, n)))
        for n in range(100)
    ]
    image = write_image(tmp_path / "small.erofs", entries)
    tails = sum(e.size + 64 for e in entries)
    blocks = image.stat().st_size // BLOCK
    assert blocks < 1.3 * tails / BLOCK + 16  # not a block each (that would be 1100)
    assert_extracted(extract(image, tmp_path / "extracted"), entries)


def test_inodes_too_big_for_inline_tails(tmp_path: Path, spool: Spool) -> None:
    big = {"user.big": pattern(5000, 7)}  # the xattrs alone take more than a block
    half = {"trusted.half": pattern(3000, 8)}  # the tail fits, but not with the xattrs
    entries = [
        Entry("big", Kind.FILE, 0o644, content=spool(pattern(100, 1)), xattrs=big),
        Entry("half", Kind.FILE, 0o644, content=spool(pattern(2000, 2)), xattrs=half),
        Entry("after", Kind.FILE, 0o644, content=spool(pattern(50, 3))),
        Entry("inline-link", Kind.SYMLINK, 0o777, linkname="l" * 4000),
        Entry("plain-link", Kind.SYMLINK, 0o777, linkname="p" * 4050),
    ]
    image = write_image(tmp_path / "big.erofs", entries)
    for path, layout in [("big", 0), ("half", 0), ("after", 2), ("inline-link", 2)]:
        assert int(dump(image, path)["Layout"]) == layout, path
    assert int(dump(image, "plain-link")["Layout"]) == 0
    assert raw_inode(image, "big")[1] == big
    assert raw_inode(image, "half")[1] == half
    assert_extracted(extract(image, tmp_path / "extracted"), entries)


def test_the_same_entries_give_the_same_bytes(tmp_path: Path, spool: Spool) -> None:
    first = write_image(tmp_path / "1.erofs", sample_tree(spool, devices=IS_ROOT))
    again = sample_tree(spool, devices=IS_ROOT)  # new Content objects, new spool files
    for entry in again:
        entry.xattrs = dict(reversed(entry.xattrs.items()))
    second = write_image(tmp_path / "2.erofs", again)
    assert first.read_bytes() == second.read_bytes()
    other = write_image(tmp_path / "3.erofs", again, uuid=bytes(16))
    assert other.read_bytes() != first.read_bytes()


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (Entry("n" * 256, Kind.FILE, 0o644), "name is longer than 255 bytes"),
        (Entry("x", Kind.FILE, 0o644, xattrs={"os2.name": b"v"}), "no prefix"),
        (Entry("x", Kind.FILE, 0o644, xattrs={"user." + "a" * 256: b""}), "too long"),
        (Entry("x", Kind.FILE, 0o644, xattrs={"user.v": bytes(65536)}), "too long"),
        (Entry("x", Kind.FILE, 0o644, uid=1 << 32), "owner"),
        (Entry("x", Kind.CHAR, 0o644, devmajor=4096), "device"),
        (Entry("x", Kind.SYMLINK, 0o777, linkname="t" * 4096), "target"),
        (Entry("x", Kind.FILE, 0o644, content=Content(Path("/dev/null"), 1 << 44)), "16 TiB"),
    ],
)
def test_what_erofs_cannot_hold_is_a_user_error(entry: Entry, reason: str) -> None:
    directory = Entry("dir", Kind.DIRECTORY, 0o755)
    entry.path, entry.source = f"dir/{entry.path}", "docker.io/x/y:1"
    sink = ByteCounter()
    with pytest.raises(UserError) as raised:
        write_erofs([directory, entry], sink, epoch=EPOCH, uuid=UUID)  # type: ignore[arg-type]
    message = str(raised.value)
    assert message.startswith(f"{entry.path} (from docker.io/x/y:1) cannot go into an erofs")
    assert reason in message and "\n" not in message
    assert sink.count == 0  # found before anything is written
