"""Compressed outputs, decompressed by the real gzip and zstd."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest
import zstandard

from osbuilder.assemble.entry import Entry
from osbuilder.atomicfile import atomic_output
from osbuilder.formats.compression import (
    BUFFER_SIZE,
    ZSTD_LEVEL,
    Compression,
    compressed_writer,
    default_compression,
)
from osbuilder.formats.cpio import write_cpio
from tests.unit.formats.helpers import run_tool

DECOMPRESS = {"gzip": ("gzip", "-dc"), "zstd": ("zstd", "-dcq")}
# Compressible but not trivial, and larger than the buffer so that it is fed in pieces.
DATA = random.Random(5).randbytes(1000) * (3 * BUFFER_SIZE // 1000)


def compress(data: bytes, compression: Compression) -> bytes:
    out = io.BytesIO()
    with compressed_writer(out, compression) as writer:
        for start in range(0, len(data), 100_000):
            writer.write(data[start : start + 100_000])
    return out.getvalue()


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_real_tools_decompress(tmp_path: Path, compression: Compression) -> None:
    path = tmp_path / "data"
    path.write_bytes(compress(DATA, compression))

    assert run_tool(*DECOMPRESS[compression], path) == DATA


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_output_is_deterministic(compression: Compression) -> None:
    assert compress(DATA, compression) == compress(DATA, compression)


@pytest.mark.parametrize("workers", [1, 3])
def test_zstd_output_does_not_depend_on_the_number_of_workers(workers: int) -> None:
    parameters = zstandard.ZstdCompressionParameters.from_level(
        ZSTD_LEVEL, threads=workers, job_size=1 << 20, write_checksum=True
    )
    compressor = zstandard.ZstdCompressor(compression_params=parameters).compressobj()
    expected = compressor.compress(DATA) + compressor.flush()

    assert compress(DATA, "zstd") == expected


def test_gzip_header_has_no_time_and_no_name() -> None:
    header = compress(b"x", "gzip")[:10]

    assert header[:3] == b"\x1f\x8b\x08"
    assert header[3] == 0  # flags: no file name, no comment, no extra field
    assert header[4:8] == b"\0\0\0\0"  # mtime


def test_none_passes_bytes_through() -> None:
    assert compress(DATA, "none") == DATA


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_failed_write_stops_the_stream(compression: Compression) -> None:
    out = io.BytesIO()
    with pytest.raises(RuntimeError), compressed_writer(out, compression) as writer:
        writer.write(b"partial")
        raise RuntimeError("build failed")
    assert out.getvalue() == b""  # the buffered bytes and the stream's end were dropped
    assert not out.closed


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_compressed_initrd_unpacks(
    tmp_path: Path, tree: list[Entry], compression: Compression
) -> None:
    initrd = tmp_path / "initrd.img"
    with atomic_output(initrd) as out, compressed_writer(out, compression) as writer:
        write_cpio(tree, writer)
    cpio = tmp_path / "initrd.cpio"
    cpio.write_bytes(run_tool(*DECOMPRESS[compression], initrd))

    assert run_tool("cpio", "-t", "--quiet", stdin=cpio).splitlines() == [
        os.fsencode(e.path) for e in tree
    ]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (None, "gzip"),
        ("", "gzip"),
        ("CONFIG_RD_GZIP=y\n# CONFIG_RD_ZSTD is not set\n", "gzip"),
        ("CONFIG_RD_GZIP=y\nCONFIG_RD_ZSTD=y\nCONFIG_RD_XZ=y\n", "zstd"),
        ("CONFIG_RD_ZSTD=yes\n", "gzip"),
    ],
)
def test_default_compression(config: str | None, expected: str) -> None:
    assert default_compression(config) == expected
