"""The `kernel+initrd` format: NAME-kernel, NAME-initrd.img, NAME-cmdline.

The initrd is the whole tree as a newc cpio, compressed with what the kernel
can unpack (zstd when its config says CONFIG_RD_ZSTD=y, else gzip) unless
told otherwise; boot/kernel is left out (it is NAME-kernel), and CPU
microcode, when the spec names one, goes first and uncompressed, where the
kernel looks for it.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from osbuilder.errors import UserError
from osbuilder.formats.compression import compressed_writer, default_compression
from osbuilder.formats.cpio import write_cpio

if TYPE_CHECKING:
    from osbuilder.assemble.entry import Content
    from osbuilder.assemble.system import AssembledSystem
    from osbuilder.formats.outputfile import Output, OutputDirectory

SPLIT_OUT = frozenset({"boot/kernel", "boot/ucode.cpio"})
COPY_CHUNK = 1 << 20


def write_kernel_initrd(
    system: AssembledSystem, directory: OutputDirectory, name: str, compression: str | None
) -> list[Output]:
    parts = system.kernel
    if parts.kernel is None:
        raise UserError(
            "kernel+initrd needs a kernel: give the spec a `kernel: image:`, "
            "or build another format (-f tar)"
        )
    chosen = compression or default_compression(parts.config)
    kernel, initrd, cmdline = (f"{name}-{suffix}" for suffix in ("kernel", "initrd.img", "cmdline"))
    # The kernel is copied (read, hashed, written, flushed to disk: all without the GIL)
    # on a helper thread while the initrd is compressed: it rides on what compression
    # leaves idle.
    with ThreadPoolExecutor(1, thread_name_prefix="kernel") as helper:
        copied = helper.submit(_copy, parts.kernel, directory, kernel)
        with directory.create(initrd) as initrd_out:
            if parts.ucode is not None:
                with parts.ucode.open() as source:
                    shutil.copyfileobj(source, initrd_out, COPY_CHUNK)
            with compressed_writer(initrd_out, chosen) as stream:  # type: ignore[arg-type]
                write_cpio((e for e in system.tree.walk() if e.path not in SPLIT_OUT), stream)
        with directory.create(cmdline) as cmdline_out:
            cmdline_out.write(parts.cmdline.encode())
        return [copied.result(), initrd_out.result(), cmdline_out.result()]


def _copy(content: Content, directory: OutputDirectory, name: str) -> Output:
    with directory.create(name) as out, content.open() as source:
        shutil.copyfileobj(source, out, COPY_CHUNK)
    return out.result()
