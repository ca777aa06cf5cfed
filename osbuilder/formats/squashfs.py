"""The `kernel+squashfs` format: NAME-kernel, NAME-squashfs.img, NAME-squashfs-initrd.img,
NAME-cmdline.

The root filesystem is a squashfs image (formats/squashfs_root.py), a read-only disk the
guest reads on demand, instead of an initrd unpacked whole into memory: a system's size no
longer costs its RAM, nor its boot the time to unpack it. NAME-squashfs-initrd.img is the
small boot stage that mounts it (formats/boot_stage.py): LinuxKit's kernel+squashfs has
none because its kernels have the drivers built in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from osbuilder.formats.boot_stage import SQUASHFS
from osbuilder.formats.kernel_root import write_kernel_root
from osbuilder.formats.staging import boot_files

if TYPE_CHECKING:
    from osbuilder.formats.job import WriteJob
    from osbuilder.formats.outputfile import Output


def write_kernel_squashfs(job: WriteJob) -> list[Output]:
    # The disks of --root squashfs staged this very boot stage as their initrd.
    staged = job.options.root == "squashfs" and job.writes_boot_media()
    return write_kernel_root(job, SQUASHFS, (lambda: boot_files(job).initrd) if staged else None)
