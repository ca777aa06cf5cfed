"""The BIOS disk formats: `raw-bios` (NAME-bios.img) and `qcow2-bios` (NAME.qcow2).

One MBR-partitioned disk: SYSLINUX's MBR code, then at 1 MiB one active FAT partition
holding the kernel, the initrd, syslinux.cfg and SYSLINUX itself (installed into the
partition's boot sector by `syslinux --install`). The FAT file system is made in a
scratch file (mkfs.fat, mcopy: no root, no loop device) and the disk written around
it; qcow2-bios is the same disk converted by `qemu-img`. Every time in the file
system is the build's SOURCE_DATE_EPOCH and the volume ID and disk signature come from
the contents, so the images are reproducible.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from osbuilder.errors import cannot_write
from osbuilder.formats import syslinux
from osbuilder.formats.staging import COPY_CHUNK, BootFiles, boot_files
from osbuilder.runner import run

if TYPE_CHECKING:
    from osbuilder.formats import WriteJob
    from osbuilder.formats.outputfile import Output

SECTOR = 512
MIB = 1 << 20
PARTITION_START = MIB // SECTOR  # sector 2048, where partitioning tools put the first one
LABEL = "OSBUILDER"
# Room in the FAT file system beyond its files: the two FATs (4 bytes per cluster each
# at most, clusters of 512 bytes at least: under 2%), directories, SYSLINUX's ldlinux.sys
# and ldlinux.c32 (about 200 KB), and a cluster's slack per file.
FAT_OVERHEAD = 0.02
FAT_SLACK = 2 * MIB
# MBR partition types by the FAT mkfs.fat chose for the size (LBA-addressed variants).
PARTITION_TYPES = {b"FAT12   ": 0x01, b"FAT16   ": 0x0E, b"FAT32   ": 0x0C}


def write_raw_bios(job: WriteJob) -> list[Output]:
    disk = _disk_image(job, "raw-bios")
    with job.outputs.create(f"{job.name}-bios.img") as out, disk.open("rb") as source:
        shutil.copyfileobj(source, out, COPY_CHUNK)
    return [out.result()]


def write_qcow2_bios(job: WriteJob) -> list[Output]:
    disk = _disk_image(job, "qcow2-bios")
    converted = job.scratch / "disk.qcow2"
    run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", disk, converted])
    with job.outputs.create(f"{job.name}.qcow2") as out, converted.open("rb") as source:
        shutil.copyfileobj(source, out, COPY_CHUNK)
    return [out.result()]


def _disk_image(job: WriteJob, format_name: str) -> Path:
    """The raw disk, made once per build in the scratch directory."""
    staged = job.staged.get("bios-disk")
    if isinstance(staged, Path):
        return staged
    boot = boot_files(job, format_name)
    partition = _fat_partition(job.scratch, boot, job.epoch)
    disk = job.scratch / "disk.img"
    try:
        with disk.open("xb") as out, partition.open("rb") as source:
            out.write(
                master_boot_record(
                    partition.stat().st_size, boot.identity, partition_type(partition)
                )
            )
            out.write(bytes(PARTITION_START * SECTOR - SECTOR))
            shutil.copyfileobj(source, out, COPY_CHUNK)
        partition.unlink()
    except OSError as exc:
        raise cannot_write(disk, exc) from None
    job.staged["bios-disk"] = disk
    return disk


def _fat_partition(scratch: Path, boot: BootFiles, epoch: int) -> Path:
    files = scratch / "fat"
    partition = scratch / "partition.img"
    try:
        files.mkdir()
        os.link(boot.kernel, files / "kernel")
        os.link(boot.initrd, files / "initrd.img")
        (files / "syslinux.cfg").write_bytes(
            syslinux.config("/kernel", "/initrd.img", boot.cmdline)
        )
        names = sorted(files.iterdir())
        for path in names:
            os.utime(path, (epoch, epoch))
    except OSError as exc:
        raise cannot_write(files, exc) from None
    size = fat_size(sum(path.stat().st_size for path in names))
    environment = {"SOURCE_DATE_EPOCH": str(epoch), "MTOOLS_SKIP_CHECK": "1"}
    run(
        [
            "mkfs.fat",
            "-C",  # create the file
            "--invariant",  # no random or time-based values...
            "-i",  # ...and this volume ID
            f"{boot.identity:08x}",
            "-n",
            LABEL,
            "-h",  # sectors before the partition, which the boot sector records
            str(PARTITION_START),
            partition,
            str(size // 1024),
        ],
        env=environment,
    )
    run(["mcopy", "-m", "-i", partition, *names, "::"], env=environment)
    run(["syslinux", "--install", partition], env=environment)
    return partition


def fat_size(content_bytes: int) -> int:
    """Bytes of a FAT file system holding `content_bytes` of files and SYSLINUX (MiB-aligned)."""
    needed = int(content_bytes * (1 + FAT_OVERHEAD)) + FAT_SLACK
    return -(-needed // MIB) * MIB


def partition_type(partition: Path) -> int:
    """The MBR partition type of the FAT file system in `partition`."""
    with partition.open("rb") as file:
        boot_sector = file.read(SECTOR)
    for offset in (0x52, 0x36):  # where FAT32's, then FAT12/16's, boot sector names its type
        kind = PARTITION_TYPES.get(boot_sector[offset : offset + 8])
        if kind is not None:
            return kind
    raise ValueError(f"{partition}: mkfs.fat made no FAT file system it names")


def master_boot_record(partition_bytes: int, signature: int, partition_type: int) -> bytes:
    """SYSLINUX's MBR code, the disk signature and one active partition at PARTITION_START."""
    code = syslinux.loader_file(syslinux.MBR_BIN).read_bytes()
    if len(code) > 440:
        raise ValueError(f"{syslinux.MBR_BIN}: {len(code)} bytes of MBR code, at most 440 fit")
    # CHS addresses are unused by anything that reads LBA (every BIOS since the 1990s):
    # 0xFEFFFF, "beyond CHS", as partitioning tools write for large disks.
    beyond_chs = b"\xfe\xff\xff"
    entry = struct.pack(
        "<B3sB3sII",
        0x80,  # active: the partition the MBR code boots
        beyond_chs,
        partition_type,
        beyond_chs,
        PARTITION_START,
        partition_bytes // SECTOR,
    )
    record = code.ljust(440, b"\0") + struct.pack("<IH", signature, 0) + entry + bytes(48)
    return record + b"\x55\xaa"
