"""Writers stream file content: memory does not grow with the size of a file."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest

from osbuilder.assemble.entry import Content, Entry, Kind
from osbuilder.formats.cpio import write_cpio
from osbuilder.formats.erofs import write_erofs
from osbuilder.formats.tarball import write_tar

SIZE = 200 << 20


class ByteCounter:
    """A sink that only counts (writers need nothing but write())."""

    def __init__(self) -> None:
        self.count = 0

    def write(self, data: bytes) -> int:
        self.count += len(data)
        return len(data)


def erofs(entries: list[Entry], out: BinaryIO) -> None:
    write_erofs(entries, out, epoch=0, uuid=bytes(16))


@pytest.mark.parametrize("write", [write_cpio, write_tar, erofs])
def test_memory_stays_flat_for_a_large_file(
    tmp_path: Path, write: Callable[[list[Entry], BinaryIO], None]
) -> None:
    sparse = tmp_path / "sparse"
    with sparse.open("wb") as file:
        file.truncate(SIZE + 1000)
    # (and 1000 bytes more: erofs keeps what is past the last whole block with the inode)
    entries = [Entry("big", Kind.FILE, 0o644, content=Content(sparse, SIZE + 1000))]

    out = ByteCounter()
    tracemalloc.start()
    try:
        write(entries, out)  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert SIZE + 1000 < out.count < SIZE + 20_000  # all the content, and headers
    assert peak < 20 << 20
