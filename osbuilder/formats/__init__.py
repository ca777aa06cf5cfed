"""Output writers: one module per output family, and the table naming them.

A writer takes the assembled system and creates its files in the output
directory (outputfile.OutputDirectory: they appear together once the whole
build has succeeded).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from osbuilder.assemble.system import AssembledSystem
    from osbuilder.formats.outputfile import Output, OutputDirectory


@dataclass(frozen=True)
class WriteOptions:
    compression: str | None = None  # None: the best the kernel can unpack


Writer = Callable[["AssembledSystem", "OutputDirectory", str, WriteOptions], list["Output"]]


def _kernel_initrd(
    system: AssembledSystem, directory: OutputDirectory, name: str, options: WriteOptions
) -> list[Output]:
    from osbuilder.formats.kernel_initrd import write_kernel_initrd

    return write_kernel_initrd(system, directory, name, options.compression)


def _tar(
    system: AssembledSystem, directory: OutputDirectory, name: str, options: WriteOptions
) -> list[Output]:
    from osbuilder.formats.rootfs_tar import write_rootfs_tar

    return write_rootfs_tar(system, directory, name)


FORMATS: dict[str, Writer] = {
    "kernel+initrd": _kernel_initrd,
    "tar": _tar,
}
FORMAT_NAMES = tuple(FORMATS)
