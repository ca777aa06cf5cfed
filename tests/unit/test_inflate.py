"""Layer blobs inflated on a helper thread: gzip and zstd streams, errors, prefetching."""

from __future__ import annotations

import gzip
import io
import os
import threading
from typing import IO

import pytest
import zstandard

from osbuilder.assemble.inflate import CHUNK, LayerStreams, decompressed

DATA = os.urandom(3 * CHUNK + 12345) + b"text" * 100_000


def read_all(blob: bytes, compression: str) -> bytes:
    with decompressed(io.BytesIO(blob), compression) as stream:
        return stream.read()


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


def test_closing_early_stops_the_helper_thread() -> None:
    before = threading.active_count()
    stream = decompressed(io.BytesIO(gzip.compress(DATA * 4)), "gzip")
    assert stream.read(10) == DATA[:10]
    stream.close()
    assert threading.active_count() == before


class Blobs:
    def __init__(self, contents: dict[str, bytes]) -> None:
        self.contents = contents
        self.opened: list[str] = []

    def open(self, digest: str) -> IO[bytes]:
        self.opened.append(digest)
        return io.BytesIO(self.contents[digest])


def test_layer_streams_start_the_next_layer_of_the_plan_ahead() -> None:
    layers = {name: gzip.compress(name.encode() * 1000) for name in ("a", "b", "c")}
    blobs = Blobs(layers)
    streams = LayerStreams(blobs.open)
    streams.plan = [(name, "gzip") for name in ("a", "b", "c")]
    with streams.open("a", "gzip") as stream:
        assert blobs.opened == ["a", "b"]  # b is inflating while a is read
        assert stream.read() == b"a" * 1000
    with streams.open("b", "gzip") as stream:
        assert blobs.opened == ["a", "b", "c"]  # b came from the guess; c started
        assert stream.read() == b"b" * 1000
    # Asked out of the plan's order: the guess (c) is dropped and opened again later.
    with streams.open("a", "gzip") as stream:
        assert stream.read() == b"a" * 1000
    with streams.open("c", "gzip") as stream:
        assert stream.read() == b"c" * 1000
    streams.close()
    assert blobs.opened == ["a", "b", "c", "a", "b", "c"]
