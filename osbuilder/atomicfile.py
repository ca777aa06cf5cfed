"""Files that appear only when complete: build outputs, the content store's files.

A file is written under a hidden temporary name in its destination directory, flushed
to disk, and renamed into place only when writing succeeded, so an interrupted or failed
write never leaves a file that looks finished (and never truncates a previous one).
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
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    access = os.O_RDWR if readable else os.O_WRONLY
    fd = os.open(temporary, access | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "w+b" if readable else "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)  # make the rename itself durable


def fsync_directory(path: Path) -> None:
    """Make the entries of a directory (a rename into it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
