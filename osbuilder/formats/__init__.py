"""Output writers: one module per output family, and the table naming them.

A writer takes the assembled system and writes its files into the output
directory atomically (a temporary name, renamed once complete).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from osbuilder.assemble.system import AssembledSystem
    from osbuilder.formats.outputfile import Output


@dataclass(frozen=True)
class WriteOptions:
    compression: str | None = None  # None: the best the kernel can unpack


Writer = Callable[["AssembledSystem", Path, str, WriteOptions], list["Output"]]


def _kernel_initrd(
    system: AssembledSystem, directory: Path, name: str, options: WriteOptions
) -> list[Output]:
    from osbuilder.formats.kernel_initrd import write_kernel_initrd

    return write_kernel_initrd(system, directory, name, options.compression)


def _tar(
    system: AssembledSystem, directory: Path, name: str, options: WriteOptions
) -> list[Output]:
    from osbuilder.formats.rootfs_tar import write_rootfs_tar

    return write_rootfs_tar(system, directory, name)


FORMATS: dict[str, Writer] = {
    "kernel+initrd": _kernel_initrd,
    "tar": _tar,
}
FORMAT_NAMES = tuple(FORMATS)
