"""The disk formats: raw-bios (NAME-bios.img), raw-efi (NAME-efi.img), their qcow2s, vhd,
dynamic-vhd, vmdk and aws (NAME.raw).

Each is one partition at 1 MiB holding a FAT file system, made in a scratch file
(mkfs.fat, mmd, mcopy: no root, no loop device) and written into the disk (with
`--root squashfs`, the initrd there is kernel+squashfs's boot stage and a second
partition after it holds the root's squashfs image):

- BIOS: an MBR with SYSLINUX's boot code and one active partition holding the kernel,
  the initrd, syslinux.cfg and SYSLINUX itself (`syslinux --install` into the
  partition's boot sector);
- EFI: a GPT (sfdisk) whose one partition is an EFI system partition holding the unified
  kernel image (formats/uki.py) as the firmware's default loader, EFI/BOOT/BOOTX64.EFI.

qcow2-bios and qcow2-efi are the same disks converted by `qemu-img`, vhd, dynamic-vhd
and vmdk the BIOS one as a fixed or dynamic VHD and a VMDK, aws the BIOS one as it is
under the name LinuxKit gives it for EC2's import (and gcp, in
formats/gcp.py, as a Compute Engine image). Every time in the
file systems is the build's SOURCE_DATE_EPOCH, and the volume ID, disk signature and
GUIDs come from the kernel's and initrd's (and root's) digests: the images are reproducible.
"""

from __future__ import annotations

import os
import shutil
import struct
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from msgspec import Struct

from osbuilder.errors import UserError, cannot_write
from osbuilder.formats import syslinux
from osbuilder.formats.outputfile import COPY_CHUNK
from osbuilder.formats.staging import boot_files
from osbuilder.formats.uki import expected_pcrs, unified_kernel_image
from osbuilder.formats.vhd import dynamic_vhd, fixed_vhd
from osbuilder.formats.vmdk import vmdk_disk
from osbuilder.runner import run

if TYPE_CHECKING:
    from osbuilder.formats.job import WriteJob
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
FAT_LARGEST_FILE = (1 << 32) - 1  # a FAT directory entry's size field is 32 bits
PARTITION_TYPES = {b"FAT12   ": 0x01, b"FAT16   ": 0x0E, b"FAT32   ": 0x0C}
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"  # the GPT type of an EFI system partition
LINUX_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"  # GPT: Linux file system (--root squashfs)
LINUX_MBR_TYPE = 0x83
ROOT_NAME = "osbuilder root"
GPT_TAIL = MIB  # after the partition: room for the backup GPT (33 sectors)
_GUIDS = uuid.UUID("5d0a6c47-4f1c-4b8e-9a51-6f7362756c64")  # names osbuilder's GUIDs


class _Disk(Struct, frozen=True):
    firmware: str  # "bios" or "efi"
    raw_name: str  # the raw format's file, NAME + this
    qcow2_name: str


_DISKS = {
    "bios": _Disk("bios", "-bios.img", ".qcow2"),
    "efi": _Disk("efi", "-efi.img", "-efi.qcow2"),
}


def write_raw_bios(job: WriteJob) -> list[Output]:
    return [_write_raw(job, _DISKS["bios"])]


def write_aws(job: WriteJob) -> list[Output]:
    """NAME.raw: the raw-bios disk, as EC2's VM Import (import-snapshot) takes a raw image
    (LinuxKit's `aws` format and file name)."""
    return [_copy_output(job, _disk_image(job, _DISKS["bios"]), job.name + ".raw")]


def write_qcow2_bios(job: WriteJob) -> list[Output]:
    return [_write_qcow2(job, _DISKS["bios"])]


def write_raw_efi(job: WriteJob) -> list[Output]:
    return [_write_raw(job, _DISKS["efi"]), expected_pcrs(job)]


def write_qcow2_efi(job: WriteJob) -> list[Output]:
    return [_write_qcow2(job, _DISKS["efi"]), expected_pcrs(job)]


def write_vhd(job: WriteJob) -> list[Output]:
    """NAME.vhd: the raw-bios disk as a fixed VHD (Hyper-V, Azure; formats/vhd.py)."""
    return [_write_vhd(job, "vhd", ".vhd", fixed_vhd)]


