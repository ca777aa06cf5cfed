"""The pieces of the BIOS boot media: the MBR, the FAT's size, SYSLINUX's configuration."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from osbuilder.errors import UserError
from osbuilder.formats import syslinux
from osbuilder.formats.disk import (
    MIB,
    PARTITION_START,
    fat_size,
    master_boot_record,
    partition_type,
)


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
