"""tar-kernel-initrd's archive and gcp's sparse disk archive, read back by GNU tar, bsdtar
and Python's tarfile."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest
from msgspec.structs import replace

from osbuilder.assemble.entry import Content, Entry, Kind
from osbuilder.assemble.system import AssembledSystem, KernelParts
from osbuilder.assemble.tree import Spool as TreeSpool
from osbuilder.assemble.tree import Tree
from osbuilder.formats import kernel_initrd, staging
from osbuilder.formats.gcp import (
    GIB,
    MEMBER,
    TOOL_ENVIRONMENT,
    archive_command,
    data_runs,
    sparse_copy,
    whole_gib,
)
from osbuilder.formats.job import WriteJob, WriteOptions
from osbuilder.formats.kernel_initrd import write_kernel_initrd
from osbuilder.formats.kernel_tar import (
    kernel_initrd_members,
    write_members,
    write_tar_kernel_initrd,
)
from osbuilder.formats.outputfile import output_directory
from osbuilder.formats.staging import BootFiles
from osbuilder.runner import run
from tests.unit.formats.helpers import MTIME, Spool, run_tool

MIB = 1 << 20
UTC = {"TZ": "UTC"}


def test_the_kernel_initrd_tar_is_ustar_as_linuxkits_go_writes_it(
    tmp_path: Path, spool: Spool
) -> None:
    kernel, initrd = b"bzImage" * 300, bytes(range(256)) * 4  # 2100 bytes, and 1024
    members = [("kernel", spool(kernel)), ("initrd.img", spool(initrd)), ("cmdline", b"quiet")]
    path = tmp_path / "a-initrd.tar"
    with path.open("wb") as out:
        write_members(out, members, MTIME)
    data = path.read_bytes()
    # Each header, its data padded to 512 bytes, and two zero blocks at the end: no more.
    assert len(data) == (512 + 2560) + (512 + 1024) + (512 + 512) + 1024
    assert data[-1024:] == bytes(1024)
    for header in (0, 512 + 2560, 512 + 2560 + 512 + 1024):
        assert data[header + 257 : header + 265] == b"ustar\x0000"  # POSIX ustar, no PAX
        assert data[header + 156 : header + 157] == b"0"  # a regular file
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        read = [(m.name, m.size, m.mode, m.uid, m.gid, m.uname, m.gname, m.mtime) for m in archive]
        assert read == [
            (name, size, 0o644, 0, 0, "", "", MTIME)
            for name, size in (("kernel", 2100), ("initrd.img", 1024), ("cmdline", 5))
        ]
    listing = run_tool("env", "TZ=UTC", "tar", "-tvf", path).decode().splitlines()
    assert [line.split() for line in listing] == [
        ["-rw-r--r--", "0/0", str(size), "2023-11-14", "22:13", name]
        for name, size in (("kernel", 2100), ("initrd.img", 1024), ("cmdline", 5))
    ]
    listed = run_tool("bsdtar", "-tvf", path).decode().splitlines()
    assert [line.split()[-1] for line in listed] == ["kernel", "initrd.img", "cmdline"]
    run_tool("bsdtar", "-xf", path, cwd=tmp_path)
    assert (tmp_path / "kernel").read_bytes() == kernel
    assert (tmp_path / "initrd.img").read_bytes() == initrd
    assert (tmp_path / "cmdline").read_bytes() == b"quiet"


def test_microcode_is_a_member_of_its_own_and_an_empty_cmdline_none(
    tmp_path: Path, spool: Spool
) -> None:
    """As LinuxKit's: the staged initrd starts with the microcode, which the archive keeps
    apart (ucode.cpio, last); a member with nothing in it is left out."""
    ucode = spool(b"070701microcode" * 50)
    (tmp_path / "kernel").write_bytes(b"bzImage")
    (tmp_path / "initrd.img").write_bytes(ucode.read_bytes() + b"the compressed tree")
    boot = BootFiles(tmp_path / "kernel", tmp_path / "initrd.img", "", 0)

    def read(members: list[tuple[str, Content | bytes]]) -> list[tuple[str, bytes]]:
        return [(n, d if isinstance(d, bytes) else d.read_bytes()) for n, d in members]

    assert read(kernel_initrd_members(boot, ucode)) == [
        ("kernel", b"bzImage"),
        ("initrd.img", b"the compressed tree"),
        ("ucode.cpio", ucode.read_bytes()),
    ]
    (tmp_path / "initrd.img").write_bytes(b"the compressed tree")
    assert read(kernel_initrd_members(replace(boot, cmdline="quiet"), None)) == [
        ("kernel", b"bzImage"),
        ("initrd.img", b"the compressed tree"),
        ("cmdline", b"quiet"),
    ]


def test_with_kernel_initrd_the_tree_is_compressed_once_for_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both formats in one build: kernel+initrd copies the initrd tar-kernel-initrd had
    staged, the same bytes; microcode then the archive's initrd.img is kernel+initrd's."""
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    spool = TreeSpool(spool_dir)
    tree = Tree(spool)
    tree.put(Entry("etc", Kind.DIRECTORY, 0o755))
    tree.put(Entry("etc/motd", Kind.FILE, 0o644, content=spool.write_bytes(b"hello " * 999)))
    kernel = spool.write_bytes(b"bzImage" * 100)
    tree.put(Entry("boot/kernel", Kind.FILE, 0o644, content=kernel))
    ucode = spool.write_bytes(b"070701 early microcode" * 20)
    spool.flush()
    system = AssembledSystem(tree, KernelParts(kernel, "console=ttyS0", ucode))
    made: list[object] = []

    def counted(*args: object, **kwargs: object) -> None:
        made.append(args)
        real(*args, **kwargs)  # type: ignore[arg-type]

    real = staging.write_initrd
    monkeypatch.setattr(staging, "write_initrd", counted)
    monkeypatch.setattr(kernel_initrd, "write_initrd", counted)
    (tmp_path / "scratch").mkdir()
    (tmp_path / "out").mkdir()
    formats = ("kernel+initrd", "tar-kernel-initrd")
    with output_directory(tmp_path / "out") as outputs:
        job = WriteJob(system, outputs, "s", WriteOptions(), formats, MTIME, tmp_path / "scratch")
        write_kernel_initrd(job)
        write_tar_kernel_initrd(job)
    assert len(made) == 1
    files = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert sorted(files) == ["s-cmdline", "s-initrd.img", "s-initrd.tar", "s-kernel"]
    with tarfile.open(fileobj=io.BytesIO(files["s-initrd.tar"])) as archive:
        members = {m.name: archive.extractfile(m).read() for m in archive}  # type: ignore[union-attr]
    assert list(members) == ["kernel", "initrd.img", "cmdline", "ucode.cpio"]
    assert members["kernel"] == files["s-kernel"] == kernel.read_bytes()
    assert members["cmdline"] == files["s-cmdline"] == b"console=ttyS0"
    assert members["ucode.cpio"] == ucode.read_bytes()
    assert members["ucode.cpio"] + members["initrd.img"] == files["s-initrd.img"]
    assert gzip.decompress(members["initrd.img"]).startswith(b"070701")  # the tree's cpio


