"""kernel+squashfs of the Redis OS: the squashfs root holds exactly the initrd's tree (read
back with sqfs2tar and compared member by member with the kernel+initrd build's cpio), both
formats share one kernel and cmdline, and a second build is byte-identical."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
import zstandard

from tests.conftest import Packages
from tests.integration.test_build import REDIS, build

pytestmark = pytest.mark.integration

# What both archives say of a member: type and mode bits, owner, time, symlink target or
# sha256 of the data (None for a hard link that carries no data of its own).
Member = tuple[int, int, int, int, str | None]


def cpio_members(stream: BinaryIO) -> Iterator[tuple[str, Member]]:
    """The members of a newc cpio stream, read as they come."""

    def read(size: int) -> bytes:
        data = stream.read(size)
        assert len(data) == size
        return data

    offset = 0
    while True:
        header = read(110)
        assert header[:6] == b"070701"
        fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, uid, gid, nlink, mtime, size, namesize = (fields[i] for i in (1, 2, 3, 4, 5, 6, 11))
        name = read(namesize)[:-1].decode(errors="surrogateescape")
        offset += 110 + namesize
        read(-offset % 4)
        offset += -offset % 4
        data = read(size)
        offset += size
        read(-offset % 4)
        offset += -offset % 4
        if name == "TRAILER!!!":
            return
        kind = mode & 0o170000
        if kind == 0o120000:
            detail: str | None = data.decode(errors="surrogateescape")
        elif kind == 0o100000 and (size or nlink == 1):
            detail = hashlib.sha256(data).hexdigest()
        else:
            detail = None if kind == 0o100000 else ""
        yield name, (mode, uid, gid, mtime, detail)


def squashfs_members(image: Path) -> Iterator[tuple[str, Member]]:
    with subprocess.Popen(["sqfs2tar", "--no-skip", str(image)], stdout=subprocess.PIPE) as tool:
        assert tool.stdout is not None
        with tarfile.open(fileobj=tool.stdout, mode="r|", errors="surrogateescape") as archive:
            for member in archive:
                kind = {
                    tarfile.REGTYPE: 0o100000,
                    tarfile.LNKTYPE: 0o100000,
                    tarfile.DIRTYPE: 0o040000,
                    tarfile.SYMTYPE: 0o120000,
                    tarfile.CHRTYPE: 0o020000,
                    tarfile.BLKTYPE: 0o060000,
                    tarfile.FIFOTYPE: 0o010000,
                }[member.type]
                if member.issym():
                    detail: str | None = member.linkname
                elif member.isreg():
                    data = archive.extractfile(member)
                    assert data is not None
                    detail = hashlib.sha256(data.read()).hexdigest()
                else:
                    detail = None if member.islnk() else ""
                meta = (kind | member.mode, member.uid, member.gid, member.mtime, detail)
                yield member.name.rstrip("/"), meta
    assert tool.returncode == 0


def test_the_squashfs_root_is_the_initrds_tree_and_builds_are_identical(
    packages: Packages, tmp_path: Path
) -> None:
    formats = ("-f", "kernel+initrd", "-f", "kernel+squashfs")
    first = build(packages, tmp_path, "--json", *formats, str(REDIS))
    assert first.returncode == 0, first.stderr
    digests = {Path(o["path"]).name: o["sha256"] for o in json.loads(first.stdout)}
    assert sorted(digests) == [
        "redis-cmdline",
        "redis-initrd.img",
        "redis-kernel",
        "redis-squashfs-initrd.img",
        "redis-squashfs.img",
    ]
    again = build(packages, tmp_path, "--json", *formats, str(REDIS), out="again")
    assert {Path(o["path"]).name: o["sha256"] for o in json.loads(again.stdout)} == digests

    out = tmp_path / "out"
    with (out / "redis-initrd.img").open("rb") as initrd:
        in_initrd = dict(cpio_members(zstandard.ZstdDecompressor().stream_reader(initrd)))
    in_squashfs = dict(squashfs_members(out / "redis-squashfs.img"))
    assert sorted(in_squashfs) == sorted(in_initrd)
    assert len(in_initrd) > 2000
    assert [n for n in in_initrd if n.endswith("/usr/bin/redis-server")]
    differing = []
    for name, (mode, uid, gid, mtime, detail) in in_initrd.items():
        other = in_squashfs[name]
        # Hard links carry their data on different members in each format.
        same_data = None in (detail, other[4]) or detail == other[4]
        if other[:4] != (mode, uid, gid, mtime) or not same_data:
            differing.append(name)
    assert differing == []
    # The squashfs is smaller than the initrd it replaces, the boot stage much smaller.
    sizes = {name: (out / name).stat().st_size for name in digests}
    assert sizes["redis-squashfs.img"] < sizes["redis-initrd.img"]
    assert sizes["redis-squashfs-initrd.img"] < 4_000_000
