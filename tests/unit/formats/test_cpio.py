"""The newc cpio writer, checked by parsing its bytes and by unpacking with GNU cpio and bsdtar."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from osbuilder.assemble.entry import Content, Entry, Kind
from osbuilder.errors import UserError
from osbuilder.formats.cpio import write_cpio
from tests.unit.formats.helpers import (
    BUSYBOX_LINKS,
    LONG_PATH,
    NON_UTF8_PATH,
    Spool,
    read_newc,
    run_tool,
    sample_tree,
)


def cpio_bytes(entries: list[Entry]) -> bytes:
    out = io.BytesIO()
    write_cpio(entries, out)
    return out.getvalue()


@pytest.fixture
def archive(tmp_path: Path, tree: list[Entry]) -> Path:
    path = tmp_path / "initrd.cpio"
    with path.open("wb") as out:
        write_cpio(tree, out)
    return path


def test_members_in_order_with_sequential_inodes(tree: list[Entry]) -> None:
    members = read_newc(cpio_bytes(tree))

    assert [m.name for m in members] == [os.fsencode(e.path) for e in tree]
    later_links = {b"bin/sh", b"sbin/init"}
    inodes = [m.ino for m in members if m.name not in later_links]
    assert inodes == list(range(1, len(inodes) + 1))


def test_hard_links_share_an_inode_and_the_last_carries_the_data(tree: list[Entry]) -> None:
    members = {m.name: m for m in read_newc(cpio_bytes(tree))}
    links = [members[os.fsencode(path)] for path in BUSYBOX_LINKS]

    assert {m.ino for m in links} == {members[b"bin/busybox"].ino}
    assert [m.nlink for m in links] == [3, 3, 3]
    assert [len(m.data) for m in links] == [0, 0, 10010]


def test_header_fields(tree: list[Entry]) -> None:
    members = {m.name: m for m in read_newc(cpio_bytes(tree))}
    by_path = {os.fsencode(e.path): e for e in tree}

    for name, member in members.items():
        entry = by_path[name]
        assert stat.S_IMODE(member.mode) == entry.mode
        assert (member.uid, member.gid, member.mtime) == (entry.uid, entry.gid, entry.mtime)
    assert stat.S_ISLNK(members[b"bin/ls"].mode)
    assert members[b"bin/ls"].data == b"busybox"
    assert stat.S_ISFIFO(members[b"run/initctl"].mode)
    assert members[b"usr"].nlink == 3  # its name in the root, its ".", and usr/bin's ".."
    if b"dev/null" in members:
        null = members[b"dev/null"]
        assert stat.S_ISCHR(null.mode)
        assert (null.rdevmajor, null.rdevminor) == (1, 3)


def test_gnu_cpio_lists_every_member(archive: Path, tree: list[Entry]) -> None:
    listed = run_tool("cpio", "-t", "--quiet", stdin=archive).splitlines()

    assert listed == [os.fsencode(e.path) for e in tree]


def test_gnu_cpio_unpacks_the_tree(tmp_path: Path, archive: Path, tree: list[Entry]) -> None:
    root = tmp_path / "root"
    root.mkdir()
    run_tool("cpio", "-idm", "--quiet", "--no-absolute-filenames", cwd=root, stdin=archive)

    for entry in tree:
        path = root / entry.path
        status = path.lstat()
        if entry.kind is not Kind.SYMLINK:
            assert stat.S_IMODE(status.st_mode) == entry.mode, entry.path
            assert (status.st_uid, status.st_gid) == (entry.uid, entry.gid), entry.path
        if entry.kind is Kind.FILE:  # GNU cpio leaves directories with the time of unpacking
            assert status.st_mtime == entry.mtime, entry.path
            expected = entry.content.path.read_bytes() if entry.content else b""
            assert path.read_bytes() == expected, entry.path
    assert os.readlink(root / "bin/ls") == "busybox"
    assert stat.S_ISFIFO((root / "run/initctl").lstat().st_mode)
    assert (root / NON_UTF8_PATH).read_bytes() == b"non-UTF-8"
    assert (root / LONG_PATH).read_bytes() == b"long"
    links = [(root / path).stat() for path in BUSYBOX_LINKS]
    assert len({s.st_ino for s in links}) == 1
    assert links[0].st_nlink == 3
    if os.geteuid() == 0:
        null = (root / "dev/null").lstat()
        assert stat.S_ISCHR(null.st_mode)
        assert (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
        assert stat.S_ISBLK((root / "dev/sda").lstat().st_mode)


def test_libarchive_unpacks_hard_links(tmp_path: Path, archive: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    run_tool("bsdtar", "-xpf", archive, cwd=root)

    links = [root / path for path in BUSYBOX_LINKS]
    assert len({path.stat().st_ino for path in links}) == 1
    assert all(path.read_bytes() == b"#!busybox\n" * 1001 for path in links)


def test_output_is_deterministic(spool: Spool, tree: list[Entry]) -> None:
    again = sample_tree(spool, devices=os.geteuid() == 0)
    assert cpio_bytes(tree) == cpio_bytes(again)


def test_a_child_before_its_directory_is_refused() -> None:
    entries = [Entry("etc/hostname", Kind.FILE, 0o644), Entry("etc", Kind.DIRECTORY, 0o755)]
    with pytest.raises(ValueError, match="before its directory"):
        cpio_bytes(entries)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (Entry("a" * 4096, Kind.FILE, 0o644), "name is longer"),
        (Entry("link", Kind.SYMLINK, 0o777, linkname="t" * 4097), "symlink target"),
        (Entry("old", Kind.FILE, 0o644, mtime=-1), "mtime -1"),
        (Entry("nobody", Kind.FILE, 0o644, uid=2**32), "uid"),
    ],
)
def test_what_newc_cannot_hold_is_refused(entry: Entry, message: str) -> None:
    with pytest.raises(UserError, match=message):
        cpio_bytes([entry])


def test_a_file_of_4_gib_is_refused(spool: Spool) -> None:
    small = spool(b"x")
    huge = Entry("huge", Kind.FILE, 0o644, content=Content(small.path, 2**32))
    with pytest.raises(UserError, match="filesize"):
        cpio_bytes([huge])


def test_contents_that_cross_blocks_arrive_whole(spool: Spool) -> None:
    # Around the writer's 1 MiB blocks: sizes just below, at and above, one after another.
    sizes = [(1 << 20) - 109, 1 << 20, (1 << 20) + 3, 3 * (1 << 20) + 1, 0, 7]
    datas = [bytes([i + 1]) * size for i, size in enumerate(sizes)]
    entries = [Entry(f"f{i}", Kind.FILE, 0o644, content=spool(d)) for i, d in enumerate(datas)]
    assert [m.data for m in read_newc(cpio_bytes(entries))] == datas


def test_a_content_file_that_ends_early_is_an_error(spool: Spool) -> None:
    short = spool(b"x" * 100)
    entry = Entry("f", Kind.FILE, 0o644, content=Content(short.path, 200, short.offset))
    with pytest.raises(EOFError, match="ends 100 bytes early"):
        cpio_bytes([entry])
