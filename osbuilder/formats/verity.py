"""dm-verity for read-only roots (`build --verity`): the hash tree after the root's image.

The image (squashfs or EROFS) is padded to whole 4 KiB blocks and `veritysetup format`
appends a hash tree to the same file: format 1, sha256, 4 KiB data and hash blocks, its
superblock first, at the data's end (`--hash-offset`). One file, one partition: `run`
attaches it as before, and the data part is still the plain image. The salt is the
image's sha256 (which its writer computed as it wrote it) and the superblock's UUID is
taken from it too, so the same image always gets the same tree: the outputs stay
reproducible.

The boot stage needs the root hash, the salt and the number of data blocks to set up
the mapping (formats/boot_stage.py): they go on the kernel's command line as one word,
`osbuilder.verity.FS=BLOCKS,ROOTHASH,SALT` (FS: squashfs or erofs), inside the unified
kernel image on EFI media, whose signature then covers it. Nothing on the disk is trusted:
a changed superblock does not change the table the stage builds.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from msgspec import Struct

from osbuilder.errors import cannot_write
from osbuilder.runner import run

BLOCK = 4096  # data and hash block size
HASH = "sha256"
FORMAT = 1  # dm-verity's hash format: the salt before each block (0: Chrome OS's, after)
CMDLINE_WORD = "osbuilder.verity.{filesystem}"  # the key of the word the boot stage reads
_HEX = re.compile(r"[0-9a-f]{64}")


class VerityTree(Struct, frozen=True):
    """What the kernel's dm-verity table needs of a root that carries its hash tree."""

    data_blocks: int  # 4 KiB blocks of the image; its tree's superblock is right after
    root_hash: str  # hex
    salt: str  # hex

    @property
    def hash_offset(self) -> int:
        """Where the tree (its superblock first) starts in the image, in bytes."""
        return self.data_blocks * BLOCK

    def cmdline_word(self, filesystem: str) -> str:
        """The kernel command line's word the boot stage of a `filesystem` root reads."""
        key = CMDLINE_WORD.format(filesystem=filesystem)
        return f"{key}={self.data_blocks},{self.root_hash},{self.salt}"


def add_hash_tree(image: Path, sha256: str) -> VerityTree:
    """Pad `image` (whose content's digest is `sha256`, which salts the tree) to whole
    blocks and append its dm-verity hash tree (veritysetup)."""
    try:
        with image.open("r+b") as file:
            size = file.seek(0, 2)
            padded = -(-size // BLOCK) * BLOCK
            file.truncate(padded)
    except OSError as exc:
        raise cannot_write(image, exc) from None
    salt = sha256
    data_blocks = padded // BLOCK
    root_hash_file = image.with_name(image.name + ".roothash")
    run(
        [
            "veritysetup",
            "format",
            f"--format={FORMAT}",
            f"--hash={HASH}",
            f"--data-block-size={BLOCK}",
            f"--hash-block-size={BLOCK}",
            f"--data-blocks={data_blocks}",
            f"--hash-offset={padded}",
            f"--salt={salt}",
            # A UUID the same image always gets (version 4's layout, as EROFS's).
            f"--uuid={uuid.UUID(bytes=bytes.fromhex(sha256)[:16], version=4)}",
            f"--root-hash-file={root_hash_file}",
            image,
            image,
        ]
    )
    try:
        root_hash = root_hash_file.read_text().strip()
    except OSError as exc:
        raise cannot_write(root_hash_file, exc) from None
    if not _HEX.fullmatch(root_hash):
        raise ValueError(f"veritysetup wrote {root_hash!r} as the root hash of {image}")
    return VerityTree(data_blocks, root_hash, salt)