def write_dynamic_vhd(job: WriteJob) -> list[Output]:
    """NAME-dynamic.vhd: the raw-bios disk as a dynamic VHD (only what is written takes
    room; formats/vhd.py)."""
    return [_write_vhd(job, "dynamic-vhd", "-dynamic.vhd", dynamic_vhd)]


def _write_vhd(
    job: WriteJob,
    kind: str,
    suffix: str,
    convert: Callable[[Path, Path, int, uuid.UUID], None],
) -> Output:
    """The raw-bios disk as a VHD of `kind` (which names its scratch file and its UUID)."""
    image = _disk_image(job, _DISKS["bios"])
    converted = job.scratch / f"{kind}.vhd"
    identity = uuid.UUID(disk_guid(boot_files(job).identity, kind))
    convert(image, converted, job.epoch, identity)
    return _copy_output(job, converted, job.name + suffix)


def write_vmdk(job: WriteJob) -> list[Output]:
    """NAME.vmdk: the raw-bios disk as a VMDK (formats/vmdk.py)."""
    image = _disk_image(job, _DISKS["bios"])
    name = f"{job.name}.vmdk"
    converted = job.scratch / name  # the descriptor names the file it is written as
    vmdk_disk(image, converted, boot_files(job).identity)
    return [_copy_output(job, converted, name)]


def _copy_output(job: WriteJob, source: Path, name: str) -> Output:
    with job.outputs.create(name) as out, source.open("rb") as data:
        shutil.copyfileobj(data, out, COPY_CHUNK)
    return out.result()


def _write_raw(job: WriteJob, disk: _Disk) -> Output:
    return _copy_output(job, _disk_image(job, disk), job.name + disk.raw_name)


def _write_qcow2(job: WriteJob, disk: _Disk) -> Output:
    image = _disk_image(job, disk)
    converted = image.with_suffix(".qcow2")
    run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", image, converted])
    return _copy_output(job, converted, job.name + disk.qcow2_name)


def bios_disk(job: WriteJob) -> Path:
    """raw-bios's disk in the scratch directory (made once per build), for the formats
    that wrap it whole (gcp); not to be changed."""
    return _disk_image(job, _DISKS["bios"])


def _disk_image(job: WriteJob, disk: _Disk) -> Path:
    """The raw disk, made once per build in the scratch directory."""
    return job.once(f"{disk.firmware} disk", lambda: _make_disk(job, disk))


