"""A system whose containers share files, assembled with them linked, in every output that
can carry hard links, read back by the real tools: one inode with several names where the
files were linked, and separate files everywhere else."""

from __future__ import annotations

import os
import re
import subprocess
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

import pytest

from osbuilder.assemble.entry import Entry
from osbuilder.assemble.system import AssembledSystem
from osbuilder.formats.cpio import write_cpio
from osbuilder.formats.erofs import write_erofs
from osbuilder.formats.initrd import root_entries
from osbuilder.formats.tarball import write_tar
from tests.unit.assemble.small_systems import EPOCH, LIBC, READER, TOOL, WRITER, linked_system
from tests.unit.formats.helpers import read_newc, run_tool

# The names that are one file once linked, and files that must stay apart.
SHARED = [
    (f"{WRITER}/lib/libc.so.6", f"{READER}/lib/libc.so.6"),
    (f"{WRITER}/bin/tool", f"{WRITER}/bin/tool-again", f"{READER}/bin/tool"),
    (f"{WRITER}/etc/shared.conf", f"{READER}/etc/shared.conf"),
]
APART = [
    (f"{WRITER}/etc/by-mode", f"{READER}/etc/by-mode"),
    (f"{WRITER}/etc/by-owner", f"{READER}/etc/by-owner"),
    (f"{WRITER}/etc/by-xattr", f"{READER}/etc/by-xattr"),
    ("lib/libc.so.6", "usr/lib/libc-copy", "etc/libc-in-root", f"{WRITER}/lib/libc.so.6"),
]
DATA = {f"{READER}/lib/libc.so.6": LIBC, f"{READER}/bin/tool": TOOL, "lib/libc.so.6": LIBC}

Inodes = dict[str, tuple[int, int]]  # path -> (inode number, link count)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> AssembledSystem:
    return linked_system(tmp_path_factory.mktemp("system"))


def assert_links(inodes: Inodes) -> None:
    for names in SHARED:
        assert len({inodes[name][0] for name in names}) == 1, names
        assert {inodes[name][1] for name in names} == {len(names)}, names
    shared = {name for names in SHARED for name in names}
    for names in APART:
        assert len({inodes[name][0] for name in names}) == len(names), names
        assert {inodes[name][1] for name in names if name not in shared} == {1}, names


def assert_data(root: Path) -> None:
    for path, data in DATA.items():
        assert (root / path).read_bytes() == data, path


def written(
    system: AssembledSystem, write: Callable[[Iterable[Entry], BinaryIO], None], path: Path
) -> Path:
    """`path`, holding the system's root as `write` writes it."""
    with path.open("wb") as out:
        write(root_entries(system), out)
    return path


def unpacked_inodes(archive: Path, *command: str) -> Inodes:
    """Each name's inode once `command` has unpacked `archive` (its standard input)."""
    root = archive.parent / "root"
    root.mkdir()
    run_tool(*command, cwd=root, stdin=archive)
    assert_data(root)
    return {
        name: ((root / name).stat().st_ino, (root / name).stat().st_nlink)
        for names in SHARED + APART
        for name in names
    }


def test_the_cpio_links_them_as_the_kernel_and_gnu_cpio_read_it(
    system: AssembledSystem, tmp_path: Path
) -> None:
    archive = written(system, write_cpio, tmp_path / "root.cpio")
    members = {m.name.decode(): m for m in read_newc(archive.read_bytes())}
    assert_links({name: (m.ino, m.nlink) for name, m in members.items()})
    for names in SHARED:  # the data once, with the group's last name (GNU cpio's rule)
        assert [len(members[name].data) > 0 for name in names] == [False] * (len(names) - 1) + [
            True
        ]
    assert_links(unpacked_inodes(archive, "cpio", "-idm", "--quiet", "--no-absolute-filenames"))


def test_the_tar_has_hard_link_members_that_gnu_tar_links(
    system: AssembledSystem, tmp_path: Path
) -> None:
    archive = written(system, write_tar, tmp_path / "root.tar")
    with tarfile.open(archive, encoding="utf-8") as tar:
        members = {member.name: member for member in tar}
    for first, *others in SHARED:
        assert members[first].isreg() and members[first].size > 0
        for name in others:
            assert members[name].islnk() and members[name].linkname == first, name
    for names in APART:
        assert all(members[name].isreg() for name in names)
    assert_links(unpacked_inodes(archive, "tar", "-xpf", "-"))


def test_tar2sqfs_makes_them_one_squashfs_inode(system: AssembledSystem, tmp_path: Path) -> None:
    """As formats/squashfs_root.py makes the root of kernel+squashfs: the tar into tar2sqfs."""
    image = tmp_path / "root.sqfs"
    with subprocess.Popen(
        ["tar2sqfs", "--quiet", "--no-skip", str(image)], stdin=subprocess.PIPE
    ) as tool:
        assert tool.stdin is not None
        write_tar(root_entries(system), tool.stdin)
        tool.stdin.close()
    assert tool.returncode == 0
    inodes: Inodes = {}
    for names in SHARED + APART:
        for name in names:
            fields = dict(
                line.partition(": ")[::2]
                for line in run_tool("rdsquashfs", "--stat", f"/{name}", image)
                .decode()
                .splitlines()
            )
            # (a basic file inode, squashfs's usual one, has no count: it has one name)
            links = int(fields.get("Hard link count", "1"))
            inodes[name] = (int(fields["Inode number"]), links)
    assert_links(inodes)
    for path, data in DATA.items():
        assert run_tool("rdsquashfs", "--cat", f"/{path}", image) == data


def test_the_erofs_image_has_one_inode_with_its_link_count(
    system: AssembledSystem, tmp_path: Path
) -> None:
    image = tmp_path / "root.erofs"
    with image.open("wb") as out:
        write_erofs(root_entries(system), out, epoch=EPOCH, uuid=bytes(16))
    inodes: Inodes = {}
    for names in SHARED + APART:
        for name in names:
            shown = run_tool("dump.erofs", f"--path=/{name}", image).decode()
            nid, links = re.search(r"NID: (\d+) +Links: (\d+)", shown).groups()  # type: ignore[union-attr]
            inodes[name] = (int(nid), int(links))
    assert_links(inodes)
    root = tmp_path / "root"  # (fsck.erofs 1.5 extracts each name as a file of its own)
    preserve = "--preserve" if os.geteuid() == 0 else "--preserve-perms"
    run_tool("fsck.erofs", f"--extract={root}", preserve, image)  # checks the image too
    assert_data(root)
