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

from osbuilder.errors import UserError
from osbuilder.formats.compression import Compression, compressed_writer, default_compression
from osbuilder.formats.cpio import write_cpio
from osbuilder.formats.outputfile import scratch_file

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import BinaryIO

    from osbuilder.assemble.entry import Entry
    from osbuilder.assemble.system import AssembledSystem, KernelParts
    from osbuilder.formats.job import WriteJob

SPLIT_OUT = frozenset({"boot/kernel", "boot/ucode.cpio"})  # not in the initrd: beside it
COPY_CHUNK = 1 << 20


class BootFiles(Struct, frozen=True):
    kernel: Path
    initrd: Path  # with --root squashfs, kernel+squashfs's boot stage
    cmdline: str
    identity: int  # 32 bits from the kernel's, initrd's (and root's) digests and the cmdline
    root: Path | None = None  # --root squashfs: the root's squashfs image


def kernel_parts(system: AssembledSystem, format_name: str) -> KernelParts:
    """The kernel pieces, or a clear error when the spec has no kernel."""
    if system.kernel.kernel is None:
        raise UserError(
            f"{format_name} needs a kernel: give the spec a `kernel: image:`, "
            "or build another format (-f tar)"
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


def boot_files(job: WriteJob, format_name: str) -> BootFiles:
    """The build's kernel, initrd and cmdline as files (staged on first use)."""
    return job.once("boot files", lambda: _stage(job, format_name))


def _stage(job: WriteJob, format_name: str) -> BootFiles:
    parts = kernel_parts(job.system, format_name)
    assert parts.kernel is not None
    kernel, initrd = job.scratch / "kernel", job.scratch / "initrd.img"
    with scratch_file(kernel) as out, parts.kernel.open() as source:
        shutil.copyfileobj(source, out, COPY_CHUNK)
    kernel_digest = out.sha256()
    compression = initrd_compression(job.system, job.options.compression)
    root = None
    if job.options.root == "squashfs":
        # (imported here: the squashfs format itself writes its initrd with this module)
        from osbuilder.formats.boot_stage import SQUASHFS
        from osbuilder.formats.kernel_root import boot_stage
        from osbuilder.formats.squashfs import squashfs_root

        root = squashfs_root(job, format_name)
        stage = boot_stage(job, format_name, SQUASHFS)
        with scratch_file(initrd) as out:
            write_initrd(job.system, out, compression, stage)
    else:
        with scratch_file(initrd) as out:
            write_initrd(job.system, out, compression)
    digests = [kernel_digest, out.sha256(), *([root.sha256] if root else [])]
    identity = hashlib.sha256(" ".join([*digests, parts.cmdline]).encode())
    return BootFiles(
        kernel,
        initrd,
        parts.cmdline,
        int.from_bytes(identity.digest()[:4], "big"),
        root.path if root else None,
    )
