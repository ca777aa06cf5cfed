"""The formats osbuilder writes: one record per format, and what is derived from them.

Everything else that lists formats (the build's checks, the help texts of `build` and
`run`, the job's questions, the tables of README.md and docs/formats.md, rendered by
formats/reference.py) reads these records; a unit test checks that each writer writes
exactly the files its record names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, cast

if TYPE_CHECKING:
    from osbuilder.formats.job import WriteJob
    from osbuilder.formats.outputfile import Output

Writer = Callable[["WriteJob"], list["Output"]]
# What boots the format: nothing (the files are handed to a VM, PXE, or unpacked), or a
# firmware's boot loader on the medium.
Medium = Literal["none", "BIOS", "UEFI"]
# Where the running system's root filesystem is: unpacked from the initrd into memory, on
# a read-only squashfs or EROFS image (under a tmpfs overlay), or nowhere (a tar of it).
Root = Literal["initrd", "squashfs", "erofs", "tar"]
# The roots `--verity` can give a dm-verity hash tree: read-only images on a disk. An
# initrd is unpacked into memory by the kernel before anything could check it.
VERITY_ROOTS: tuple[Root, ...] = ("squashfs", "erofs")


@dataclass(frozen=True)
class Format:
    name: str  # what -f takes
    module: str  # this package's module with the writer: imported only when the format is built
    function: str  # (some writers bring zstandard, some external tools)
    files: tuple[str, ...]  # the files it writes, built alone: {name} is the build's --name
    summary: str  # one line: what it is for
    medium: Medium = "none"
    root: Root = "initrd"
    architectures: tuple[str, ...] | None = None  # None: any osbuilder builds for
    staged_boot_files: bool = False  # takes the kernel and initrd staged once per build
    squashfs_root: bool = False  # --root squashfs can put its root on a squashfs partition
    notes: str = ""  # what a user of it needs to know beyond the summary (docs/formats.md)

    def root_with(self, root_option: str) -> Root:
        """Where its root is when built with `--root root_option`."""
        return "squashfs" if self.squashfs_root and root_option == "squashfs" else self.root

    @property
    def carries_verity(self) -> bool:
        """Whether `--verity` can apply to it (the disks: with --root squashfs)."""
        return self.root in VERITY_ROOTS or self.squashfs_root

    @property
    def is_boot_medium(self) -> bool:
        """Whether a firmware boots it (it embeds the kernel and initrd)."""
        return self.medium != "none"

    def writer(self) -> Writer:
        """The function that writes this format (its module imported now)."""
        module = importlib.import_module(f"osbuilder.formats.{self.module}")
        return cast("Writer", getattr(module, self.function))

    def file_names(self, name: str) -> list[str]:
        """The files this format writes for the output name `name`."""
        return [template.format(name=name) for template in self.files]


# The PCR 11 value (JSON) the UEFI media's unified kernel image will leave (formats/uki.py).
UKI_PCRS_FILE = "{name}-efi.pcrs.json"
# What the media's boot loaders boot: SYSLINUX and the x86-64 EFI stub.
_PC = ("amd64",)


def _disk(
    name: str,
    function: str,
    file: str,
    summary: str,
    medium: Medium = "BIOS",
    module: str = "disk",
    notes: str = "",
) -> Format:
    """A disk format: raw-bios's disk (SYSLINUX in an MBR partition) or raw-efi's (a unified
    kernel image in a GPT's EFI system partition), as it is or wrapped."""
    return Format(
        name,
        module,
        function,
        _with_pcrs(medium, file),
        summary,
        medium,
        architectures=_PC,
        staged_boot_files=True,
        squashfs_root=True,
        notes=notes,
    )


def _iso(name: str, function: str, file: str, medium: Medium, summary: str) -> Format:
    """An ISO 9660 image: its root stays in the initrd whatever --root says."""
    return replace(_disk(name, function, file, summary, medium, "iso"), squashfs_root=False)


def _with_pcrs(medium: Medium, file: str) -> tuple[str, ...]:
    """A medium's file, and with a unified kernel image (UEFI) the PCR 11 its stub will
    measure (formats/uki.py)."""
    return (file, UKI_PCRS_FILE) if medium == "UEFI" else (file,)


# In the order `build --help` lists them. LinuxKit's names, and the files LinuxKit writes.
FORMATS: dict[str, Format] = {
    record.name: record
    for record in (
        Format(
            "kernel+initrd",
            "kernel_initrd",
            "write_kernel_initrd",
            ("{name}-kernel", "{name}-initrd.img", "{name}-cmdline"),
            "for `-kernel`/`-initrd`, PXE, `osbuilder run`",
            notes="The initrd is the whole tree as a newc cpio, zstd-compressed when the "
            "kernel's config has `CONFIG_RD_ZSTD=y`, else gzip (`--compress` chooses); CPU "
            "microcode, when the spec names one, goes first and uncompressed.",
        ),
        Format(
            "tar-kernel-initrd",
            "kernel_tar",
            "write_tar_kernel_initrd",
            ("{name}-initrd.tar",),
            "LinuxKit's one tar of kernel+initrd's files: `kernel`, `initrd.img`, `cmdline` "
            "(and `ucode.cpio`: microcode kept apart, as LinuxKit does)",
            staged_boot_files=True,
            notes="One ustar archive (members 0644, 0:0, `SOURCE_DATE_EPOCH`) of the same "
            "staged kernel and initrd: a build with kernel+initrd or a medium compresses the "
            "tree once.",
        ),
        Format(
            "kernel+squashfs",
            "squashfs",
            "write_kernel_squashfs",
            (
                "{name}-kernel",
                "{name}-squashfs.img",
                "{name}-squashfs-initrd.img",  # the boot stage that mounts the image
                "{name}-cmdline",
            ),
            "the root on a read-only squashfs disk, read on demand instead of unpacked into memory",
            root="squashfs",
            notes="An initrd is unpacked whole into memory before anything runs; a squashfs "
            "root is read from its disk as needed (the Redis OS: 160 MB as "
            "kernel+initrd, 96 MB as kernel+squashfs). The image is made by `tar2sqfs` "
            "(squashfs-tools-ng), zstd blocks when the kernel's config has "
            "`CONFIG_SQUASHFS_ZSTD=y`, else gzip (`--compress gzip|zstd` chooses). "
            "`NAME-squashfs-initrd.img` is the boot stage (under 2 MB; about 4 with "
            "`--verity`, which adds the system's dmsetup and its libraries): the system's own "
            "static `/bin/busybox` (a system without one is refused), the modules that reach "
            "the root, and an `/init` that mounts it from `root=/dev/NAME` or else the first "
            "disk holding a squashfs (waiting up to `osbuilder.rootwait=SECONDS`, 30) under a "
            "tmpfs overlay, then starts the system's `/init`.",
        ),
        Format(
            "kernel+erofs",
            "kernel_erofs",
            "write_kernel_erofs",
            ("{name}-kernel", "{name}-erofs.img", "{name}-erofs-initrd.img", "{name}-cmdline"),
            "the same with the root in an uncompressed EROFS image",
            root="erofs",
            notes="osbuilder writes the EROFS image itself, uncompressed: larger than "
            "squashfs's (122 MB against 34 MB for the Redis OS) but written in a fraction of "
            "the time and read without decompressing. `NAME-erofs-initrd.img` is its boot "
            "stage, as kernel+squashfs's.",
        ),
        Format(
            "tar",
            "rootfs_tar",
            "write_rootfs_tar",
            ("{name}.tar",),
            "the root filesystem, each entry annotated with its source",
            root="tar",
            notes="Each entry carries `OSBUILDER.source` and `OSBUILDER.location` PAX "
            "records, like LinuxKit's.",
        ),
        _iso(
            "iso-bios",
            "write_iso_bios",
            "{name}.iso",
            "BIOS",
            "hybrid ISO 9660: boots as a CD (ISOLINUX) or written to a disk",
        ),
        _disk(
            "raw-bios",
            "write_raw_bios",
            "{name}-bios.img",
            "MBR disk, one active FAT partition with SYSLINUX, kernel and initrd",
        ),
        _disk(
            "qcow2-bios",
            "write_qcow2_bios",
            "{name}.qcow2",
            "the raw-bios disk as qcow2 (`qemu-img`), for QEMU and clouds",
        ),
        _disk(
            "vhd",
            "write_vhd",
            "{name}.vhd",
            "the raw-bios disk as a fixed VHD, for Hyper-V and Azure (footer time and UUID "
            "from the build)",
        ),
        _disk(
            "dynamic-vhd",
            "write_dynamic_vhd",
            "{name}-dynamic.vhd",
            "the raw-bios disk as a dynamic VHD: only the blocks written take room (Hyper-V, "
            "Virtual PC)",
        ),
        _disk(
            "vmdk",
            "write_vmdk",
            "{name}.vmdk",
            "the raw-bios disk as a monolithic sparse VMDK, for VMware (its CID from the build)",
        ),
        _disk(
            "aws",
            "write_aws",
            "{name}.raw",
            "the raw-bios disk under LinuxKit's name for EC2's import (`aws ec2 "
            "import-snapshot`, format RAW)",
        ),
        _disk(
            "gcp",
            "write_gcp",
            "{name}.img.tar.gz",
            "Google Compute Engine's image archive: the raw-bios disk as `disk.raw`, grown to "
            "whole GiB, in a sparse GNU tar, gzip'd",
            module="gcp",
            notes="Compute Engine imports it with `gcloud compute images create NAME "
            "--source-uri gs://BUCKET/NAME.img.tar.gz`; its serial console is `ttyS0`. "
            "`osbuilder run NAME.img.tar.gz` unpacks `disk.raw` into the state directory "
            "and boots it.",
        ),
        _iso(
            "iso-efi",
            "write_iso_efi",
            "{name}-efi.iso",
            "UEFI",
            "ISO 9660 booting on UEFI as a CD or a disk: its El Torito image is raw-efi's EFI "
            "system partition",
        ),
        _iso(
            "iso-efi-initrd",
            "write_iso_efi_initrd",
            "{name}-efi-initrd.iso",
            "UEFI",
            "the same image under LinuxKit's name for its kernel+initrd UEFI ISO",
        ),
        _disk(
            "raw-efi",
            "write_raw_efi",
            "{name}-efi.img",
            "GPT disk, one EFI system partition whose `EFI/BOOT/BOOTX64.EFI` is a unified "
            "kernel image",
            "UEFI",
        ),
        _disk(
            "qcow2-efi", "write_qcow2_efi", "{name}-efi.qcow2", "the raw-efi disk as qcow2", "UEFI"
        ),
    )
}
DEFAULT_FORMAT = "kernel+initrd"


def names(formats: Iterable[Format]) -> list[str]:
    return [record.name for record in formats]


def boot_media() -> list[Format]:
    """The formats a firmware boots: ISOs and disks."""
    return [record for record in FORMATS.values() if record.is_boot_medium]


def squashfs_root_media() -> list[Format]:
    """The formats --root squashfs applies to: the disks."""
    return [record for record in FORMATS.values() if record.squashfs_root]


def verity_formats() -> list[Format]:
    """The formats --verity applies to: kernel+squashfs, kernel+erofs, the disks."""
    return [record for record in FORMATS.values() if record.carries_verity]


def root_image_formats() -> list[Format]:
    """The formats whose root is a read-only image beside their kernel (kernel+squashfs,
    kernel+erofs): what `run` attaches as a disk."""
    return [r for r in rooted_in("squashfs", "erofs") if not r.is_boot_medium]


def rooted_in(*roots: Root) -> list[Format]:
    """The formats whose root is in one of `roots` (the disks' is "initrd": by default)."""
    return [record for record in FORMATS.values() if record.root in roots]
