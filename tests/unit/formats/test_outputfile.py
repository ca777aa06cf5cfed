"""Output files: sizes always, sha256 digests when the build asks for them."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import BinaryIO

import pytest

from osbuilder.formats.outputfile import Output, output_directory, scratch_file

# Larger than the output buffer, written in pieces of several sizes.
DATA = random.Random(7).randbytes(3 << 20)
PIECES = (1, 4095, 1 << 20, (1 << 20) + 1, 5)


def write_pieces(out: BinaryIO) -> None:
    start = 0
    for size in (*PIECES, len(DATA)):
        out.write(DATA[start : start + size])
        start += size


@pytest.mark.parametrize("digests", [True, False])
def test_outputs_are_measured_and_hashed_only_when_asked(tmp_path: Path, digests: bool) -> None:
    with output_directory(tmp_path, digests=digests) as outputs:
        with outputs.create("data") as out:
            write_pieces(out)
        written = out.result()
    assert (tmp_path / "data").read_bytes() == DATA
    expected = hashlib.sha256(DATA).hexdigest() if digests else None
    assert written == Output(tmp_path / "data", len(DATA), expected)
    assert written.as_json() == {
        "path": str(tmp_path / "data"),
        "size": len(DATA),
        "sha256": expected,
    }


def test_a_scratch_file_is_always_hashed(tmp_path: Path) -> None:
    with scratch_file(tmp_path / "scratch") as out:
        write_pieces(out)
    assert out.sha256() == hashlib.sha256(DATA).hexdigest()
    assert out.result().size == len(DATA)


def test_the_digest_of_an_unhashed_output_is_not_made_up(tmp_path: Path) -> None:
    with output_directory(tmp_path, digests=False) as outputs, outputs.create("data") as out:
        out.write(b"x")
    with pytest.raises(AssertionError, match="not being hashed"):
        out.sha256()
