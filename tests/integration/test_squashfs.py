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
    assert len(in_initrd) > 1000  # the whole system (1152 names when written)
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


def partition_bytes(disk: Path, number: int) -> bytes:
    [part] = [
        p
        for p in json.loads(
            subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, check=True).stdout
        )["partitiontable"]["partitions"]
        if p["node"].endswith(str(number))
    ]
    with disk.open("rb") as image:
        image.seek(part["start"] * 512)
        return image.read(part["size"] * 512)


def test_disks_with_a_squashfs_root_carry_the_boot_stage_and_the_same_root(
    packages: Packages, tmp_path: Path
) -> None:
    formats = ("-f", "raw-bios", "-f", "raw-efi", "-f", "kernel+squashfs")
    first = build(packages, tmp_path, "--json", "--root", "squashfs", *formats, str(REDIS))
    assert first.returncode == 0, first.stderr
    digests = {Path(o["path"]).name: o["sha256"] for o in json.loads(first.stdout)}
    again = build(packages, tmp_path, "--json", "--root", "squashfs", *formats, str(REDIS), out="2")
    assert {Path(o["path"]).name: o["sha256"] for o in json.loads(again.stdout)} == digests
    out = tmp_path / "out"
    root = (out / "redis-squashfs.img").read_bytes()
    stage = (out / "redis-squashfs-initrd.img").read_bytes()
    for disk, boot_type, root_type in (
        ("redis-bios.img", "e", "83"),
        (
            "redis-efi.img",
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
        ),
    ):
        table = json.loads(
            subprocess.run(
                ["sfdisk", "--json", str(out / disk)], capture_output=True, check=True
            ).stdout
        )["partitiontable"]
        assert [p["type"] for p in table["partitions"]] == [boot_type, root_type]
        second = partition_bytes(out / disk, 2)
        assert second[: len(root)] == root and not second[len(root) :].strip(b"\0")
        assert len(second) % (1 << 20) == 0
        boot = tmp_path / f"{disk}.fat"
        boot.write_bytes(partition_bytes(out / disk, 1))
        if disk == "redis-bios.img":  # SYSLINUX boots the kernel with the boot stage
            copied = tmp_path / "initrd.img"
            subprocess.run(
                ["mcopy", "-n", "-i", str(boot), "::initrd.img", str(copied)], check=True
            )
            assert copied.read_bytes() == stage
    assert (out / "redis-bios.img").stat().st_size < 80 << 20  # no initrd of the whole tree


@pytest.mark.parametrize(
    ("formats", "message"),
    [
        (("iso-bios",), "--root squashfs: iso-bios keeps the root in its initrd"),
        (
            ("kernel+initrd", "raw-bios"),
            "--root squashfs: kernel+initrd keeps the root in its initrd",
        ),
        (("tar",), "--root squashfs is for the disk formats"),
    ],
)
def test_root_squashfs_is_refused_where_the_root_stays_in_an_initrd(
    packages: Packages, tmp_path: Path, formats: tuple[str, ...], message: str
) -> None:
    options = [option for name in formats for option in ("-f", name)]
    result = build(packages, tmp_path, "--root", "squashfs", *options, str(REDIS))
    assert result.returncode != 0 and message in result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