@pytest.mark.parametrize(
    ("size", "grown"),
    [(0, GIB), (1, GIB), (68 * MIB, GIB), (GIB, GIB), (GIB + 512, 2 * GIB), (5 * GIB, 5 * GIB)],
)
def test_the_gcp_disk_is_a_whole_number_of_gib(size: int, grown: int) -> None:
    assert whole_gib(size) == grown


def test_data_runs_are_the_blocks_that_are_not_all_zeros() -> None:
    assert list(data_runs(b"", 4)) == []
    assert list(data_runs(bytes(12), 4)) == []
    assert list(data_runs(b"abcdefgh", 4)) == [(0, 8)]  # one run of two blocks
    assert list(data_runs(bytes(4) + b"ab\0\0" + bytes(4) + b"cd", 4)) == [(4, 8), (12, 14)]
    assert list(data_runs(b"\0\0\0x" + bytes(5), 4)) == [(0, 4)]  # a short last block of zeros


def disk_content() -> bytes:
    """An MBR, zeros, some data at an odd place (enough for gzip's options to show in
    what it makes of them), zeros: a small disk's layout."""
    data = bytearray(3 * MIB + 4096)
    data[:512] = b"\xeb\x63" + bytes(508) + b"\x55\xaa"
    text = b" ".join(b"%d" % n for n in range(100_000))[: 256 * 1024]
    data[MIB + 100 : MIB + 100 + len(text)] = text
    data[-1] = 1
    return bytes(data)


