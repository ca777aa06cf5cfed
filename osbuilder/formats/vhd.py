"""VHDs, the disk images Hyper-V and Azure take (fixed), and Virtual PC's growing kind
(dynamic): the raw disk then a 512-byte footer, or a copy of the footer, a header, a
block table, the blocks written and the footer.

`qemu-img convert -O vpc -o subformat=fixed|dynamic,force_size=on` writes them
(force_size keeps the raw disk's exact size, which Azure wants a whole number of MiB).
The footer records the time of writing and a random UUID; both are set here from the
build (the time from SOURCE_DATE_EPOCH, the UUID from the contents) and the footer's
checksum is made again, in every copy, so the image is reproducible.
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
    _convert(raw, vhd, "fixed", epoch, identity)


def dynamic_vhd(raw: Path, vhd: Path, epoch: int, identity: uuid.UUID) -> None:
    """The raw disk `raw` as the dynamic VHD `vhd`, with reproducible footers."""
    _convert(raw, vhd, "dynamic", epoch, identity)


def _convert(raw: Path, vhd: Path, subformat: str, epoch: int, identity: uuid.UUID) -> None:
    options = f"subformat={subformat},force_size=on"
    run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "vpc", "-o", options, raw, vhd])
    with vhd.open("r+b") as file:
        # A dynamic VHD starts with a copy of its footer.
        for offset in (0, -FOOTER) if subformat == "dynamic" else (-FOOTER,):
            file.seek(offset, 0 if offset >= 0 else 2)
            footer = bytearray(file.read(FOOTER))
            if footer[:8] != COOKIE:
                raise ValueError(f"{vhd}: qemu-img wrote no VHD footer at {offset}")
            struct.pack_into(">I", footer, _TIMESTAMP, max(0, epoch - VHD_EPOCH))
            footer[_UUID : _UUID + 16] = identity.bytes
            struct.pack_into(">I", footer, _CHECKSUM, footer_checksum(footer))
            file.seek(offset, 0 if offset >= 0 else 2)
            file.write(footer)


def footer_checksum(footer: bytes | bytearray) -> int:
    """The one's complement of the sum of the footer's bytes, its checksum field left out."""
    total = sum(footer) - sum(footer[_CHECKSUM : _CHECKSUM + 4])
    return ~total & 0xFFFFFFFF
