"""Layer blobs inflated in chunks: gzip of several members, zstd frames, errors."""

from __future__ import annotations

import gzip
import io
import os

import pytest
import zstandard

from osbuilder.assemble.inflate import CHUNK, inflated

DATA = os.urandom(3 * CHUNK + 12345) + b"text" * 100_000


def read_all(blob: bytes, compression: str) -> bytes:
    chunks = list(inflated(io.BytesIO(blob), compression))
    assert max(len(chunk) for chunk in chunks) <= 4 * CHUNK  # streamed, never whole
    return b"".join(chunks)


def test_gzip_of_one_or_several_members_and_zstd_frames_give_the_content() -> None:
    half = len(DATA) // 2
    assert read_all(gzip.compress(DATA), "gzip") == DATA
    assert read_all(gzip.compress(DATA[:half]) + gzip.compress(DATA[half:]), "gzip") == DATA
    frames = zstandard.ZstdCompressor().compress
    assert read_all(frames(DATA[:half]) + frames(DATA[half:]), "zstd") == DATA
    assert read_all(DATA, "") == DATA


def test_bytes_after_the_last_gzip_member_are_ignored_as_gzip_does() -> None:
    assert read_all(gzip.compress(DATA) + b"\0" * 1024, "gzip") == DATA


def test_a_truncated_or_corrupt_stream_fails_the_read() -> None:
    whole = gzip.compress(DATA)
    with pytest.raises(EOFError, match="ended before the end-of-stream marker"):
        read_all(whole[: len(whole) // 2], "gzip")
    corrupt = whole[:100] + bytes(b ^ 0xFF for b in whole[100:200]) + whole[200:]
    with pytest.raises(OSError, match="invalid gzip data"):
        read_all(corrupt, "gzip")
    with pytest.raises(OSError, match="invalid zstd data"):
        read_all(b"\x28\xb5\x2f\xfd" + b"\xff" * 64, "zstd")
