"""The pieces of the boot media: the MBR, the FAT's size, SYSLINUX's configuration, the UKI."""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import uuid
from pathlib import Path

import pytest

from osbuilder.errors import UserError
from osbuilder.formats import syslinux
from osbuilder.formats.disk import (
    MIB,
    PARTITION_START,
    fat_file_system,
    fat_size,
    master_boot_record,
    partition_type,
)
from osbuilder.formats.iso import link_or_copy
from osbuilder.formats.uki import EFI_STUB, pe_checksum, set_pe_timestamp
from osbuilder.formats.vhd import dynamic_vhd, fixed_vhd, footer_checksum
from osbuilder.formats.vmdk import set_cid, vmdk_disk


def test_the_mbr_boots_one_active_partition_at_one_mib() -> None:
    record = master_boot_record(64 * MIB, 0xDEADBEEF, 0x0C)
    assert len(record) == 512 and record[510:] == b"\x55\xaa"
    code = syslinux.MBR_BIN.read_bytes()
    assert record[: len(code)] == code and set(record[len(code) : 440]) <= {0}
    assert struct.unpack_from("<I", record, 440) == (0xDEADBEEF,)  # the disk signature
    status, kind, start, sectors = struct.unpack_from("<B3xB3xII", record, 446)
    assert (status, kind, start, sectors) == (0x80, 0x0C, PARTITION_START, 64 * MIB // 512)
    assert PARTITION_START * 512 == MIB
    assert set(record[462:510]) == {0}  # the other three entries are empty


def test_with_a_squashfs_root_the_mbr_has_its_linux_partition_after_the_boot_one() -> None:
    record = master_boot_record(18 * MIB, 1, 0x0E, 33 * MIB)
    first = struct.unpack_from("<B3xB3xII", record, 446)
    second = struct.unpack_from("<B3xB3xII", record, 462)
    assert first == (0x80, 0x0E, PARTITION_START, 18 * MIB // 512)
    assert second == (0, 0x83, PARTITION_START + 18 * MIB // 512, 33 * MIB // 512)
    assert set(record[478:510]) == {0} and record[510:] == b"\x55\xaa"


@pytest.mark.parametrize("content", [0, 1, 5 * MIB, 60_745_172, 1 << 30])
def test_the_fat_holds_its_files_with_room_for_its_tables(content: int) -> None:
    size = fat_size(content)
    assert size % MIB == 0
    # Clusters of 512 bytes at the least: two FATs of 4 bytes per cluster take 1.6%.
    assert size >= content * 1.016 + MIB
    assert size <= content * 1.03 + 4 * MIB  # and not much more


def test_syslinux_boots_the_kernel_at_once_with_the_cmdline() -> None:
    text = syslinux.config("/boot/kernel", "/boot/initrd.img", "console=ttyS0 quiet").decode()
    lines = [line.strip() for line in text.splitlines()]
    assert lines[:4] == ["SERIAL 0 115200", "DEFAULT osbuilder", "PROMPT 0", "TIMEOUT 0"]
    assert lines[4:] == [
        "LABEL osbuilder",
        "KERNEL /boot/kernel",
        "INITRD /boot/initrd.img",
        "APPEND console=ttyS0 quiet",
    ]
    assert "APPEND" not in syslinux.config("/kernel", "/initrd.img", "").decode()


@pytest.mark.parametrize(
    ("cmdline", "message"),
    [
        ("console=ttyS0\nDEFAULT other", "a line break or NUL"),
        ("a\0b", "a line break or NUL"),
        ("x" * 2001, "longer than the 2000 bytes"),
    ],
)
def test_a_cmdline_syslinux_cannot_take_is_refused(cmdline: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        syslinux.config("/kernel", "/initrd.img", cmdline)


@pytest.mark.parametrize(("mib", "kind"), [(8, 0x01), (64, 0x0E), (600, 0x0C)])
def test_the_partition_type_is_the_fat_mkfs_chose(tmp_path: Path, mib: int, kind: int) -> None:
    image = tmp_path / "fat.img"
    subprocess.run(
        ["mkfs.fat", "-C", "--invariant", str(image), str(mib * 1024)],
        check=True,
        capture_output=True,
    )
    assert partition_type(image) == kind


def objdump_header(image: Path) -> dict[str, str]:
    dumped = subprocess.run(
        ["objdump", "-p", str(image)], capture_output=True, text=True, check=True, env=UTC
    ).stdout
    return dict(line.split("\t", 1) for line in dumped.splitlines() if "\t" in line)


def checksum_of_copy_without_it(image: Path, tmp_path: Path) -> int:
    data = bytearray(image.read_bytes())
    (pe,) = struct.unpack_from("<I", data, 0x3C)
    data[pe + 88 : pe + 92] = bytes(4)
    copy = tmp_path / "zeroed"
    copy.write_bytes(data)
    return pe_checksum(copy)


UTC = {"TZ": "UTC", "PATH": "/usr/bin:/bin"}


def test_the_uki_gets_the_build_time_and_the_checksum_objcopy_would_give(tmp_path: Path) -> None:
    section = tmp_path / "cmdline"
    section.write_bytes(b"console=ttyS0 quiet")  # an odd length: the padded last word
    image = tmp_path / "uki.efi"
    subprocess.run(
        ["objcopy", "--add-section", f".cmdline={section}", str(EFI_STUB), str(image)],
        check=True,
    )
    header = objdump_header(image)
    assert int(header["CheckSum"].strip(), 16) == checksum_of_copy_without_it(image, tmp_path)
    assert header["Time/Date"].strip() != "Tue Nov 14 22:13:20 2023"  # objcopy's: now

    set_pe_timestamp(image, 1_700_000_000)

    header = objdump_header(image)
    assert header["Time/Date"].strip() == "Tue Nov 14 22:13:20 2023"
    assert int(header["CheckSum"].strip(), 16) == checksum_of_copy_without_it(image, tmp_path)


def test_a_file_fat_cannot_hold_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    initrd = tmp_path / "initrd.img"
    with initrd.open("wb") as file:
        file.truncate(1 << 32)  # sparse: 4 GiB, one byte more than FAT's largest file
    partition = tmp_path / "partition.img"
    with pytest.raises(UserError, match=r"initrd\.img would be 4\.0 GiB: more than a FAT"):
        fat_file_system(partition, {"initrd.img": initrd}, 0, 0x1234)
    assert not partition.exists()


def folded_word_sum(data: bytes) -> int:
    """The PE checksum's definition, a word at a time with the carry folded back in."""
    total = 0
    for (word,) in struct.iter_unpack("<H", data + b"\0" * (len(data) % 2)):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return total


@pytest.mark.parametrize("size", [0, 1, 2, 1001, (1 << 20) + 3, 3 << 20])
@pytest.mark.parametrize("fill", ["random", "ones", "zeros"])
def test_the_pe_checksum_is_the_folded_word_sum_plus_the_size(
    tmp_path: Path, size: int, fill: str
) -> None:
    data = {"random": random.Random(size).randbytes(size), "ones": b"\xff" * size}.get(
        fill, bytes(size)
    )  # (all ones: sums that are non-zero multiples of 0xFFFF)
    path = tmp_path / "image"
    path.write_bytes(data)
    assert pe_checksum(path) == folded_word_sum(data) + size


def test_media_files_are_copied_where_hard_links_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(source: object, target: object) -> None:
        raise PermissionError(1, "Operation not permitted")  # as FAT answers link(2)

    source = tmp_path / "initrd.img"
    source.write_bytes(b"initrd")
    monkeypatch.setattr(os, "link", no_links)
    link_or_copy(source, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == b"initrd"


def test_the_vhd_footer_is_the_builds_with_a_checksum_as_qemu_computes(tmp_path: Path) -> None:
    raw = tmp_path / "disk.img"
    raw.write_bytes(master_boot_record(MIB, 1, 0x0E).ljust(2 * MIB, b"\0"))
    plain = tmp_path / "plain.vhd"
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size=on",
         str(raw), str(plain)],
        check=True,
    )  # fmt: skip
    footer = plain.read_bytes()[-512:]
    assert struct.unpack_from(">I", footer, 64) == (footer_checksum(footer),)  # qemu's own

    identity = uuid.UUID(int=0x0123456789ABCDEF)
    ours = tmp_path / "ours.vhd"
    fixed_vhd(raw, ours, 1_700_000_000, identity)

    data = ours.read_bytes()
    footer = data[-512:]
    assert data[:-512] == raw.read_bytes()  # a fixed VHD: the raw disk, then the footer
    assert footer[:8] == b"conectix"
    assert struct.unpack_from(">I", footer, 24) == (1_700_000_000 - 946684800,)
    assert footer[68:84] == identity.bytes
    assert struct.unpack_from(">I", footer, 64) == (footer_checksum(footer),)
    info = subprocess.run(
        ["qemu-img", "info", "--output", "json", "-f", "vpc", str(ours)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(info.stdout)["virtual-size"] == 2 * MIB


def test_a_dynamic_vhd_has_the_builds_footers_and_holds_the_disk(tmp_path: Path) -> None:
    raw = tmp_path / "disk.img"
    raw.write_bytes(master_boot_record(MIB, 1, 0x0E).ljust(16 * MIB, b"\0"))
    identity = uuid.UUID(int=0xFEDCBA9876543210)
    ours = tmp_path / "ours.vhd"
    dynamic_vhd(raw, ours, 1_700_000_000, identity)
    data = ours.read_bytes()
    assert len(data) < 3 * MIB  # only the blocks written (of 2 MiB) take room
    for footer in (data[:512], data[-512:]):  # the copy in front and the footer itself
        assert footer[:8] == b"conectix"
        assert struct.unpack_from(">I", footer, 60) == (3,)  # disk type: dynamic
        assert struct.unpack_from(">I", footer, 24) == (1_700_000_000 - 946684800,)
        assert footer[68:84] == identity.bytes
        assert struct.unpack_from(">I", footer, 64) == (footer_checksum(footer),)
    subprocess.run(
        ["qemu-img", "compare", "-q", "-f", "raw", "-F", "vpc", str(raw), str(ours)], check=True
    )  # qemu reads it (its checksums hold) as the same disk
    again = tmp_path / "again.vhd"
    dynamic_vhd(raw, again, 1_700_000_000, identity)
    assert again.read_bytes() == data


def test_a_vmdk_names_its_file_and_the_builds_cid_and_holds_the_disk(tmp_path: Path) -> None:
    raw = tmp_path / "disk.img"
    raw.write_bytes(master_boot_record(MIB, 1, 0x0E).ljust(4 * MIB, b"\0"))
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    for directory in (first, second):
        vmdk_disk(raw, directory / "system.vmdk", 0x1234ABCD)
    data = (first / "system.vmdk").read_bytes()
    assert data == (second / "system.vmdk").read_bytes()  # reproducible
    assert data[:4] == b"KDMV"
    assert b"\nCID=1234abcd\n" in data[:65536]
    assert b'RW 8192 SPARSE "system.vmdk"' in data[:65536]
    subprocess.run(
        [
            "qemu-img",
            "compare",
            "-q",
            "-f",
            "raw",
            "-F",
            "vmdk",
            str(raw),
            str(first / "system.vmdk"),
        ],
        check=True,
    )
    # qemu-img writes the CID without leading zeros: a short one becomes eight digits, the
    # text after it moves on, and the descriptor stays as long as it was.
    short = first / "system.vmdk"
    descriptor = data.index(b"# Disk DescriptorFile")
    length = data.index(b"\0", descriptor) - descriptor
    end = descriptor + length  # the descriptor's text, then zeros: keep the file's layout
    text = data[descriptor:end].replace(b"CID=1234abcd\n", b"CID=abc\n")
    short.write_bytes(data[:descriptor] + text.ljust(length, b"\0") + data[end:])
    set_cid(short, 0x1234ABCD)
    assert short.read_bytes() == data
    set_cid(short, 0xABC)
    assert b"\nCID=00000abc\n" in short.read_bytes()
    assert short.read_bytes().index(b"\0", descriptor) - descriptor == length
