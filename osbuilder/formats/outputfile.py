"""The output files of a build: written atomically, together, and measured as written.

Every file a build writes appears when the whole build has succeeded, or none does
(see atomicfile.FileSet). Each is counted as its bytes pass, and hashed (sha256) when
the build was asked for digests: hashing as written is a fraction of the cost of
reading the file back, but still ~5% of a kernel+initrd build (one more pass over every
byte, on a machine the compression keeps busy), so it is done only when asked.
A failure to write (a full disk) is the user's to fix, not a bug.
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

COPY_CHUNK = 1 << 20  # what the writers copy files into outputs and scratch files by


class Output(Struct, frozen=True):
    path: Path
    size: int
    sha256: str | None  # None when the build was not asked for digests

    def as_json(self) -> dict[str, str | int | None]:
        return {"path": str(self.path), "size": self.size, "sha256": self.sha256}


class OutputDirectory:
    """Where a build's writers create their files; see `output_directory`."""

    def __init__(self, path: Path, files: FileSet, *, digests: bool) -> None:
        self.path = path
        self._files = files
        self._digests = digests

    @contextmanager
    def create(self, name: str) -> Iterator[OutputFile]:
        """A new output file `name`, complete when the block ends without error."""
        path = self.path / name
        in_block = False
        try:
            with self._files.create(path) as file:
                out = OutputFile(path, file, digest=self._digests)
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
def output_directory(path: Path, *, digests: bool = True) -> Iterator[OutputDirectory]:
    """The files created in the block appear in `path` together when it ends without
    error; otherwise none does, and any earlier build's files are left as they were.
    With `digests`, each file's sha256 is computed as it is written.

    Builds into one directory at once commit one after the other (a lock on the directory
    itself), so the files of one never mix with the other's.
    """
    files = FileSet()
    try:
        yield OutputDirectory(path, files, digests=digests)
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
    """A build's private intermediate file (not an output), measured and hashed as written.

    Failing to create or write it is reported as for outputs; the caller removes it.
    """
    try:
        file = path.open("xb")
    except OSError as exc:
        raise cannot_write(path, exc) from None
    with file:
        out = OutputFile(path, file, digest=True)
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
    """Passes writes on to `file`, counting them and, given a `digest`, hashing them."""

    def __init__(self, file: BinaryIO, digest: hashlib._Hash | None) -> None:
        super().__init__()
        self.file = file
        self.digest = digest
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer, /) -> int:
        view = memoryview(data)
        if self.digest is not None:
            self.digest.update(view)
        try:
            self.file.write(view)
        except OSError as exc:
            raise _OutputWriteError(exc) from exc
        self.size += view.nbytes
        return view.nbytes


class OutputFile(io.BufferedWriter):
    """What a writer writes into; `result()` describes the file once it is complete."""

    def __init__(self, path: Path, file: BinaryIO, *, digest: bool) -> None:
        self._measured = _Measuring(file, hashlib.sha256() if digest else None)
        super().__init__(self._measured, 1 << 20)
        self.path = path

    def result(self) -> Output:
        self.flush()
        digest = self._measured.digest
        return Output(
            self.path, self._measured.size, None if digest is None else digest.hexdigest()
        )

    def sha256(self) -> str:
        """The sha256 of what was written: of a scratch file (always hashed) or an output
        of a build asked for digests."""
        self.flush()
        assert self._measured.digest is not None, f"{self.path} is not being hashed"
        return self._measured.digest.hexdigest()
