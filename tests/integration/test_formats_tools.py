"""The real kernel unpacks initrds from the cpio writer: hard links, nodes, names, times.

GNU cpio and libarchive are checked in tests/unit/formats; this is the reader that matters.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from osbuilder.assemble.entry import Content, Entry, Kind
from osbuilder.atomicfile import atomic_output
from osbuilder.formats.compression import Compression, compressed_writer, default_compression
from osbuilder.formats.cpio import write_cpio
from tests.boot.test_kernel import boot_initrd, kernel_files
from tests.conftest import Packages

pytestmark = pytest.mark.boot

# Runs as /init; /bin/sh is the second member of busybox's link group, so it only has
# content if the kernel wrote the group's data (carried by the last member) to the shared inode.
INIT = b"""#!/bin/sh
echo "LINKS $(stat -c '%h:%s:%a' /bin/busybox /bin/sh /sbin/busybox | tr '\\n' ' ')"
echo "INODES $(stat -c '%i' /bin/busybox /bin/sh /sbin/busybox | tr '\\n' ' ')"
echo "SYMLINK $(readlink /bin/stat)"
echo "DATA $(cat /etc/data):$(stat -c %Y /etc/data)"
echo "NODES $(stat -c '%F:%t:%T:%a' /dev/null /run/fifo | tr '\\n' ' ')"
echo "NAMES $(echo /etc/* | od -An -tx1 | tr -d ' \\n')"
poweroff -f
"""


def initrd_entries(work: Path) -> list[Entry]:
    def spooled(name: str, data: bytes) -> Content:
        path = work / name
        path.write_bytes(data)
        return Content(path, len(data))

    busybox = spooled("busybox", Path("/bin/busybox").read_bytes())
    entries = [
        Entry("bin", Kind.DIRECTORY, 0o755),
        Entry("bin/busybox", Kind.FILE, 0o755, content=busybox),
        Entry("bin/sh", Kind.FILE, 0o755, content=busybox),
        Entry("dev", Kind.DIRECTORY, 0o755),
        Entry("dev/null", Kind.CHAR, 0o666, devmajor=1, devminor=3),
        Entry("etc", Kind.DIRECTORY, 0o755),
        Entry("etc/caf\udce9", Kind.FILE, 0o644),
        Entry("etc/data", Kind.FILE, 0o640, mtime=1_234_567_890, content=spooled("d", b"spool")),
        Entry("init", Kind.FILE, 0o755, content=spooled("init", INIT)),
        Entry("run", Kind.DIRECTORY, 0o755),
        Entry("run/fifo", Kind.FIFO, 0o600),
        Entry("sbin", Kind.DIRECTORY, 0o755),
        Entry("sbin/busybox", Kind.FILE, 0o755, content=busybox),
    ]
    for applet in ("cat", "od", "poweroff", "readlink", "stat", "tr"):
        entries.insert(2, Entry(f"bin/{applet}", Kind.SYMLINK, 0o777, linkname="busybox"))
    return entries


@pytest.mark.parametrize("choice", ["default", "gzip"])
def test_the_kernel_unpacks_the_initrd(packages: Packages, tmp_path: Path, choice: str) -> None:
    if not os.path.exists("/bin/busybox"):
        pytest.skip("needs busybox-static")
    kernel = kernel_files(packages.store, packages["osbuilder/kernel"], tmp_path / "kernel")
    compression: Compression = "gzip"
    if choice == "default":
        compression = default_compression(kernel["config"].read_text())
        assert compression == "zstd"  # Debian's kernel has CONFIG_RD_ZSTD=y
    initrd = tmp_path / "initrd.img"
    with atomic_output(initrd) as out, compressed_writer(out, compression) as writer:
        write_cpio(initrd_entries(tmp_path), writer)

    console = boot_initrd(kernel["kernel"], initrd)

    size = Path("/bin/busybox").stat().st_size
    assert f"LINKS 3:{size}:755 3:{size}:755 3:{size}:755 " in console
    [inodes] = [line.split()[1:] for line in console.splitlines() if line.startswith("INODES ")]
    assert len(inodes) == 3
    assert len(set(inodes)) == 1
    assert "SYMLINK busybox" in console
    assert "DATA spool:1234567890" in console
    assert "NODES character special file:1:3:666 fifo:0:0:600" in console
    assert "NAMES " + b"/etc/caf\xe9 /etc/data\n".hex() in console
