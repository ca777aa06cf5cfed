"""Output writers: one module per output family, and the table naming them.

A writer takes one build's WriteJob (formats/job.py: the assembled system, the output
directory, the name) and creates its files in the output directory
(outputfile.OutputDirectory: they appear together once the whole build has
succeeded). The boot-media formats and tar-kernel-initrd share the kernel and
initrd staged once per build (formats/staging.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from osbuilder.formats.job import WriteJob
    from osbuilder.formats.outputfile import Output

# (This module stays light: importing any module of the package, e.g. the compression that
# bench/build.py's floor times alone, imports it first.)

Writer = Callable[["WriteJob"], list["Output"]]

# Format name -> (module, writer) in this package, imported only when the format is built
# (some bring zstandard, some external tools). The files each writes: LinuxKit's names.
FORMATS: dict[str, tuple[str, str]] = {
    "kernel+initrd": ("kernel_initrd", "write_kernel_initrd"),  # NAME-kernel, -initrd.img, -cmdline
    "tar-kernel-initrd": ("kernel_tar", "write_tar_kernel_initrd"),  # NAME-initrd.tar
    # NAME-kernel, -squashfs.img, -squashfs-initrd.img (the boot stage), -cmdline
    "kernel+squashfs": ("squashfs", "write_kernel_squashfs"),
    # NAME-kernel, -erofs.img, -erofs-initrd.img (the boot stage), -cmdline
    "kernel+erofs": ("kernel_erofs", "write_kernel_erofs"),
    "tar": ("rootfs_tar", "write_rootfs_tar"),  # NAME.tar
    "iso-bios": ("iso", "write_iso_bios"),  # NAME.iso
    "raw-bios": ("disk", "write_raw_bios"),  # NAME-bios.img
    "qcow2-bios": ("disk", "write_qcow2_bios"),  # NAME.qcow2
    "vhd": ("disk", "write_vhd"),  # NAME.vhd
    "dynamic-vhd": ("disk", "write_dynamic_vhd"),  # NAME-dynamic.vhd
    "vmdk": ("disk", "write_vmdk"),  # NAME.vmdk
    "aws": ("disk", "write_aws"),  # NAME.raw
    "gcp": ("gcp", "write_gcp"),  # NAME.img.tar.gz
    "iso-efi": ("iso", "write_iso_efi"),  # NAME-efi.iso
    "iso-efi-initrd": ("iso", "write_iso_efi_initrd"),  # NAME-efi-initrd.iso (iso-efi's image)
    "raw-efi": ("disk", "write_raw_efi"),  # NAME-efi.img
    "qcow2-efi": ("disk", "write_qcow2_efi"),  # NAME-efi.qcow2
}


def writer(format_name: str) -> Writer:
    """The function that writes `format_name` (one of FORMATS)."""
    module, function = FORMATS[format_name]
    return cast("Writer", getattr(importlib.import_module(f"{__name__}.{module}"), function))


FORMAT_NAMES = tuple(FORMATS)
BOOT_MEDIA = frozenset(
    {
        "iso-bios",
        "raw-bios",
        "qcow2-bios",
        "vhd",
        "dynamic-vhd",
        "vmdk",
        "aws",
        "gcp",
        "iso-efi",
        "iso-efi-initrd",
        "raw-efi",
        "qcow2-efi",
    }
)
# The formats that take the kernel and initrd staged once per build (kernel+initrd copies
# them from there too, rather than compress the tree again).
STAGED_BOOT_FILES = BOOT_MEDIA | {"tar-kernel-initrd"}
# The media that can keep the root on a squashfs partition (--root squashfs): the disks.
SQUASHFS_ROOT_MEDIA = BOOT_MEDIA - {"iso-bios", "iso-efi", "iso-efi-initrd"}
# What the media's boot loaders boot: SYSLINUX and the x86-64 EFI stub.
MEDIA_ARCHITECTURES = frozenset({"amd64"})
