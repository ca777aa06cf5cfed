"""The root filesystem as an EROFS image: kernel+erofs's NAME-erofs.img.

osbuilder writes the image itself (formats/erofs.py), uncompressed. Its UUID is taken
from its own contents: the image is reproducible like every output.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from osbuilder.errors import cannot_write
from osbuilder.formats.erofs import set_uuid, write_erofs
from osbuilder.formats.initrd import root_entries
from osbuilder.formats.outputfile import scratch_file
from osbuilder.formats.root_image import RootImage, finish_root_image

if TYPE_CHECKING:
    from osbuilder.formats.job import WriteJob


def erofs_root(job: WriteJob) -> RootImage:
    """The root's EROFS image in the scratch directory (with its hash tree for --verity),
    made once per build."""
    return job.once("erofs root", lambda: _make_erofs_root(job))


def _make_erofs_root(job: WriteJob) -> RootImage:
    """The image, its UUID set once its bytes (hashed as they are written) are known."""
    image = job.scratch / "root.erofs"
    with scratch_file(image) as out:
        write_erofs(root_entries(job.system), out, epoch=job.epoch, uuid=bytes(16))
    digest = bytes.fromhex(out.sha256())
    # A UUID the same bytes always get and other contents do not (version 4's layout).
    try:
        set_uuid(image, uuid.UUID(bytes=digest[:16], version=4).bytes)
    except OSError as exc:
        raise cannot_write(image, exc) from None
    return finish_root_image(job, image, digest.hex())
