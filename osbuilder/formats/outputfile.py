"""An output file: written atomically, and measured (size, sha256) as it is written.

Hashing what passes through costs a fraction of reading the file back afterwards,
and most of it overlaps the compression the writer waits for.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from osbuilder.atomicfile import atomic_output

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


@dataclass(frozen=True)
class Output:
    path: Path
    size: int
    sha256: str

    def as_json(self) -> dict[str, str | int]:
        return {"path": str(self.path), "size": self.size, "sha256": self.sha256}


class _Measuring(io.RawIOBase):
    """Passes writes on to `file`, counting and hashing them."""

    def __init__(self, file: BinaryIO) -> None:
        super().__init__()
        self.file = file
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer, /) -> int:
        view = memoryview(data)
        self.digest.update(view)
        self.file.write(view)
        self.size += view.nbytes
        return view.nbytes


class OutputFile(io.BufferedWriter):
    """What a writer writes into; `result()` describes the file once it is complete."""

    def __init__(self, path: Path, file: BinaryIO) -> None:
        self._measured = _Measuring(file)
        super().__init__(self._measured, 1 << 20)
        self.path = path

    def result(self) -> Output:
        self.flush()
        return Output(self.path, self._measured.size, self._measured.digest.hexdigest())


@contextmanager
def output_file(path: Path) -> Iterator[OutputFile]:
    """Write `path` atomically (see atomicfile.py), measuring it on the way."""
    with atomic_output(path) as file:
        out = OutputFile(path, file)
        yield out
        out.flush()
