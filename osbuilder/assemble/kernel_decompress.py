"""`build --decompress-kernel`: the kernel as the uncompressed image some VMMs need.

Firecracker and cloud-hypervisor boot an x86 kernel from its ELF vmlinux (through PVH)
and an arm64 kernel from its uncompressed Image, not from the compressed images
distributions ship (LinuxKit's `--decompress-kernel` does the same). Two shapes are
unpacked:

- an x86 bzImage: its header says where the compressed vmlinux is (payload_offset and
  payload_length, boot protocol 2.08+); the payload's magic tells its compressor: gzip,
  xz, bzip2, zstd (the Python libraries) or lz4 (the kernel's "legacy" lz4 framing, as
  Debian's amd64 kernels are: 8 MiB blocks, each preceded by its compressed size). What
  comes out is the ELF vmlinux (with the relocations the decompressor would apply
  appended, which ELF loaders ignore);
- a gzip'd kernel as a whole (arm64's Image.gz, as LinuxKit's arm64 kernels are).

A kernel that already is an uncompressed ELF or arm64 Image is kept as it is. Contents
stream through the build's spool, never whole in memory.
"""

from __future__ import annotations

import bz2
import logging
import lzma
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Protocol

import lz4.block
import zstandard

from osbuilder.assemble.entry import Content
from osbuilder.assemble.tree import Spool
from osbuilder.errors import UserError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
GZIP = b"\x1f\x8b"
XZ = b"\xfd7zXZ\x00"
BZIP2 = b"BZh"
ZSTD = b"\x28\xb5\x2f\xfd"
LZ4_LEGACY = b"\x02\x21\x4c\x18"
LZ4_LEGACY_BLOCK = 8 << 20  # what each block of the legacy framing decompresses to, at most
ELF = b"\x7fELF"
ARM64_IMAGE_MAGIC = (0x38, b"ARM\x64")
# The x86 boot protocol's header (Documentation/arch/x86/boot.rst)
BOOT_FLAG = (0x1FE, b"\x55\xaa")
HEADER = (0x202, b"HdrS")
SETUP_SECTS = 0x1F1
VERSION = 0x206
PAYLOAD = 0x248  # payload_offset, payload_length: u32 each, from the protected-mode code
SECTOR = 512


def decompress_kernel(content: Content, spool: Spool, what: str) -> Content:
    """The uncompressed kernel of `content` (the kernel image's file), in `spool`;
    `what` names it in errors."""
    with content.open() as stream:
        head = stream.read(0x250)
        if head.startswith(ELF) or _at(head, *ARM64_IMAGE_MAGIC):
            log.info("%s is not compressed: kept as it is", what)
            return content
        if head.startswith(GZIP):
            stream.seek(0)
            return _spooled(spool, _inflate(stream, zlib.decompressobj(31), what), what)
        if not (_at(head, *BOOT_FLAG) and _at(head, *HEADER)):
            raise UserError(
                f"{what} is neither a bzImage nor a gzip'd kernel: cannot decompress it "
                "(build without --decompress-kernel)"
            )
        if (head[VERSION + 1], head[VERSION]) < (2, 8):
            raise UserError(
                f"{what} is a bzImage of boot protocol {head[VERSION + 1]}.{head[VERSION]}, "
                "which does not say where its payload is (2.08 or later does)"
            )
        offset, length = struct.unpack_from("<II", head, PAYLOAD)
        offset += ((head[SETUP_SECTS] or 4) + 1) * SECTOR
        if offset + length > content.size:
            raise UserError(f"{what}: its bzImage payload runs past the end of the file")
        stream.seek(offset)
        magic = stream.read(6)
        stream.seek(offset)
        payload = _Window(stream, length)
        return _spooled(spool, _payload_chunks(payload, magic, what), what)


def _payload_chunks(payload: _Window, magic: bytes, what: str) -> Iterator[bytes]:
    decompressors: dict[bytes, Callable[[], _Decompressor]] = {
        GZIP: lambda: zlib.decompressobj(31),
        XZ: lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ),
        BZIP2: bz2.BZ2Decompressor,
        ZSTD: lambda: zstandard.ZstdDecompressor().decompressobj(),
    }
    for prefix, make in decompressors.items():
        if magic.startswith(prefix):
            return _inflate(payload, make(), what)
    if magic.startswith(LZ4_LEGACY):
        return _lz4_legacy(payload, what)
    raise UserError(
        f"{what}: its bzImage payload is compressed with something osbuilder cannot unpack "
        f"(magic {magic[:4].hex()}; gzip, xz, bzip2, zstd and lz4 can be)"
    )


class _Decompressor(Protocol):
    """What zlib's, lzma's, bz2's and zstandard's decompression objects have in common."""

    def decompress(self, data: bytes, /) -> bytes: ...


def _inflate(
    stream: IO[bytes] | _Window, decompressor: _Decompressor, what: str
) -> Iterator[bytes]:
    try:
        while chunk := stream.read(CHUNK):
            yield decompressor.decompress(chunk)
            if getattr(decompressor, "eof", False):
                break  # what follows the stream (the bzImage's appended size) is not data
    except (zlib.error, lzma.LZMAError, OSError, zstandard.ZstdError) as exc:
        raise UserError(f"{what}: its compressed kernel is damaged ({exc})") from None
    if not getattr(decompressor, "eof", True):
        raise UserError(f"{what}: its compressed kernel ends early")


def _lz4_legacy(payload: _Window, what: str) -> Iterator[bytes]:
    """The kernel's legacy lz4 framing: the magic, then (u32 size, block) pairs; its build
    appends the uncompressed size (u32), which is where the blocks end."""
    payload.read(len(LZ4_LEGACY))
    produced = 0
    while len(header := payload.read(4)) == 4:
        (size,) = struct.unpack("<I", header)
        if size > payload.left():  # the appended size: the end
            if size != produced:
                raise UserError(f"{what}: its lz4 kernel is damaged (sizes do not agree)")
            return
        block = payload.read(size)
        try:
            data = lz4.block.decompress(block, uncompressed_size=LZ4_LEGACY_BLOCK)
        except lz4.block.LZ4BlockError as exc:
            raise UserError(f"{what}: its lz4 kernel is damaged ({exc})") from None
        produced += len(data)
        yield data
    raise UserError(f"{what}: its lz4 kernel ends early")


def _spooled(spool: Spool, chunks: Iterator[bytes], what: str) -> Content:
    content = spool.write_chunks(chunk for chunk in chunks if chunk)
    if not content.size:
        raise UserError(f"{what}: its compressed kernel holds nothing")
    log.info("%s decompressed: %d bytes", what, content.size)
    return content


class _Window:
    """The next `length` bytes of `stream`, as a stream of their own."""

    def __init__(self, stream: IO[bytes], length: int) -> None:
        self._stream, self._left = stream, length

    def read(self, size: int) -> bytes:
        data = self._stream.read(min(size, self._left))
        self._left -= len(data)
        return data

    def left(self) -> int:
        return self._left


def _at(data: bytes, offset: int, magic: bytes) -> bool:
    return data[offset : offset + len(magic)] == magic
