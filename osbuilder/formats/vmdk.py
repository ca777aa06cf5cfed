"""VMDK, VMware's disk image: the raw-bios disk converted by `qemu-img` (monolithic
sparse, as LinuxKit's vmdk), for VMware Workstation, Fusion and ESXi.

Its embedded descriptor (text, in a region the sparse header locates) names the file it
was written as and carries a random content ID (CID, which VMware compares with a
child's parentCID), written by qemu-img without leading zeros. The disk is converted
under its output name, so the descriptor names that, and the CID is set from the disk's
contents, always eight digits: the image is reproducible.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from osbuilder.runner import run

SECTOR = 512
_MAGIC = b"KDMV"
_DESCRIPTOR = struct.Struct("<QQ")  # its offset and size, in sectors
_DESCRIPTOR_AT = 28  # in the sparse extent header
_CID = re.compile(rb"(?m)^CID=[0-9a-fA-F]{1,8}$")


def vmdk_disk(raw: Path, vmdk: Path, identity: int) -> None:
    """The raw disk `raw` as the VMDK `vmdk`, its CID `identity` (32 bits)."""
    run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "vmdk", raw, vmdk])
    set_cid(vmdk, identity)


def set_cid(vmdk: Path, identity: int) -> None:
    """Make the CID in the descriptor of the sparse VMDK `vmdk` `identity`, in 8 digits."""
    with vmdk.open("r+b") as file:
        header = file.read(SECTOR)
        if not header.startswith(_MAGIC):
            raise ValueError(f"{vmdk}: qemu-img wrote no sparse VMDK header")
        offset, size = _DESCRIPTOR.unpack_from(header, _DESCRIPTOR_AT)
        file.seek(offset * SECTOR)
        region = file.read(size * SECTOR)
        text = region.split(b"\0", 1)[0]
        fixed, count = _CID.subn(b"CID=%08x" % (identity & 0xFFFFFFFF), text, count=1)
        if count != 1 or len(fixed) >= len(region):
            raise ValueError(f"{vmdk}: qemu-img wrote no CID in the descriptor")
        file.seek(offset * SECTOR)
        file.write(fixed.ljust(len(region), b"\0"))
