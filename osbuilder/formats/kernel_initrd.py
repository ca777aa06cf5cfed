"""The `kernel+initrd` format: NAME-kernel, NAME-initrd.img, NAME-cmdline.

The initrd is the whole tree as a newc cpio, compressed with what the kernel
can unpack (zstd when its config says CONFIG_RD_ZSTD=y, else gzip) unless
told otherwise; boot/kernel is left out (it is NAME-kernel), and CPU
microcode, when the spec names one, goes first and uncompressed, where the
kernel looks for it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from osbuilder.atomicfile import atomic_output
from osbuilder.errors import UserError
from osbuilder.formats.compression import compressed_writer, default_compression
from osbuilder.formats.cpio import write_cpio

if TYPE_CHECKING:
    from osbuilder.assemble.system import AssembledSystem

SPLIT_OUT = frozenset({"boot/kernel", "boot/ucode.cpio"})


def write_kernel_initrd(
    system: AssembledSystem, directory: Path, name: str, compression: str | None
) -> list[Path]:
    parts = system.kernel
    if parts.kernel is None:
        raise UserError(
            "kernel+initrd needs a kernel: give the spec a `kernel: image:`, "
            "or build another format (-f tar)"
        )
    chosen = compression or default_compression(parts.config)
    kernel, initrd, cmdline = (
        directory / f"{name}-{suffix}" for suffix in ("kernel", "initrd.img", "cmdline")
    )
    with atomic_output(kernel) as out, parts.kernel.open() as source:
        shutil.copyfileobj(source, out, 1024 * 1024)
    with atomic_output(initrd) as out:
        if parts.ucode is not None:
            with parts.ucode.open() as source:
                shutil.copyfileobj(source, out, 1024 * 1024)
        with compressed_writer(out, chosen) as stream:  # type: ignore[arg-type]
            write_cpio((e for e in system.tree.walk() if e.path not in SPLIT_OUT), stream)
    with atomic_output(cmdline) as out:
        out.write(parts.cmdline.encode())
    return [kernel, initrd, cmdline]
