"""The kernel and initrd as files, for the formats that put them on a boot medium.

Staged once per build in its scratch directory however many formats take them, and
hashed as written: their digests give each medium a stable identity (volume ID, disk
signature) without reading them again.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from msgspec import Struct

from osbuilder.formats.boot_stage import SQUASHFS, boot_stage
from osbuilder.formats.initrd import initrd_compression, kernel_parts, write_initrd
from osbuilder.formats.outputfile import COPY_CHUNK, scratch_file
from osbuilder.formats.squashfs_root import squashfs_root

if TYPE_CHECKING:
    from osbuilder.formats.job import WriteJob


class BootFiles(Struct, frozen=True):
    kernel: Path
    initrd: Path  # with --root squashfs, kernel+squashfs's boot stage
    cmdline: str  # with --verity, the root's verity word after the kernel's
    identity: int  # 32 bits from the kernel's, initrd's (and root's) digests and the cmdline
    root: Path | None = None  # --root squashfs: the root's squashfs image


def boot_files(job: WriteJob) -> BootFiles:
    """The build's kernel, initrd and cmdline as files (staged on first use)."""
    return job.once("boot files", lambda: _stage(job))


def _stage(job: WriteJob) -> BootFiles:
    parts = kernel_parts(job.system)
    assert parts.kernel is not None
    kernel, initrd = job.scratch / "kernel", job.scratch / "initrd.img"
    with scratch_file(kernel) as out, parts.kernel.open() as source:
        shutil.copyfileobj(source, out, COPY_CHUNK)
    kernel_digest = out.sha256()
    compression = initrd_compression(job.system, job.options.compression)
    root = None
    cmdline = parts.cmdline
    if job.options.root == "squashfs":
        root = squashfs_root(job)
        with scratch_file(initrd) as out:
            write_initrd(job.system, out, compression, boot_stage(job, SQUASHFS))
        if root.verity is not None:
            cmdline = " ".join(filter(None, [cmdline, root.verity.cmdline_word(SQUASHFS.name)]))
    else:
        with scratch_file(initrd) as out:
            write_initrd(job.system, out, compression)
    digests = [kernel_digest, out.sha256(), *([root.sha256] if root else [])]
    identity = hashlib.sha256(" ".join([*digests, cmdline]).encode())
    return BootFiles(
        kernel,
        initrd,
        cmdline,
        int.from_bytes(identity.digest()[:4], "big"),
        root.path if root else None,
    )
