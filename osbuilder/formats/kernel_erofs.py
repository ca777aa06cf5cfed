"""The `kernel+erofs` format: NAME-kernel, NAME-erofs.img, NAME-erofs-initrd.img,
NAME-cmdline.

kernel+squashfs's twin (formats/squashfs.py) with the root in an EROFS image, the
kernel's "enhanced read-only file system", as LinuxKit's kernel+erofs: the system's files
stay on a read-only disk, read on demand, and NAME-erofs-initrd.img is the boot stage that
loads the drivers and mounts it under a tmpfs overlay (formats/boot_stage.py). osbuilder
writes the image itself (formats/erofs.py), uncompressed: reads need no decompression
(the page cache maps the disk's blocks directly), at the cost of a larger image than
squashfs's compressed one. Its UUID is taken from its own contents: the image is
reproducible like every output.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from osbuilder.errors import cannot_write
from osbuilder.formats.boot_stage import EROFS
from osbuilder.formats.erofs import set_uuid, write_erofs
from osbuilder.formats.initrd import root_entries
from osbuilder.formats.kernel_root import write_kernel_root
from osbuilder.formats.outputfile import scratch_file

if TYPE_CHECKING:
    from pathlib import Path

    from osbuilder.formats.job import WriteJob
    from osbuilder.formats.outputfile import Output


def write_kernel_erofs(job: WriteJob) -> list[Output]:
    return write_kernel_root(job, EROFS, lambda: _root_image(job))


def _root_image(job: WriteJob) -> Path:
    """The root's EROFS image, in the scratch directory: its UUID is set once its bytes
    (hashed as they are written) are known."""
    image = job.scratch / "root.erofs"
    with scratch_file(image) as out:
        write_erofs(root_entries(job.system), out, epoch=job.epoch, uuid=bytes(16))
    digest = bytes.fromhex(out.sha256())
    # A UUID the same bytes always get and other contents do not (version 4's layout).
    try:
        set_uuid(image, uuid.UUID(bytes=digest[:16], version=4).bytes)
    except OSError as exc:
        raise cannot_write(image, exc) from None
    return image
