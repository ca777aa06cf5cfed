"""The `kernel+initrd` format: NAME-kernel, NAME-initrd.img, NAME-cmdline.

The initrd is the whole tree as a newc cpio, compressed with what the kernel
can unpack (zstd when its config says CONFIG_RD_ZSTD=y, else gzip) unless
told otherwise; boot/kernel is left out (it is NAME-kernel), and CPU
microcode, when the spec names one, goes first and uncompressed, where the
kernel looks for it (formats/initrd.py).
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from osbuilder.formats.initrd import initrd_compression, kernel_parts, write_initrd
from osbuilder.formats.outputfile import COPY_CHUNK
from osbuilder.formats.staging import boot_files

if TYPE_CHECKING:
    from osbuilder.assemble.entry import Content
    from osbuilder.formats.job import WriteJob
    from osbuilder.formats.outputfile import Output, OutputDirectory


def write_kernel_initrd(job: WriteJob) -> list[Output]:
    parts = kernel_parts(job.system)
    assert parts.kernel is not None
    directory, name = job.outputs, job.name
    kernel, initrd, cmdline = (f"{name}-{suffix}" for suffix in ("kernel", "initrd.img", "cmdline"))
    if job.stages_boot_files():
        # The media formats (or tar-kernel-initrd) of this build stage the initrd anyway:
        # copy it rather than compress the tree twice.
        staged = boot_files(job)
        return [
            copy_output(staged.kernel, directory, kernel),
            copy_output(staged.initrd, directory, initrd),
            write_output(parts.cmdline.encode(), directory, cmdline),
        ]
    # The kernel and the cmdline are written (read, hashed, written, flushed to disk: all
    # without the GIL) on a helper thread while the initrd is compressed: they ride on
    # what compression leaves idle.
    with ThreadPoolExecutor(1, thread_name_prefix="kernel") as helper:
        copied = helper.submit(copy_output, parts.kernel, directory, kernel)
        written = helper.submit(write_output, parts.cmdline.encode(), directory, cmdline)
        with directory.create(initrd) as initrd_out:
            write_initrd(
                job.system, initrd_out, initrd_compression(job.system, job.options.compression)
            )
        return [copied.result(), initrd_out.result(), written.result()]


def write_output(data: bytes, directory: OutputDirectory, name: str) -> Output:
    with directory.create(name) as out:
        out.write(data)
    return out.result()


def copy_output(content: Content | Path, directory: OutputDirectory, name: str) -> Output:
    opened = content.open("rb") if isinstance(content, Path) else content.open()
    with opened as source, directory.create(name) as out:
        shutil.copyfileobj(source, out, COPY_CHUNK)
    return out.result()
