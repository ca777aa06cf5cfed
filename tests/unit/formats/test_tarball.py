"""The PAX tar writer, read back by Python's tarfile, GNU tar and bsdtar."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from osbuilder.assemble.entry import Entry, Kind
from osbuilder.formats.tarball import LOCATION_RECORD, SOURCE_RECORD, write_tar
from tests.unit.formats.helpers import (
    BINARY_XATTR,
    CAPABILITY,
    LONG_PATH,
    NON_UTF8_PATH,
    SOURCE,
    Spool,
    run_tool,
    sample_tree,
)


def tar_bytes(entries: list[Entry]) -> bytes:
    out = io.BytesIO()
    write_tar(entries, out)
    return out.getvalue()


def read_members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), encoding="utf-8") as archive:
        return archive.getmembers()


@pytest.fixture
def archive(tmp_path: Path, tree: list[Entry]) -> Path:
    path = tmp_path / "rootfs.tar"
    path.write_bytes(tar_bytes(tree))
    return path


def test_every_member_says_where_it_came_from(tree: list[Entry]) -> None:
    members = read_members(tar_bytes(tree))

    assert [m.name for m in members] == [e.path for e in tree]
    for member, entry in zip(members, tree, strict=True):
        assert member.pax_headers[SOURCE_RECORD] == SOURCE
        assert member.pax_headers[LOCATION_RECORD] == entry.location


def test_metadata_round_trips(tree: list[Entry]) -> None:
    members = {m.name: m for m in read_members(tar_bytes(tree))}

    for entry in tree:
        member = members[entry.path]
        assert (member.mode, member.uid, member.gid) == (entry.mode, entry.uid, entry.gid)
        assert (member.mtime, member.uname, member.gname) == (entry.mtime, "", "")
        assert not {"atime", "ctime"} & member.pax_headers.keys()
    assert members["bin/busybox"].isreg()
    assert members["bin/busybox"].size == 10010
    for link in ("bin/sh", "sbin/init"):
        assert members[link].islnk()
        assert members[link].linkname == "bin/busybox"
    assert members["bin/ls"].issym()
    assert members["bin/ls"].linkname == "busybox"
    assert members["run/initctl"].isfifo()
    assert LONG_PATH in members
    assert NON_UTF8_PATH in members
    if "dev/null" in members:
        assert members["dev/null"].ischr()
        assert (members["dev/null"].devmajor, members["dev/null"].devminor) == (1, 3)


def test_xattrs_are_schily_records(tree: list[Entry]) -> None:
    ping = {m.name: m for m in read_members(tar_bytes(tree))}["usr/bin/ping"]

    def record(name: str) -> bytes:
        return ping.pax_headers[f"SCHILY.xattr.{name}"].encode("utf-8", "surrogateescape")

    assert record("security.capability") == CAPABILITY
    assert record("user.blob") == BINARY_XATTR


@pytest.mark.parametrize("tool", ["tar", "bsdtar"])
def test_real_tools_list_every_member(archive: Path, tree: list[Entry], tool: str) -> None:
    listing = run_tool(tool, "-tvf", archive).splitlines()

    assert len(listing) == len(tree)
    assert any(line.endswith(b"bin/sh link to bin/busybox") for line in listing)


def test_gnu_tar_restores_xattrs(tmp_path: Path, archive: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    run_tool("tar", "--xattrs", "--xattrs-include=*", "-xpf", archive, cwd=root)

    ping = root / "usr/bin/ping"
    if os.geteuid() == 0:  # only root may set security.* attributes
        assert os.getxattr(ping, "security.capability") == CAPABILITY
    assert os.getxattr(ping, "user.blob") == BINARY_XATTR
    assert (root / "bin/sh").stat().st_ino == (root / "bin/busybox").stat().st_ino


def test_output_is_deterministic(spool: Spool, tree: list[Entry]) -> None:
    again = sample_tree(spool, devices=os.geteuid() == 0)
    assert tar_bytes(tree) == tar_bytes(again)


def test_a_file_with_no_content_is_empty() -> None:
    (member,) = read_members(tar_bytes([Entry("empty", Kind.FILE, 0o600)]))
    assert member.isreg()
    assert member.size == 0