def _make_disk(job: WriteJob, disk: _Disk) -> Path:
    boot = boot_files(job)
    partition = _bios_partition(job) if disk.firmware == "bios" else esp_image(job)
    image = job.scratch / f"{disk.firmware}.img"
    size = partition.stat().st_size
    # --root squashfs: the root's image in a second partition, right after the first
    # (whose size is whole MiB), padded to whole MiB too.
    root_size = -(-boot.root.stat().st_size // MIB) * MIB if boot.root else 0
    end = PARTITION_START * SECTOR + size + root_size
    try:
        with image.open("xb") as out, partition.open("rb") as source:
            if disk.firmware == "bios":
                kind = partition_type(partition)
                out.write(master_boot_record(size, boot.identity, kind, root_size))
            out.truncate(PARTITION_START * SECTOR)
            out.seek(PARTITION_START * SECTOR)
            shutil.copyfileobj(source, out, COPY_CHUNK)
            if boot.root:
                with boot.root.open("rb") as root:
                    shutil.copyfileobj(root, out, COPY_CHUNK)
            out.truncate(end + (GPT_TAIL if disk.firmware == "efi" else 0))
    except OSError as exc:
        raise cannot_write(image, exc) from None
    if disk.firmware == "efi":
        _write_gpt(image, size, boot.identity, root_size)
    return image


def esp_image(job: WriteJob) -> Path:
    """The EFI system partition of the EFI media (raw-efi's partition, iso-efi's boot
    image): FAT, with the unified kernel image as EFI/BOOT/BOOTX64.EFI. Made once."""
    return job.once("esp", lambda: _make_esp(job))


def _make_esp(job: WriteJob) -> Path:
    partition = job.scratch / "esp.img"
    loader = unified_kernel_image(job)
    identity = boot_files(job).identity
    fat_file_system(partition, {"EFI/BOOT/BOOTX64.EFI": loader}, job.epoch, identity)
    return partition


def _bios_partition(job: WriteJob) -> Path:
    boot = boot_files(job)
    partition = job.scratch / "bios-partition.img"
    config = job.scratch / "syslinux.cfg"
    try:
        config.write_bytes(syslinux.config("/kernel", "/initrd.img", boot.cmdline))
    except OSError as exc:
        raise cannot_write(config, exc) from None
    files = {"kernel": boot.kernel, "initrd.img": boot.initrd, "syslinux.cfg": config}
    fat_file_system(partition, files, job.epoch, boot.identity)
    run(["syslinux", "--install", partition], env=_mtools_environment(job.epoch))
    return partition


def fat_file_system(partition: Path, files: dict[str, Path], epoch: int, volume_id: int) -> None:
    """A FAT file system in the new file `partition` holding `files` (its path -> source)."""
    try:
        sizes = {name: source.stat().st_size for name, source in files.items()}
        for source in files.values():
            os.utime(source, (epoch, epoch))  # mcopy -m keeps a file's time
    except OSError as exc:
        raise cannot_write(partition, exc) from None
    for name, size in sizes.items():
        if size > FAT_LARGEST_FILE:
            raise UserError(
                f"{name} would be {size / (1 << 30):.1f} GiB: more than a FAT file system "
                "holds in a file (4 GiB); make the system smaller, or build kernel+initrd"
            )
    content = sum(sizes.values())
    environment = _mtools_environment(epoch)
    run(
        [
            "mkfs.fat",
            "-C",  # create the file
            "--invariant",  # no random or time-based values...
            "-i",  # ...and this volume ID
            f"{volume_id:08x}",
            "-n",
            LABEL,
            "-h",  # sectors before the partition, which the boot sector records
            str(PARTITION_START),
            partition,
            str(fat_size(content) // 1024),
        ],
        env=environment,
    )
    made: set[Path] = set()
    for name in sorted(files):
        for directory in reversed(Path(name).parents[:-1]):  # (the last parent is ".")
            if directory not in made:
                run(["mmd", "-i", partition, f"::{directory}"], env=environment)
                made.add(directory)
        run(["mcopy", "-m", "-i", partition, files[name], f"::{name}"], env=environment)


def _mtools_environment(epoch: int) -> dict[str, str]:
    # mtools takes file system times from SOURCE_DATE_EPOCH, and need not check the
    # geometry of an image file.
    return {"SOURCE_DATE_EPOCH": str(epoch), "MTOOLS_SKIP_CHECK": "1"}


def _write_gpt(image: Path, partition_bytes: int, identity: int, root_bytes: int = 0) -> None:
    """A GPT on `image` (by sfdisk) with one EFI system partition at PARTITION_START,
    and the root's partition after it if `root_bytes`."""
    lines = [
        "label: gpt",
        f"label-id: {disk_guid(identity, 'disk')}",
        "unit: sectors",
        f"start={PARTITION_START}, size={partition_bytes // SECTOR}, type={ESP_TYPE}, "
        f'uuid={disk_guid(identity, "esp")}, name="EFI system partition"',
    ]
    if root_bytes:
        lines.append(
            f"start={PARTITION_START + partition_bytes // SECTOR}, size={root_bytes // SECTOR}, "
            f'type={LINUX_TYPE}, uuid={disk_guid(identity, "root")}, name="{ROOT_NAME}"'
        )
    script = "\n".join([*lines, ""])
    run(
        ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", image],
        input=script.encode(),
    )


def disk_guid(identity: int, what: str) -> str:
    """A GUID that is the same for the same contents (`identity`) and `what` it names."""
    return str(uuid.uuid5(_GUIDS, f"{identity:08x}-{what}")).upper()


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


def master_boot_record(
    partition_bytes: int, signature: int, partition_type: int, root_bytes: int = 0
) -> bytes:
    """SYSLINUX's MBR code, the disk signature and one active partition at PARTITION_START,
    and the root's (a Linux partition) after it if `root_bytes`."""
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
    if root_bytes:
        start = PARTITION_START + partition_bytes // SECTOR
        entry += struct.pack(
            "<B3sB3sII", 0, beyond_chs, LINUX_MBR_TYPE, beyond_chs, start, root_bytes // SECTOR
        )
    table = entry.ljust(64, b"\0")
    record = code.ljust(440, b"\0") + struct.pack("<IH", signature, 0) + table
    return record + b"\x55\xaa"
