"""What a built image file is: its medium and the firmware it needs (`run`, `push openstack`).

Known by its contents, not its name: an ISO 9660 image boots from a CD, a raw, qcow2,
VHD (fixed or dynamic) or VMDK disk from a virtio disk; an image with a GPT boots through
UEFI (OVMF), anything else through the BIOS (SeaBIOS). The first sectors of the disk in a
qcow2, dynamic VHD or VMDK are read with `qemu-img dd`. A Compute Engine image archive
(the gcp format: a gzip'd tar holding disk.raw) is no medium itself: `run` unpacks its
disk first (`unpack_image_archive`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from msgspec import Struct

from osbuilder.errors import UserError, cannot_write
from osbuilder.runner import CommandFailed, run

MEDIA = ("iso", "raw", "qcow2", "vhd", "vmdk")
FIRMWARES = ("bios", "efi")
_ISO_MAGIC = (0x8001, b"CD001")  # the primary volume descriptor's identifier
_QCOW2_MAGIC = (0, b"QFI\xfb")
_MBR_MAGIC = (0x1FE, b"\x55\xaa")
_GPT_MAGIC = (0x200, b"EFI PART")  # the GPT header, in the disk's second sector
_VHD_COOKIE = b"conectix"  # a fixed VHD: the raw disk, then a 512-byte footer
_DYNAMIC_VHD_MAGIC = (0, _VHD_COOKIE)  # a dynamic VHD starts with a copy of its footer
_VMDK_MAGIC = (0, b"KDMV")  # a sparse VMDK's header
_GZIP_MAGIC = (0, b"\x1f\x8b")  # a Compute Engine image archive is gzip'd
ARCHIVE_DISK = "disk.raw"  # the archive's member that is the disk


class MediaBoot(Struct, frozen=True):
    path: Path
    medium: str  # one of MEDIA
    firmware: str = "bios"  # one of FIRMWARES

    @classmethod
    def from_file(cls, path: Path) -> MediaBoot:
        """The boot medium `path` is (a hybrid ISO is an ISO), or a clear error."""
        head = _head(path)
        if _has(head, _ISO_MAGIC):  # (iso-efi's has a GPT for booting it as a disk)
            return cls(path, "iso", _firmware(head))
        if _has(head, _QCOW2_MAGIC):
            return cls(path, "qcow2", _firmware(_disk_head(path, "qcow2")))
        if _has(head, _DYNAMIC_VHD_MAGIC):
            return cls(path, "vhd", _firmware(_disk_head(path, "vpc")))
        if _has(head, _VMDK_MAGIC):
            return cls(path, "vmdk", _firmware(_disk_head(path, "vmdk")))
        if _has(head, _MBR_MAGIC):  # a GPT disk has one too: its protective MBR
            medium = "vhd" if _tail(path).startswith(_VHD_COOKIE) else "raw"
            return cls(path, medium, _firmware(head))
        if _has(head, _GZIP_MAGIC):
            raise UserError(
                f"{path}: a gzip'd file (a gcp image archive?), not a disk image; unpack its "
                f"{ARCHIVE_DISK} (tar -xzf) and give that"
            )
        raise UserError(
            f"{path}: not a bootable image (ISO, MBR or GPT disk, qcow2, VHD, VMDK); give the "
            "PREFIX of a kernel+initrd build (e.g. output/redis) or an .iso, .img, .qcow2, "
            ".vhd or .vmdk it built"
        )


def is_image_archive(path: Path) -> bool:
    """Whether `path` is gzip'd, as a Compute Engine image archive (gcp) is."""
    return _has(_head(path), _GZIP_MAGIC)


def unpack_image_archive(archive: Path, directory: Path) -> Path:
    """DIRECTORY/disk.raw: the disk of the Compute Engine image archive `archive`, unpacked
    by GNU tar (holes and all) in place of any earlier one."""
    disk = directory / ARCHIVE_DISK
    try:
        with tempfile.TemporaryDirectory(prefix=".unpack-", dir=directory) as scratch:
            unpacked = Path(scratch, ARCHIVE_DISK)
            _untar(archive, unpacked)
            if unpacked.is_symlink() or not unpacked.is_file():
                raise UserError(f"{archive}: its {ARCHIVE_DISK} is not a file")
            unpacked.replace(disk)
    except OSError as exc:
        raise cannot_write(disk, exc, "run it with another --state DIR") from None
    return disk


def _untar(archive: Path, member: Path) -> None:
    command = ["tar", "--extract", "--gzip", f"--file={archive}", f"--directory={member.parent}"]
    try:
        run([*command, "--no-same-owner", "--", member.name], env={"TAR_OPTIONS": ""})
    except CommandFailed as exc:
        said = exc.stderr.splitlines()[0] if exc.stderr else f"exit {exc.returncode}"
        raise UserError(f"{archive}: cannot unpack its {member.name}: {said}") from None


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            return file.read(_ISO_MAGIC[0] + len(_ISO_MAGIC[1]))
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None


def _tail(path: Path) -> bytes:
    """The last 512 bytes of `path` (a VHD's footer, if it is one)."""
    try:
        with path.open("rb") as file:
            file.seek(max(0, path.stat().st_size - 512))
            return file.read()
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None


def _has(head: bytes, mark: tuple[int, bytes]) -> bool:
    offset, magic = mark
    return head[offset : offset + len(magic)] == magic


def _firmware(disk_head: bytes) -> str:
    return "efi" if _has(disk_head, _GPT_MAGIC) else "bios"


def _disk_head(path: Path, qemu_format: str) -> bytes:
    """The first two sectors of the disk in the image `path` (QEMU's `qemu_format`)."""
    with tempfile.TemporaryDirectory(prefix="osbuilder-") as scratch:
        head = Path(scratch, "head")
        run(
            [
                "qemu-img",
                "dd",
                "-f",
                qemu_format,
                "-O",
                "raw",
                "bs=512",
                "count=2",
                f"if={path}",
                f"of={head}",
            ]
        )
        return head.read_bytes()
