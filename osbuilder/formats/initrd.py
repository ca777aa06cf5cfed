"""The initrd: the root tree but the kernel, as a compressed newc cpio (CPU microcode
first, uncompressed), and the kernel's pieces it is written with.

What the initrd-taking formats share: kernel+initrd writes it, staging.py stages it for
the media, and the boot stage of kernel+squashfs and kernel+erofs is one too.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from osbuilder.errors import UserError
from osbuilder.formats.compression import Compression, compressed_writer, default_compression
from osbuilder.formats.cpio import write_cpio
from osbuilder.formats.outputfile import COPY_CHUNK

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import BinaryIO

    from osbuilder.assemble.entry import Entry
    from osbuilder.assemble.system import AssembledSystem, KernelParts

SPLIT_OUT = frozenset({"boot/kernel", "boot/ucode.cpio"})  # not in the initrd: beside it


def kernel_parts(system: AssembledSystem) -> KernelParts:
    """The kernel pieces, or a clear error when the spec has no kernel."""
    if system.kernel.kernel is None:
        raise UserError(
            "the spec has no kernel; give it a `kernel: image:`, or build another format (-f tar)"
        )
    return system.kernel


def initrd_compression(system: AssembledSystem, requested: Compression | None) -> Compression:
    return requested or default_compression(system.kernel.config)


def write_initrd(
    system: AssembledSystem,
    out: BinaryIO,
    compression: Compression,
    entries: Iterable[Entry] | None = None,
) -> None:
    """The initrd: CPU microcode first and uncompressed (where the kernel looks for it),
    then `entries` (by default the whole tree but the kernel) as a compressed newc cpio."""
    ucode = system.kernel.ucode
    if ucode is not None:
        with ucode.open() as source:
            shutil.copyfileobj(source, out, COPY_CHUNK)
    with compressed_writer(out, compression) as stream:
        write_cpio(root_entries(system) if entries is None else entries, stream)


def root_entries(system: AssembledSystem) -> Iterator[Entry]:
    """The root filesystem's entries, parents first: the tree but what goes beside it."""
    return (e for e in system.tree.walk() if e.path not in SPLIT_OUT)
