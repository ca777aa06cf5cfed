"""tar-kernel-initrd (NAME-initrd.tar) and gcp (NAME.img.tar.gz), built from the test
store and read back with GNU tar, bsdtar and sfdisk.

That gcp's disk boots is tests/boot/test_gcp.py.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, Packages
from tests.integration.test_boot_media import SPEC, tool
from tests.integration.test_build import build, spec

pytestmark = pytest.mark.integration

GIB = 1 << 30
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}  # 2023-11-14 22:13:20 UTC
FORMATS = ("kernel+initrd", "tar-kernel-initrd", "raw-bios", "gcp")
OUTPUTS = ["spec-kernel", "spec-initrd.img", "spec-cmdline", "spec-initrd.tar"]
OUTPUTS += ["spec-bios.img", "spec.img.tar.gz"]


def options(*formats: str) -> list[str]:
    return [option for name in formats for option in ("-f", name)]


def digests(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    return {Path(o["path"]).name: o["sha256"] for o in json.loads(result.stdout)}


@pytest.fixture(scope="module")
def built(packages: Packages, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four formats of one build, with its outputs' digests in digests.json."""
    work = tmp_path_factory.mktemp("archives")
    path = spec(work, packages, SPEC)
    result = build(packages, work, "--json", *options(*FORMATS), str(path), env=EPOCH)
    (work / "out/digests.json").write_text(json.dumps(digests(result)))
    return work / "out"


def listing(*command: str | Path) -> list[list[str]]:
    return [line.split() for line in tool("env", "TZ=UTC", *command).splitlines()]


