"""Data disks: `osbuilder run --disk [file=]PATH[,size=SIZE][,format=qcow2|raw]`.

LinuxKit's `-disk`: each one becomes a writable virtio disk of the VM, after the boot
medium if there is one. A disk that does not exist is created (qcow2 unless told,
SIZE in GB, or with an M or G suffix); without a PATH it is STATE/disk.img,
STATE/disk1.img ... so that the next run of the same system finds its data again.
Formatting and mounting it is the guest's business (the format and mount packages).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from msgspec import Struct

from osbuilder.errors import UserError
from osbuilder.runner import run

DISK_FORMATS = ("qcow2", "raw")
QCOW2_MAGIC = b"QFI\xfb"
_SIZE = re.compile(r"(?P<number>\d+)(?P<unit>[MG]?)", re.IGNORECASE)
MIN_SIZE = 1 << 20


class DataDisk(Struct, frozen=True):
    path: Path
    size: int | None = None  # bytes: the size to create it with when it does not exist
    format: str | None = None  # None: qcow2 when created, else what the file holds

    def drive_format(self) -> str:
        """QEMU's format for the disk, which must exist by now."""
        return self.format or detect_format(self.path)


def default_disk_path(state: Path, index: int) -> Path:
    return state / ("disk.img" if index == 0 else f"disk{index}.img")


def parse_disk(text: str, default_path: Path) -> DataDisk:
    """`[file=]PATH[,size=SIZE][,format=FORMAT]`, every part optional but one."""
    path: Path | None = None
    size: int | None = None
    disk_format: str | None = None
    for number, part in enumerate(text.split(",")):
        key, sep, value = part.partition("=")
        if not sep and number == 0 and part:
            key, value = "file", part
        if key == "file" and value and path is None:
            path = Path(value)
        elif key == "size" and size is None:
            size = parse_size(value, text)
        elif key == "format" and disk_format is None:
            if value not in DISK_FORMATS:
                raise UserError(f"--disk {text!r}: format must be {' or '.join(DISK_FORMATS)}")
            disk_format = value
        else:
            raise UserError(
                f"--disk {text!r}: {part!r} is not understood; "
                "use [file=]PATH[,size=SIZE][,format=qcow2|raw], e.g. file=data.qcow2,size=1G"
            )
    return DataDisk(path or default_path, size, disk_format)


def parse_size(value: str, text: str) -> int:
    """LinuxKit's sizes: GB unless suffixed with M (or G)."""
    match = _SIZE.fullmatch(value)
    if match is None:
        raise UserError(f"--disk {text!r}: size must be a number of GB, or end in M or G (512M)")
    unit = 1 << (20 if match["unit"].upper() == "M" else 30)
    size = int(match["number"]) * unit
    if size < MIN_SIZE:
        raise UserError(f"--disk {text!r}: size must be at least 1M")
    return size


def detect_format(path: Path) -> str:
    with path.open("rb") as disk:
        return "qcow2" if disk.read(4) == QCOW2_MAGIC else "raw"


def prepare_disks(disks: list[DataDisk]) -> None:
    """Check the disks that exist, create the others; one clear line for what cannot be."""
    seen: set[Path] = set()
    for disk in disks:
        resolved = disk.path.resolve()
        if resolved in seen:
            raise UserError(f"--disk {disk.path}: given twice")
        seen.add(resolved)
        if disk.path.exists():
            _check_existing(disk)
        else:
            _create(disk)


def _check_existing(disk: DataDisk) -> None:
    if disk.path.is_dir():
        raise UserError(f"--disk {disk.path}: is a directory, not a disk image")
    try:
        found = detect_format(disk.path)
    except OSError as exc:
        raise UserError(f"--disk {disk.path}: cannot read it: {exc.strerror}") from None
    if disk.format == "raw" and found == "qcow2":
        # Attached as raw, the guest would see (and could overwrite) the qcow2 structure.
        raise UserError(f"--disk {disk.path}: is a qcow2 image; drop format=raw")


def _create(disk: DataDisk) -> None:
    if disk.size is None:
        raise UserError(
            f"--disk {disk.path}: no such file; give a size to create it "
            f"(--disk file={disk.path},size=1G)"
        )
    if not disk.path.parent.is_dir():
        raise UserError(f"--disk {disk.path}: {disk.path.parent} is not a directory")
    try:
        run(
            [
                "qemu-img",
                "create",
                "-q",
                "-f",
                disk.format or "qcow2",
                str(disk.path),
                str(disk.size),
            ]
        )
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            disk.path.unlink()  # never a half-made disk that the next run would take
        raise
