"""Layer blobs decompressed in chunks, never whole.

gzip goes through ISA-L's inflate (the `isal` package: about twice zlib's
speed), zstd through zstandard; both let go of the GIL, so layers inflate in
parallel on threads (snapshots.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, cast

import zstandard
from isal import isal_zlib

CHUNK = 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_WINDOW = 31  # zlib's wbits for a gzip wrapper
# isal's stubs declare its error an instance; it is an Exception subclass.
_INFLATE_ERROR = cast("type[Exception]", isal_zlib.error)


def gzip_chunks(source: IO[bytes]) -> Iterator[bytes]:
    """The content of a gzip stream of one or more members (as `gzip -d` reads them)."""
    try:
        yield from _gzip_members(source)
    except _INFLATE_ERROR as exc:
        raise OSError(f"invalid gzip data ({exc})") from None


def _gzip_members(source: IO[bytes]) -> Iterator[bytes]:
    decompressor = isal_zlib.decompressobj(_GZIP_WINDOW)
    pending = b""
    while True:
        data = pending or source.read(CHUNK)
        pending = b""
        if not data:
            if not decompressor.eof:
                raise EOFError("compressed data ended before the end-of-stream marker")
            return
        if decompressor.eof:  # a member ended: another may follow
            if not data.startswith(_GZIP_MAGIC[: len(data)]):
                return  # what follows is not gzip: ignored, as gzip -d does
            decompressor = isal_zlib.decompressobj(_GZIP_WINDOW)
        if out := decompressor.decompress(data):
            yield out
        if decompressor.eof:
            pending = decompressor.unused_data


def zstd_chunks(source: IO[bytes]) -> Iterator[bytes]:
    reader = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)
    try:
        while chunk := reader.read(CHUNK):
            yield chunk
    except zstandard.ZstdError as exc:
        raise OSError(f"invalid zstd data ({exc})") from None


def inflated(blob: IO[bytes], compression: str) -> Iterator[bytes]:
    """The blob's content in chunks; compression is 'gzip', 'zstd' or '' (none)."""
    if compression == "gzip":
        return gzip_chunks(blob)
    if compression == "zstd":
        return zstd_chunks(blob)
    return iter(lambda: blob.read(CHUNK), b"")