def test_the_sparse_copy_keeps_the_bytes_and_leaves_the_zeros_as_holes(tmp_path: Path) -> None:
    source = tmp_path / "bios.img"
    source.write_bytes(disk_content())
    target = tmp_path / "disk.raw"
    sparse_copy(source, target, 8 * MIB)
    data = target.read_bytes()
    assert len(data) == 8 * MIB
    assert data[: source.stat().st_size] == source.read_bytes()
    assert data[source.stat().st_size :] == bytes(8 * MIB - source.stat().st_size)
    # On disk: the first block, the data's and the last; the rest are holes.
    assert target.stat().st_blocks * 512 <= 256 * 1024 + 4 * 4096


def archive(directory: Path) -> bytes:
    return run(archive_command(directory, MEMBER, MTIME), env=TOOL_ENVIRONMENT).stdout


def test_the_gcp_archive_is_a_sparse_oldgnu_member_made_from_the_contents_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = disk_content()
    sparse, denser = tmp_path / "sparse", tmp_path / "denser"
    for directory in (sparse, denser):
        directory.mkdir()
    (tmp_path / "bios.img").write_bytes(content)
    sparse_copy(tmp_path / "bios.img", sparse / MEMBER, 16 * MIB)
    with (denser / MEMBER).open("wb") as dense:  # its zeros written, but for a hole at the end
        dense.write(content)
        dense.truncate(16 * MIB)
    assert (denser / MEMBER).stat().st_blocks > (sparse / MEMBER).stat().st_blocks
    (sparse / MEMBER).chmod(0o600)  # as a umask of 077 would have made them
    (denser / MEMBER).chmod(0o640)
    # Options from the environment would change the archive: they are not taken.
    monkeypatch.setenv("TAR_OPTIONS", "--label=OPTIONS")
    monkeypatch.setenv("GZIP", "--rsyncable")
    data = archive(sparse)
    assert archive(denser) == data  # holes found in the contents, not the file system's
    monkeypatch.undo()
    assert archive(sparse) == data
    assert data[:2] == b"\x1f\x8b" and data[3] == 0  # gzip, and no file name...
    assert data[4:8] == bytes(4)  # ...nor time
    tar = gzip.decompress(data)
    assert tar[257:265] == b"ustar  \0"  # the old GNU format
    assert tar[156:157] == b"S"  # a sparse member
    assert tar[265:329] == bytes(64)  # owned by 0:0 (tar -tv shows 0/0), without names
    assert len(tar) < len(content) // 2  # the data, not the zeros
    (tmp_path / "a.tar.gz").write_bytes(data)
    for lister, date in (("tar", ["2023-11-14", "22:13"]), ("bsdtar", ["Nov", "14", "2023"])):
        [line] = run_tool("env", "TZ=UTC", lister, "-tvzf", tmp_path / "a.tar.gz").splitlines()
        words = line.decode().split()
        assert words[0] == "-rw-r--r--" and words[-1] == "disk.raw"  # Compute Engine's name
        assert words[-1 - len(date) : -1] == date  # the mtime given
        assert words[-2 - len(date)] == str(16 * MIB)  # the whole disk
    for extractor in ("tar", "bsdtar"):
        into = tmp_path / extractor
        into.mkdir()
        run_tool(extractor, "-xzf", tmp_path / "a.tar.gz", cwd=into)
        assert (into / MEMBER).read_bytes() == content + bytes(16 * MIB - len(content))
