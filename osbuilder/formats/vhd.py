"""Fixed VHD, the disk image Hyper-V and Azure take: the raw disk, then a 512-byte footer.

`qemu-img convert -O vpc -o subformat=fixed,force_size=on` writes it (force_size keeps
the raw disk's exact size, which Azure wants a whole number of MiB). Its footer records
the time of writing and a random UUID; both are set here from the build (the time from
SOURCE_DATE_EPOCH, the UUID from the contents) and the footer's checksum is made again,
so the image is reproducible.
"""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

from osbuilder.runner import run

FOOTER = 512
COOKIE = b"conectix"
VHD_EPOCH = 946684800  # the footer counts seconds from 2000-01-01 00:00:00 UTC
_TIMESTAMP, _CHECKSUM, _UUID = 24, 64, 68  # offsets in the footer (big-endian fields)


def fixed_vhd(raw: Path, vhd: Path, epoch: int, identity: uuid.UUID) -> None:
    """The raw disk `raw` as the fixed VHD `vhd`, with a reproducible footer."""
    options = "subformat=fixed,force_size=on"
    run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "vpc", "-o", options, raw, vhd])
    with vhd.open("r+b") as file:
        file.seek(-FOOTER, 2)
        footer = bytearray(file.read(FOOTER))
        if footer[:8] != COOKIE:
            raise ValueError(f"{vhd}: qemu-img wrote no VHD footer")
        struct.pack_into(">I", footer, _TIMESTAMP, max(0, epoch - VHD_EPOCH))
        footer[_UUID : _UUID + 16] = identity.bytes
        struct.pack_into(">I", footer, _CHECKSUM, footer_checksum(footer))
        file.seek(-FOOTER, 2)
        file.write(footer)


def footer_checksum(footer: bytes | bytearray) -> int:
    """The one's complement of the sum of the footer's bytes, its checksum field left out."""
    total = sum(footer) - sum(footer[_CHECKSUM : _CHECKSUM + 4])
    return ~total & 0xFFFFFFFF
