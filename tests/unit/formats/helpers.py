"""A sample root tree, a newc reader, and a runner for the real archive tools."""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from osbuilder.assemble.entry import Content, Entry, Kind

SOURCE = "docker.io/osbuilder/base:1.0"
MTIME = 1_700_000_000
BUSYBOX_LINKS = ("bin/busybox", "bin/sh", "sbin/init")
NON_UTF8_PATH = "data/caf\udce9"  # os.fsdecode(b"data/caf\xe9")
LONG_DIRECTORY = "long/" + "d" * 200
LONG_PATH = LONG_DIRECTORY + "/" + "f" * 100  # 306 bytes: more than ustar's 256
# A valid version 2 file capability granting CAP_NET_RAW (bit 13), effective.
CAPABILITY = struct.pack("<5I", 0x0200_0001, 1 << 13, 0, 0, 0)
BINARY_XATTR = b"\xff\xfe\x00not utf-8"

Spool = Callable[[bytes], Content]


def sample_tree(spool: Spool, *, devices: bool) -> list[Entry]:
    """Every kind of entry, parents first; device nodes only if the test may create them."""

    def entry(path: str, kind: Kind, mode: int, **fields: Any) -> None:
        defaults: dict[str, Any] = {
            "mtime": MTIME,
            "source": SOURCE,
            "location": f"init[{len(entries)}]",
        }
        entries.append(Entry(path, kind, mode, **(defaults | fields)))

    entries: list[Entry] = []
    busybox = spool(b"#!busybox\n" * 1001)  # 10010 bytes: not a multiple of 4
    entry("bin", Kind.DIRECTORY, 0o755)
    entry("bin/busybox", Kind.FILE, 0o755, content=busybox)
    entry("bin/sh", Kind.FILE, 0o755, content=busybox)
    entry("bin/ls", Kind.SYMLINK, 0o777, linkname="busybox")
    entry("data", Kind.DIRECTORY, 0o700, uid=1000, gid=1000)
    entry(NON_UTF8_PATH, Kind.FILE, 0o640, uid=1000, gid=1000, content=spool(b"non-UTF-8"))
    entry("dev", Kind.DIRECTORY, 0o755)
    if devices:
        entry("dev/null", Kind.CHAR, 0o666, devmajor=1, devminor=3)
        entry("dev/sda", Kind.BLOCK, 0o660, gid=6, devmajor=8, devminor=0)
    entry("etc", Kind.DIRECTORY, 0o755, mtime=MTIME - 1)
    entry("etc/hostname", Kind.FILE, 0o644, content=spool(b"osbuilder\n"), mtime=MTIME + 1)
    entry("etc/empty", Kind.FILE, 0o600)
    entry("long", Kind.DIRECTORY, 0o755)
    entry(LONG_DIRECTORY, Kind.DIRECTORY, 0o755)
    entry(LONG_PATH, Kind.FILE, 0o644, content=spool(b"long"))
    entry("run", Kind.DIRECTORY, 0o755)
    entry("run/initctl", Kind.FIFO, 0o600)
    entry("sbin", Kind.DIRECTORY, 0o755)
    entry("sbin/init", Kind.FILE, 0o755, content=busybox)
    entry("tmp", Kind.DIRECTORY, 0o1777)
    entry("usr", Kind.DIRECTORY, 0o755)
    entry("usr/bin", Kind.DIRECTORY, 0o755)
    xattrs = {"security.capability": CAPABILITY, "user.blob": BINARY_XATTR}
    entry("usr/bin/ping", Kind.FILE, 0o4755, content=spool(b"ping"), xattrs=xattrs)
    return entries


def run_tool(*argv: str | Path, cwd: Path | None = None, stdin: Path | None = None) -> bytes:
    """Run a real tool; its stdout. A missing tool fails the test: `make test` installs
    every tool the tests use."""
    if shutil.which(argv[0]) is None:
        pytest.fail(f"{argv[0]} is not installed (`make test` installs it)")
    with open(stdin or "/dev/null", "rb") as source:
        done = subprocess.run(argv, cwd=cwd, stdin=source, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


@dataclass
class Member:
    name: bytes
    ino: int
    mode: int
    uid: int
    gid: int
    nlink: int
    mtime: int
    rdevmajor: int
    rdevminor: int
    data: bytes


def read_newc(archive: bytes) -> list[Member]:
    """Parse a newc archive strictly (magic, alignment, trailer); the trailer is not returned."""
    members: list[Member] = []
    offset = 0
    while True:
        assert offset % 4 == 0
        assert archive[offset : offset + 6] == b"070701"
        fields = [int(archive[offset + 6 + 8 * i : offset + 14 + 8 * i], 16) for i in range(13)]
        ino, mode, uid, gid, nlink, mtime, size, _, _, rdevmajor, rdevminor, namesize, _ = fields
        name_start = offset + 110
        name = archive[name_start : name_start + namesize - 1]
        assert archive[name_start + namesize - 1] == 0
        data_start = (name_start + namesize + 3) & ~3
        data = archive[data_start : data_start + size]
        offset = (data_start + size + 3) & ~3
        if name == b"TRAILER!!!":
            assert offset == len(archive)
            return members
        members.append(Member(name, ino, mode, uid, gid, nlink, mtime, rdevmajor, rdevminor, data))
