"""Output writers: one module per output family, and the table naming them.

A writer takes one build's WriteJob (the assembled system, the output
directory, the name) and creates its files in the output directory
(outputfile.OutputDirectory: they appear together once the whole build has
succeeded). The boot-media formats share the kernel and initrd staged once
per build (formats/staging.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

if TYPE_CHECKING:
    from osbuilder.assemble.system import AssembledSystem
    from osbuilder.formats.compression import Compression
    from osbuilder.formats.outputfile import Output, OutputDirectory


@dataclass(frozen=True)
class WriteOptions:
    compression: Compression | None = None  # None: the best the kernel can unpack


T = TypeVar("T")


@dataclass
class WriteJob:
    """One build's writing, handed to each format's writer."""

    system: AssembledSystem
    outputs: OutputDirectory
    name: str
    options: WriteOptions
    formats: tuple[str, ...]  # every format this build writes
    epoch: int  # SOURCE_DATE_EPOCH: the time of everything the writers generate
    scratch: Path  # a private directory for intermediate files, removed with the build
    _made: dict[str, object] = field(default_factory=dict)

    def once(self, what: str, make: Callable[[], T]) -> T:
        """What `make` makes (an intermediate file several formats take), made on the
        first call for `what` only."""
        if what not in self._made:
            self._made[what] = make()
        return cast(T, self._made[what])

    def writes_boot_media(self) -> bool:
        """Whether a format of this build embeds the kernel and initrd in a medium."""
        return any(name in BOOT_MEDIA for name in self.formats)


Writer = Callable[[WriteJob], list["Output"]]


def _kernel_initrd(job: WriteJob) -> list[Output]:
    from osbuilder.formats.kernel_initrd import write_kernel_initrd

    return write_kernel_initrd(job)


def _tar(job: WriteJob) -> list[Output]:
    from osbuilder.formats.rootfs_tar import write_rootfs_tar

    return write_rootfs_tar(job.system, job.outputs, job.name)


def _iso_bios(job: WriteJob) -> list[Output]:
    from osbuilder.formats.iso import write_iso_bios

    return write_iso_bios(job)


def _iso_efi(job: WriteJob) -> list[Output]:
    from osbuilder.formats.iso import write_iso_efi

    return write_iso_efi(job)


def _raw_bios(job: WriteJob) -> list[Output]:
    from osbuilder.formats.disk import write_raw_bios

    return write_raw_bios(job)


def _qcow2_bios(job: WriteJob) -> list[Output]:
    from osbuilder.formats.disk import write_qcow2_bios

    return write_qcow2_bios(job)


def _vhd(job: WriteJob) -> list[Output]:
    from osbuilder.formats.disk import write_vhd

    return write_vhd(job)


def _raw_efi(job: WriteJob) -> list[Output]:
    from osbuilder.formats.disk import write_raw_efi

    return write_raw_efi(job)


def _qcow2_efi(job: WriteJob) -> list[Output]:
    from osbuilder.formats.disk import write_qcow2_efi

    return write_qcow2_efi(job)


# Format name -> writer; the file each writes is in its module (LinuxKit's names).
FORMATS: dict[str, Writer] = {
    "kernel+initrd": _kernel_initrd,  # NAME-kernel, NAME-initrd.img, NAME-cmdline
    "tar": _tar,  # NAME.tar
    "iso-bios": _iso_bios,  # NAME.iso
    "raw-bios": _raw_bios,  # NAME-bios.img
    "qcow2-bios": _qcow2_bios,  # NAME.qcow2
    "vhd": _vhd,  # NAME.vhd
    "iso-efi": _iso_efi,  # NAME-efi.iso
    "raw-efi": _raw_efi,  # NAME-efi.img
    "qcow2-efi": _qcow2_efi,  # NAME-efi.qcow2
}
FORMAT_NAMES = tuple(FORMATS)
BOOT_MEDIA = frozenset(
    {"iso-bios", "raw-bios", "qcow2-bios", "vhd", "iso-efi", "raw-efi", "qcow2-efi"}
)
# What the media's boot loaders boot: SYSLINUX and the x86-64 EFI stub.
MEDIA_ARCHITECTURES = frozenset({"amd64"})
