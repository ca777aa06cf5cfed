"""The `kernel+squashfs` format: NAME-kernel, NAME-squashfs.img, NAME-squashfs-initrd.img,
NAME-cmdline.

The root filesystem is a squashfs image, a read-only disk the guest reads on demand,
instead of an initrd unpacked whole into memory: a system's size no longer costs its
RAM, nor its boot the time to unpack it. The image is made by tar2sqfs
(squashfs-tools-ng) from the tree streamed to it as a PAX tar, so contents never pass
through memory or a directory on the host, and xattrs (file capabilities), device nodes
and hard links come through without privileges. NAME-squashfs-initrd.img is the small
boot stage that mounts it (formats/boot_stage.py): LinuxKit's kernel+squashfs has none
because its kernels have the drivers built in.

Blocks are compressed with zstd (at the initrd's level) when the kernel's config has
CONFIG_SQUASHFS_ZSTD=y, else gzip; `--compress gzip|zstd` chooses (`none` only applies to
the boot stage: squashfs has no uncompressed mode in tar2sqfs). The image is
reproducible: tar2sqfs's output depends on its input alone (whatever its thread count),
and its only own time, the superblock's, is SOURCE_DATE_EPOCH.
"""

from __future__ import annotations

import re
import shutil
from typing import TYPE_CHECKING

from osbuilder.formats.boot_stage import boot_stage_entries
from osbuilder.formats.compression import GZIP_LEVEL, ZSTD_LEVEL
from osbuilder.formats.kernel_initrd import FORMAT as KERNEL_INITRD
from osbuilder.formats.kernel_initrd import copy_output
from osbuilder.formats.staging import (
    COPY_CHUNK,
    initrd_compression,
    kernel_parts,
    root_entries,
    write_initrd,
)
from osbuilder.formats.tarball import write_tar
from osbuilder.runner import feed_stdin

if TYPE_CHECKING:
    from osbuilder.formats import WriteJob
    from osbuilder.formats.compression import Compression
    from osbuilder.formats.outputfile import Output

FORMAT = "kernel+squashfs"
SQUASHFS_SUFFIX = "squashfs.img"
BOOT_STAGE_SUFFIX = "squashfs-initrd.img"


def write_kernel_squashfs(job: WriteJob) -> list[Output]:
    parts = kernel_parts(job.system, FORMAT)
    assert parts.kernel is not None
    stage = boot_stage_entries(job.system.tree, job.epoch, FORMAT)
    image = job.scratch / "root.squashfs"
    compressor = squashfs_compression(parts.config, job.options.compression)
    level = ZSTD_LEVEL if compressor == "zstd" else GZIP_LEVEL
    command = [
        "tar2sqfs",
        "--quiet",
        "--no-skip",  # a record it cannot read is an error, not a missing file
        "--compressor",
        compressor,
        "--comp-extra",
        f"level={level}",
        "--defaults",
        f"mtime={job.epoch}",  # the root directory's, which the tar does not carry
        str(image),
    ]
    with feed_stdin(command, env={"SOURCE_DATE_EPOCH": str(job.epoch)}) as stdin:
        write_tar(root_entries(job.system), stdin)
    outputs = []
    with job.outputs.create(f"{job.name}-{SQUASHFS_SUFFIX}") as out, image.open("rb") as source:
        shutil.copyfileobj(source, out, COPY_CHUNK)
    outputs.append(out.result())
    image.unlink()
    with job.outputs.create(f"{job.name}-{BOOT_STAGE_SUFFIX}") as out:
        write_initrd(
            job.system, out, initrd_compression(job.system, job.options.compression), stage
        )
    outputs.append(out.result())
    if KERNEL_INITRD not in job.formats:  # else it writes the same kernel and cmdline
        outputs.append(copy_output(parts.kernel, job.outputs, f"{job.name}-kernel"))
        with job.outputs.create(f"{job.name}-cmdline") as out:
            out.write(parts.cmdline.encode())
        outputs.append(out.result())
    return outputs


def squashfs_compression(kernel_config: str | None, requested: Compression | None) -> str:
    """tar2sqfs's compressor: the one asked for, else zstd when the kernel reads it."""
    if requested in ("gzip", "zstd"):
        return requested
    if kernel_config and re.search(r"^CONFIG_SQUASHFS_ZSTD=y$", kernel_config, re.MULTILINE):
        return "zstd"
    return "gzip"
