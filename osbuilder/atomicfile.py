"""Files that appear only when complete: build outputs, the content store's files.

A file is written under a hidden temporary name in its destination directory, flushed
to disk, and renamed into place only when writing succeeded, so an interrupted or failed
write never leaves a file that looks finished (and never truncates a previous one).
Files that belong together (a kernel and its initrd) are renamed together, once all of
them are complete: a failed build never leaves a new kernel next to an old initrd.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_output(
    path: Path, mode: int | None = None, *, readable: bool = False
) -> Iterator[BinaryIO]:
    """Open `path` for writing; it is created or replaced only if the block ends without error.

    The file gets `mode`, or else the usual permissions (0666 less the umask), as if
    opened directly. `readable` opens it for reading too, to check what was written
    before it is committed.
    """
    with file_set() as files, files.create(path, mode, readable=readable) as file:
        yield file


@contextmanager
def file_set() -> Iterator[FileSet]:
    """A FileSet committed when the block ends without error, discarded otherwise."""
    files = FileSet()
    try:
        yield files
    except BaseException:
        files.discard()
        raise
    files.commit()


class FileSet:
    """Files created together: each is written under a temporary name and flushed to disk;
    `commit` renames them all into place (once every `create` block has ended), `discard`
    removes them.

    A temporary name is recorded before the file exists, so `discard` removes it whenever
    the writing stops: even a signal that lands between creating the file and the code
    that would clean it up (SIGTERM and Ctrl-C raise at any point) leaves nothing behind.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []  # (temporary, final)

    @contextmanager
    def create(
        self, path: Path, mode: int | None = None, *, readable: bool = False
    ) -> Iterator[BinaryIO]:
        """Open a new file that will become `path` on commit (see atomic_output for the
        arguments). If the block raises, the file is removed at once."""
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
        entry = (temporary, path)
        self._pending.append(entry)
        try:
            access = os.O_RDWR if readable else os.O_WRONLY
            try:
                fd = os.open(temporary, access | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            except FileExistsError:  # someone else's file, by a 1 in 2**32 chance: keep it
                self._pending.remove(entry)
                raise
            if mode is not None:
                os.fchmod(fd, mode)
            with os.fdopen(fd, "w+b" if readable else "wb") as file:
                yield file
                file.flush()
                os.fsync(file.fileno())
        except BaseException:
            if entry in self._pending:
                temporary.unlink(missing_ok=True)
                self._pending.remove(entry)
            raise

    def commit(self) -> None:
        """Rename every file written into place, and make the renames durable."""
        pending, self._pending = self._pending, []
        done = 0
        try:
            for temporary, path in pending:
                os.replace(temporary, path)
                done += 1
        except BaseException:
            for temporary, _ in pending[done:]:
                temporary.unlink(missing_ok=True)
            raise
        for directory in dict.fromkeys(path.parent for _, path in pending):
            fsync_directory(directory)

    def discard(self) -> None:
        """Remove every file written and not committed."""
        pending, self._pending = self._pending, []
        for temporary, _ in pending:
            temporary.unlink(missing_ok=True)


def fsync_directory(path: Path) -> None:
    """Make the entries of a directory (a rename into it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