def test_tar_kernel_initrd_holds_the_kernel_initrd_formats_files(
    built: Path, tmp_path: Path
) -> None:
    tarball = built / "spec-initrd.tar"
    files = {"kernel": "spec-kernel", "initrd.img": "spec-initrd.img", "cmdline": "spec-cmdline"}
    sizes = {name: (built / file).stat().st_size for name, file in files.items()}
    assert listing("tar", "--full-time", "-tvf", tarball) == [
        ["-rw-r--r--", "0/0", str(sizes[name]), "2023-11-14", "22:13:20", name] for name in files
    ]
    assert [(words[4], words[-1]) for words in listing("bsdtar", "-tvf", tarball)] == [
        (str(sizes[name]), name) for name in files
    ]
    tool("tar", "-xf", tarball, "-C", tmp_path)
    for name, file in files.items():
        assert (tmp_path / name).read_bytes() == (built / file).read_bytes(), name
    assert (
        built / "spec-cmdline"
    ).read_text() == "console=ttyS0 osbuilder.test=a,b rootfstype=ramfs"
    # ustar headers, each member's data padded to 512 bytes, then two zero blocks
    data = tarball.read_bytes()
    assert data[257:265] == b"ustar\x0000"
    assert len(data) == sum(512 + -(-size // 512) * 512 for size in sizes.values()) + 1024


def sfdisk(disk: Path) -> dict[str, Any]:
    """The partition table of `disk`, without the names sfdisk gives from its path."""
    table: dict[str, Any] = json.loads(tool("sfdisk", "--json", disk))["partitiontable"]
    for key in ("device", "lastlba"):  # (lastlba: where a GPT would end)
        table.pop(key, None)
    table["partitions"] = [{k: v for k, v in p.items() if k != "node"} for p in table["partitions"]]
    return table


def unpacked_disk(archive: Path, into: Path) -> Path:
    """The gcp archive's disk.raw, unpacked by GNU tar after checking it is its one member."""
    [words] = listing("tar", "--full-time", "-tvzf", archive)
    assert words[0] == "-rw-r--r--" and words[1] == "0/0" and words[-1] == "disk.raw"
    assert words[3:5] == ["2023-11-14", "22:13:20"]
    [bsd] = listing("bsdtar", "-tvzf", archive)
    assert bsd[4] == words[2] and bsd[-1] == "disk.raw"
    into.mkdir()
    tool("tar", "-xzf", archive, "-C", into)
    disk = into / "disk.raw"
    assert disk.stat().st_size == int(words[2])
    return disk


def test_gcp_is_raw_bioss_disk_grown_to_whole_gib_in_a_sparse_gnu_tar(
    built: Path, tmp_path: Path
) -> None:
    archive, bios = built / "spec.img.tar.gz", built / "spec-bios.img"
    compressed = archive.read_bytes()
    assert compressed[:3] == b"\x1f\x8b\x08" and compressed[3] == 0  # gzip, no file name
    assert compressed[4:8] == bytes(4)  # and no time
    tar = gzip.decompress(compressed)
    assert tar[:8] == b"disk.raw" and tar[257:265] == b"ustar  \0"  # old GNU format...
    assert tar[156:157] == b"S"  # ...a sparse member, whose holes are not in the archive:
    assert len(tar) < bios.stat().st_size

    disk = unpacked_disk(archive, tmp_path / "gcp")
    size = disk.stat().st_size
    assert size % GIB == 0 and size > bios.stat().st_size
    assert disk.stat().st_blocks * 512 < size // 4  # unpacked with its holes
    original = bios.read_bytes()
    with disk.open("rb") as data:
        assert data.read(len(original)) == original  # the MBR, the partition, all of it
        while chunk := data.read(64 << 20):
            assert chunk == bytes(len(chunk))  # then zeros
    assert sfdisk(disk) == sfdisk(bios)
    [boot] = sfdisk(disk)["partitions"]  # one active FAT partition at 1 MiB
    assert (boot["type"], boot["start"], boot.get("bootable")) == ("e", 2048, True)


def test_builds_are_identical_and_each_format_alone_writes_the_same_file(
    packages: Packages, built: Path, tmp_path: Path
) -> None:
    first = json.loads((built / "digests.json").read_text())
    assert sorted(first) == sorted(OUTPUTS)
    path = spec(tmp_path, packages, SPEC)
    time.sleep(1.1)  # a clock time that slipped into an archive would differ now
    again = build(packages, tmp_path, "--json", *options(*FORMATS), str(path), env=EPOCH)
    assert digests(again) == first
    # Alone, neither shares its kernel, initrd or disk with another format: the same files.
    for name, output in (("tar-kernel-initrd", "spec-initrd.tar"), ("gcp", "spec.img.tar.gz")):
        alone = build(packages, tmp_path, "--json", "-f", name, str(path), env=EPOCH, out=name)
        assert digests(alone) == {output: first[output]}
        assert not [p.name for p in (tmp_path / name).iterdir() if p.name != output]  # no spool


def test_gcp_keeps_the_squashfs_root_of_raw_bios(packages: Packages, tmp_path: Path) -> None:
    redis = REPO / "examples/redis.yml"
    result = build(
        packages,
        tmp_path,
        "--root",
        "squashfs",
        *options("raw-bios", "gcp"),
        str(redis),
        env=EPOCH,
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    disk = unpacked_disk(out / "redis.img.tar.gz", tmp_path / "gcp")
    assert disk.stat().st_size == GIB
    bios = out / "redis-bios.img"
    table = sfdisk(disk)
    assert table == sfdisk(bios)
    assert [p["type"] for p in table["partitions"]] == ["e", "83"]
    original = bios.read_bytes()
    with disk.open("rb") as data:
        assert data.read(len(original)) == original


@pytest.mark.parametrize("format_name", ["tar-kernel-initrd", "gcp"])
def test_without_a_kernel_nothing_is_written(
    packages: Packages, tmp_path: Path, format_name: str
) -> None:
    path = spec(tmp_path, packages, "init: [{init}]\n")
    result = build(packages, tmp_path, "-f", "tar", "-f", format_name, str(path))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"osbuilder: {format_name}: the spec has no kernel; give it a `kernel: image:`, "
        "or build another format (-f tar)"
    )
    assert list((tmp_path / "out").iterdir()) == []


def test_tar_kernel_initrd_is_refused_with_a_squashfs_root(
    packages: Packages, tmp_path: Path
) -> None:
    redis = str(REPO / "examples/redis.yml")
    result = build(
        packages, tmp_path, "--root", "squashfs", *options("gcp", "tar-kernel-initrd"), redis
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "osbuilder: --root squashfs: tar-kernel-initrd keeps the root in its initrd; build it "
        "without --root (for a kernel with a squashfs root: -f kernel+squashfs)"
    )


def test_a_failed_write_of_the_kernel_initrd_tar_leaves_nothing(
    packages: Packages, built: Path, tmp_path: Path
) -> None:
    """Room for the staged kernel and initrd, not for the archive of both (a file size
    limit fails writes as a full disk would)."""
    largest = max((built / name).stat().st_size for name in ("spec-kernel", "spec-initrd.img"))
    path = spec(tmp_path, packages, SPEC)
    result = build(
        packages, tmp_path, "-f", "tar-kernel-initrd", str(path), max_file_size=largest + 4096
    )
    assert result.returncode == 1
    out = tmp_path / "out"
    assert result.stderr.strip() == (
        f"osbuilder: tar-kernel-initrd: {out}/spec-initrd.tar: cannot write: File too large"
    )
    assert list(out.iterdir()) == []


FAILING_TAR = """#!/bin/sh
printf 'the start of an archive'
echo "tar: disk.raw: Read error at byte 0, while reading 512 bytes: Input/output error" >&2
exit 2
"""


def test_a_failed_archive_leaves_no_file(packages: Packages, tmp_path: Path) -> None:
    """tar failing once it has written some of the archive: the build fails with its error
    on one line, and neither gcp's file nor raw-bios's, written before it, appears."""
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "tar").write_text(FAILING_TAR)
    (tools / "tar").chmod(stat.S_IRWXU)
    path = spec(tmp_path, packages, SPEC)
    environment = {"PATH": f"{tools}:{os.environ['PATH']}"}
    result = build(packages, tmp_path, *options("raw-bios", "gcp"), str(path), env=environment)
    assert result.returncode == 3  # an external program failed
    [line] = result.stderr.splitlines()
    assert line.startswith("osbuilder: gcp: tar --create --file=- --format=oldgnu --sparse ")
    assert line.endswith(
        "failed (exit 2): tar: disk.raw: Read error at byte 0, while reading 512 bytes: "
        "Input/output error"
    )
    assert list((tmp_path / "out").iterdir()) == []
