"""--decompress-kernel: bzImages with each payload compressor, gzip'd Images, kernels
already uncompressed, and damaged ones (one clear line each)."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import struct
from collections.abc import Callable
from pathlib import Path

import lz4.block
import pytest
import zstandard

from osbuilder.assemble.entry import Content
from osbuilder.assemble.kernel_decompress import decompress_kernel
from osbuilder.assemble.tree import Spool
from osbuilder.errors import UserError

# What a decompressed x86 kernel starts with (the ELF vmlinux), then enough bytes that
# every compressor's stream spans several of the decompressor's reads.
VMLINUX = b"\x7fELF\x02\x01\x01" + os.urandom(3 << 20) + bytes(1 << 20)
SETUP_SECTS = 3  # the real mode code's sectors after the boot sector


def lz4_legacy(data: bytes, block: int = 1 << 20) -> bytes:
    """The kernel's legacy lz4 framing, with the uncompressed size its build appends."""
    framed = bytearray(b"\x02\x21\x4c\x18")
    for start in range(0, len(data), block):
        compressed = lz4.block.compress(data[start : start + block], store_size=False)
        framed += struct.pack("<I", len(compressed)) + compressed
    return bytes(framed + struct.pack("<I", len(data)))


def size_appended(compress: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    """As the kernel's build does for xz, zstd (and lz4): the uncompressed size after it."""
    return lambda data: compress(data) + struct.pack("<I", len(data))


def bzimage(payload: bytes, *, version: tuple[int, int] = (2, 15)) -> bytes:
    header = bytearray(512 * (SETUP_SECTS + 1))
    header[0x1F1] = SETUP_SECTS
    header[0x1FE:0x200] = b"\x55\xaa"
    header[0x202:0x206] = b"HdrS"
    header[0x206], header[0x207] = version[1], version[0]
    decompressor = b"\x90" * 700  # the protected-mode decompressor, before its payload
    struct.pack_into("<II", header, 0x248, len(decompressor), len(payload))
    return bytes(header) + decompressor + payload + b"\x00" * 123  # (and the tail after it)


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path)


def kernel_file(tmp_path: Path, data: bytes) -> Content:
    path = tmp_path / "kernel-image"
    path.write_bytes(b"padding" + data)  # a content inside a file, as in a layer's tar
    return Content(path, len(data), len(b"padding"))


def decompressed(spool: Spool, content: Content) -> bytes:
    result = decompress_kernel(content, spool, "kernel image k:1's kernel")
    spool.flush()
    return result.read_bytes()


@pytest.mark.parametrize(
    "compress",
    [
        lambda data: gzip.compress(data, mtime=0),
        size_appended(lambda data: lzma.compress(data, lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)),
        bz2.compress,
        size_appended(zstandard.ZstdCompressor().compress),
        lz4_legacy,
    ],
    ids=["gzip", "xz", "bzip2", "zstd", "lz4"],
)
def test_a_bzimage_gives_its_vmlinux_whatever_its_payload_is_compressed_with(
    tmp_path: Path, spool: Spool, compress: Callable[[bytes], bytes]
) -> None:
    image = bzimage(compress(VMLINUX))
    assert decompressed(spool, kernel_file(tmp_path, image)) == VMLINUX


def test_a_gzipd_image_is_gunzipped_and_an_uncompressed_kernel_is_kept(
    tmp_path: Path, spool: Spool
) -> None:
    arm64_image = bytes(0x38) + b"ARM\x64" + os.urandom(1 << 20)
    assert decompressed(spool, kernel_file(tmp_path, gzip.compress(arm64_image))) == arm64_image
    for kernel in (arm64_image, VMLINUX):
        content = kernel_file(tmp_path, kernel)
        assert decompress_kernel(content, spool, "k") is content


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (b"MZ" + bytes(4096), r"^kernel image k:1's kernel is neither a bzImage nor a gzip'd"),
        (
            bzimage(gzip.compress(VMLINUX), version=(2, 6)),
            r"bzImage of boot protocol 2\.6, which does not say where its payload is",
        ),
        (bzimage(b"\x89LZO\x00" + bytes(100)), r"compressed with something .* \(magic 894c5a4f;"),
        (bzimage(gzip.compress(VMLINUX)[:-5000]), r"its compressed kernel (ends early|is damaged)"),
        (bzimage(lz4_legacy(VMLINUX)[:-70000]), r"its lz4 kernel (ends early|is damaged)"),
        (bzimage(b"\x1f\x8b\x08\x00" + os.urandom(2000)), r"its compressed kernel is damaged"),
    ],
    ids=["not-a-kernel", "old-protocol", "lzo", "truncated-gzip", "truncated-lz4", "garbage"],
)
def test_what_cannot_be_decompressed_is_one_clear_line(
    tmp_path: Path, spool: Spool, image: bytes, message: str
) -> None:
    with pytest.raises(UserError, match=message):
        decompressed(spool, kernel_file(tmp_path, image))


def test_a_payload_said_to_run_past_the_file_is_refused(tmp_path: Path, spool: Spool) -> None:
    image = bytearray(bzimage(gzip.compress(VMLINUX)))
    struct.pack_into("<I", image, 0x24C, len(image))
    with pytest.raises(UserError, match="payload runs past the end of the file"):
        decompressed(spool, kernel_file(tmp_path, bytes(image)))
