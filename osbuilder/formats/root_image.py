"""A root filesystem's read-only image as the formats take it: kernel+squashfs's and
kernel+erofs's NAME-FS.img, the disks' root partition with `--root squashfs`.

Made once per build in the scratch directory (formats/squashfs_root.py, erofs_root.py)
and, with `--verity`, followed by its dm-verity hash tree (formats/verity.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from msgspec import Struct

from osbuilder.formats.verity import VerityTree, add_hash_tree

if TYPE_CHECKING:
    from osbuilder.formats.job import WriteJob


class RootImage(Struct, frozen=True):
    path: Path
    sha256: str  # of the file system's image, before any hash tree
    verity: VerityTree | None = None  # --verity: the tree after it, in the same file


def finish_root_image(job: WriteJob, path: Path, sha256: str) -> RootImage:
    """The root's image `path` (whose digest is `sha256`), with its hash tree if the
    build asks for one."""
    return RootImage(path, sha256, add_hash_tree(path, sha256) if job.options.verity else None)
