"""The `kernel+erofs` format: NAME-kernel, NAME-erofs.img, NAME-erofs-initrd.img,
NAME-cmdline.

kernel+squashfs's twin (formats/squashfs.py) with the root in an EROFS image, the
kernel's "enhanced read-only file system", as LinuxKit's kernel+erofs: the system's files
stay on a read-only disk, read on demand, and NAME-erofs-initrd.img is the boot stage that
loads the drivers and mounts it under a tmpfs overlay (formats/boot_stage.py). osbuilder
writes the image itself (formats/erofs_root.py), uncompressed: reads need no
decompression (the page cache maps the disk's blocks directly), at the cost of a larger
image than squashfs's compressed one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from osbuilder.formats.boot_stage import EROFS
from osbuilder.formats.kernel_root import write_kernel_root

if TYPE_CHECKING:
    from osbuilder.formats.job import WriteJob
    from osbuilder.formats.outputfile import Output


def write_kernel_erofs(job: WriteJob) -> list[Output]:
    return write_kernel_root(job, EROFS)
