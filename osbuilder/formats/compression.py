"""Streaming compression of outputs (`--compress gzip|zstd|none`), byte-for-byte reproducible."""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO, Literal, Protocol, get_args

import zstandard

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

Compression = Literal["gzip", "zstd", "none"]
COMPRESSIONS: tuple[Compression, ...] = get_args(Compression)

# Each tool's own default level. Decompression, at boot, runs at the same speed whatever the
# level; compression time, at every build, grows fast. On a 50 MiB cpio of Python's stdlib:
# zstd decompresses in 0.07-0.08 s from levels 1 to 19, but compresses in 0.2 s at level 3
# and 20 s at 19 (for 25% less); gzip -6 takes 1.3 s and gzip -9 10 s, for 1% less.
GZIP_LEVEL = 6
ZSTD_LEVEL = 3
# zstd compresses on worker threads, in parallel with the writer reading files. Streaming
# multithreaded output is the same for any number of workers (zstd issues #2238, #2327),
# so builds stay reproducible across machines. Two workers, with small jobs (below) so
# that their buffers stay small.
ZSTD_WORKERS = 2

BUFFER_SIZE = 1 << 20  # small writes (cpio headers) are gathered before compressing


class _Compressor(Protocol):
    def compress(self, data: memoryview, /) -> bytes: ...
    def flush(self) -> bytes: ...


def default_compression(kernel_config_text: str | None) -> Compression:
    """zstd when the kernel can unpack a zstd initrd (CONFIG_RD_ZSTD=y), otherwise gzip.

    gzip is also the answer when the kernel's configuration is unknown: every kernel that
    takes an initramfs at all is built with it in practice.
    """
    if kernel_config_text and re.search(r"^CONFIG_RD_ZSTD=y$", kernel_config_text, re.MULTILINE):
        return "zstd"
    return "gzip"


@contextmanager
def compressed_writer(out: BinaryIO, compression: Compression) -> Iterator[BinaryIO]:
    """A file to write into; what is written reaches `out` compressed.

    The compressed stream is completed when the block ends without error (`out` itself is
    left open). If the block raises, nothing more is written to `out`: its owner is expected
    to discard it.
    """
    if compression == "none":
        yield out
        return
    sink = _CompressingSink(_compressor(compression), out)
    with io.BufferedWriter(sink, BUFFER_SIZE) as buffered:
        try:
            yield buffered
        except BaseException:
            sink.abandon()
            raise


def _compressor(compression: Compression) -> _Compressor:
    if compression == "gzip":
        # wbits 31 asks zlib for the gzip wrapper, whose header it writes without a file
        # name and with mtime 0 (unlike the gzip module, which records both).
        return zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    # Each worker buffers a whole job; the default job size grows with the level's window
    # (tens of MB each). 1 MiB jobs keep memory flat for any image at no cost in speed.
    parameters = zstandard.ZstdCompressionParameters.from_level(
        ZSTD_LEVEL, threads=ZSTD_WORKERS, job_size=1 << 20, write_checksum=True
    )
    return zstandard.ZstdCompressor(compression_params=parameters).compressobj()


class _CompressingSink(io.RawIOBase):
    """The raw end of a buffered writer: compresses what it gets into `out`."""

    def __init__(self, compressor: _Compressor, out: BinaryIO) -> None:
        super().__init__()
        self._compressor = compressor
        self._out: BinaryIO | None = out

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer, /) -> int:
        view = memoryview(data)
        if self._out is not None:
            self._out.write(self._compressor.compress(view))
        return view.nbytes

    def close(self) -> None:
        """Finish the compressed stream (unless abandoned), leaving `out` open."""
        if self._out is not None and not self.closed:
            self._out.write(self._compressor.flush())
        super().close()

    def abandon(self) -> None:
        """Drop whatever is still to come: the output is being thrown away."""
        self._out = None
