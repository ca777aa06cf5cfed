"""Files that appear only when complete: build outputs, the content store's files.

A file is written under a hidden temporary name in its destination directory, flushed
to disk, and renamed into place only when writing succeeded, so an interrupted or failed
write never leaves a file that looks finished (and never truncates a previous one).
Files that belong together (a kernel and its initrd) are renamed together, once all of
them are complete: a failed build never leaves a new kernel next to an old initrd.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import time
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
    Each temporary file is locked (flock) until it is committed or discarded, so what a
    killed process left can be told from what a running one is writing
    (`remove_abandoned`).
    """

    def __init__(self) -> None:
        self._pending: list[_Pending] = []

    @contextmanager
    def create(
        self,
        path: Path,
        mode: int | None = None,
        *,
        readable: bool = False,
        exclusive: bool = False,
    ) -> Iterator[BinaryIO]:
        """Open a new file that will become `path` on commit (see atomic_output for the
        arguments). If the block raises, the file is removed at once.

        `exclusive`: `path` must not exist when committed (FileExistsError otherwise, and
        the set's exclusive files already in place are removed): what must never clobber
        a file, a private key, is linked into place, not renamed over what is there.
        """
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}{PARTIAL}")
        pending = _Pending(temporary, path, exclusive=exclusive)
        self._pending.append(pending)
        try:
            access = os.O_RDWR if readable else os.O_WRONLY
            try:
                fd = os.open(
                    pending.temporary, access | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666
                )
            except FileExistsError:  # someone else's file, by a 1 in 2**32 chance: keep it
                self._pending.remove(pending)
                raise
            pending.lock = os.dup(fd)  # the same open file: the lock outlives `file`
            fcntl.flock(pending.lock, fcntl.LOCK_EX)
            if mode is not None:
                os.fchmod(fd, mode)
            with os.fdopen(fd, "w+b" if readable else "wb") as file:
                yield file
                file.flush()
                os.fsync(file.fileno())
        except BaseException:
            if pending in self._pending:
                pending.remove()
                self._pending.remove(pending)
            raise

    def commit(self) -> None:
        """Rename every file written into place, and make the renames durable."""
        pending, self._pending = self._pending, []
        done = 0
        try:
            for each in pending:
                if each.exclusive:
                    _link_new(each.temporary, each.final)
                    done += 1
                    each.remove()
                else:
                    os.replace(each.temporary, each.final)
                    done += 1
                    each.release()
        except BaseException:
            for each in pending[done:]:
                each.remove()
            # Exclusive files did not exist before: taking them back leaves things as they were.
            for each in pending[:done]:
                if each.exclusive:
                    each.final.unlink(missing_ok=True)
                    each.remove()
            raise
        for directory in dict.fromkeys(each.final.parent for each in pending):
            fsync_directory(directory)

    def discard(self) -> None:
        """Remove every file written and not committed."""
        pending, self._pending = self._pending, []
        for each in pending:
            each.remove()


def _link_new(temporary: Path, final: Path) -> None:
    """Give `temporary` the name `final`, which must not exist (FileExistsError)."""
    try:
        os.link(temporary, final)  # atomic, and refuses an existing name
    except FileExistsError:
        raise
    except OSError as exc:
        # File systems without hard links (vfat, some FUSE): check, then rename. The race
        # left is another writer creating `final` in between, which the check cannot see.
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if os.path.lexists(final):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(final)) from None
        os.rename(temporary, final)


PARTIAL = ".partial"  # the suffix of temporary files: .NAME.TOKEN.partial
_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{8}" + re.escape(PARTIAL), re.DOTALL)
ABANDONED_AFTER = 60.0  # seconds: a younger unlocked file may be one whose lock is coming


class _Pending:
    def __init__(self, temporary: Path, final: Path, *, exclusive: bool = False) -> None:
        self.temporary, self.final = temporary, final
        self.exclusive = exclusive
        self.lock: int | None = None

    def release(self) -> None:
        if self.lock is not None:
            os.close(self.lock)
            self.lock = None

    def remove(self) -> None:
        self.temporary.unlink(missing_ok=True)
        self.release()


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold `path` (a file or a directory) locked (flock, exclusive) for the block."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def remove_abandoned(directory: Path) -> int:
    """Remove the temporary files a killed process left in `directory` (kill -9, a power
    cut): unlocked and older than ABANDONED_AFTER. Returns how many."""
    removed = 0
    for path in directory.glob(f".*{PARTIAL}"):
        if not _TEMPORARY.fullmatch(path.name):  # only names FileSet makes: not another tool's
            continue
        with abandoned(path) as gone:
            if gone:
                path.unlink(missing_ok=True)
                removed += 1
    return removed


@contextmanager
def abandoned(path: Path) -> Iterator[bool]:
    """Whether `path` (a file or a directory) is no one's; it stays so within the block."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # gone, or a symlink: not ours to remove
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its writer is alive
            yield False
            return
        yield time.time() - os.fstat(fd).st_mtime > ABANDONED_AFTER
    finally:
        os.close(fd)


def fsync_directory(path: Path) -> None:
    """Make the entries of a directory (a rename into it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
