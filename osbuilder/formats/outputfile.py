"""The output files of a build: written atomically, together, and measured as written.

Every file a build writes appears when the whole build has succeeded, or none does
(see atomicfile.FileSet). Each is hashed and counted as its bytes pass (size, sha256):
a fraction of the cost of reading it back, and mostly overlapping the compression the
writer waits for. A failure to write (a full disk) is the user's to fix, not a bug.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from msgspec import Struct

from osbuilder.atomicfile import FileSet, locked
from osbuilder.errors import cannot_write

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


class Output(Struct, frozen=True):
    path: Path
    size: int
    sha256: str

    def as_json(self) -> dict[str, str | int]:
        return {"path": str(self.path), "size": self.size, "sha256": self.sha256}


class OutputDirectory:
    """Where a build's writers create their files; see `output_directory`."""

    def __init__(self, path: Path, files: FileSet) -> None:
        self.path = path
        self._files = files

    @contextmanager
    def create(self, name: str) -> Iterator[OutputFile]:
        """A new output file `name`, complete when the block ends without error."""
        path = self.path / name
        in_block = False
        try:
            with self._files.create(path) as file:
                out = OutputFile(path, file)
                in_block = True
                yield out
                out.flush()
                in_block = False
        except _OutputWriteError as exc:
            raise cannot_write(path, exc.cause) from None
        except OSError as exc:
            if in_block:  # reading what goes into the file failed: say so as it is
                raise
            raise cannot_write(path, exc) from None  # creating or syncing the file


@contextmanager
def output_directory(path: Path) -> Iterator[OutputDirectory]:
    """The files created in the block appear in `path` together when it ends without
    error; otherwise none does, and any earlier build's files are left as they were.

    Builds into one directory at once commit one after the other (a lock on the directory
    itself), so the files of one never mix with the other's.
    """
    files = FileSet()
    try:
        yield OutputDirectory(path, files)
    except BaseException:
        files.discard()
        raise
    try:
        with locked(path):
            files.commit()
    except BaseException as exc:
        files.discard()
        if isinstance(exc, OSError):
            raise cannot_write(path, exc) from None
        raise


@contextmanager
def scratch_file(path: Path) -> Iterator[OutputFile]:
    """A build's private intermediate file (not an output), measured as written.

    Failing to create or write it is reported as for outputs; the caller removes it.
    """
    try:
        file = path.open("xb")
    except OSError as exc:
        raise cannot_write(path, exc) from None
    with file:
        out = OutputFile(path, file)
        try:
            yield out
            out.flush()
        except _OutputWriteError as exc:
            raise cannot_write(path, exc.cause) from None


class _OutputWriteError(OSError):
    """An OSError writing an output file, as opposed to one reading what goes into it."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.cause = cause


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
        try:
            self.file.write(view)
        except OSError as exc:
            raise _OutputWriteError(exc) from exc
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
