"""The root filesystem as a squashfs image: kernel+squashfs's NAME-squashfs.img, and the
second partition of the disks built with `--root squashfs`.

Made by tar2sqfs (squashfs-tools-ng) from the tree streamed to it as a PAX tar, so
contents never pass through memory or a directory on the host, and xattrs (file
capabilities), device nodes and hard links come through without privileges. Blocks are
compressed with zstd (at the initrd's level) when the kernel's config has
CONFIG_SQUASHFS_ZSTD=y, else gzip; `--compress gzip|zstd` chooses (`none` only applies to
the boot stage: squashfs has no uncompressed mode in tar2sqfs). The image is
reproducible: tar2sqfs's output depends on its input alone (whatever its thread count),
and its only own time, the superblock's, is SOURCE_DATE_EPOCH.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from osbuilder.errors import cannot_write
from osbuilder.formats.boot_stage import SQUASHFS, boot_stage
from osbuilder.formats.compression import GZIP_LEVEL, ZSTD_LEVEL
from osbuilder.formats.initrd import kernel_parts, root_entries
from osbuilder.formats.outputfile import COPY_CHUNK
from osbuilder.formats.root_image import RootImage, finish_root_image
from osbuilder.formats.tarball import write_tar
from osbuilder.runner import feed_stdin

if TYPE_CHECKING:
    from osbuilder.formats.compression import Compression
    from osbuilder.formats.job import WriteJob


def squashfs_root(job: WriteJob) -> RootImage:
    """The root filesystem as a squashfs image in the scratch directory (with its hash
    tree for --verity), made once per build (kernel+squashfs and the disks of --root
    squashfs share it)."""
    return job.once("squashfs root", lambda: _make_squashfs_root(job))


def _make_squashfs_root(job: WriteJob) -> RootImage:
    kernel_parts(job.system)  # a spec without a kernel is told so first
    boot_stage(job, SQUASHFS)  # so is a system the boot stage could not mount
    image = job.scratch / "root.squashfs"
    compressor = squashfs_compression(job.system.kernel.config, job.options.compression)
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
    digest = hashlib.sha256()
    try:
        with image.open("rb") as made:
            while chunk := made.read(COPY_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise cannot_write(image, exc) from None
    return finish_root_image(job, image, digest.hexdigest())


def squashfs_compression(kernel_config: str | None, requested: Compression | None) -> str:
    """tar2sqfs's compressor: the one asked for, else zstd when the kernel reads it."""
    if requested in ("gzip", "zstd"):
        return requested
    if kernel_config and re.search(r"^CONFIG_SQUASHFS_ZSTD=y$", kernel_config, re.MULTILINE):
        return "zstd"
    return "gzip"
