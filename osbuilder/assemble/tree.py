"""The root filesystem being assembled: a tree of entries whose contents stay on disk.

Paths are resolved inside the tree the way a chroot would: `..` never climbs
above the root, absolute symlinks point into the tree, and a symlink in the
middle of a path is followed within the tree (so kernel.tar's lib/modules
lands in usr/lib/modules when lib is a symlink to usr/lib). Nothing is ever
written to the host under a name from an image: layer contents stay in their
snapshots (named by digest), generated contents go to one spool file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from osbuilder.assemble.entry import Content, Entry, Kind
from osbuilder.errors import UserError, cannot_write

MAX_SYMLINK_HOPS = 40
MAX_PATH_BYTES = 4095  # PATH_MAX less the NUL: what the kernel can create
_CHUNK = 1024 * 1024


class TreeError(UserError):
    """An image's content cannot be placed in the tree (names the image and member)."""


class Spool:
    """Generated contents (configs, `files`, ...), appended to one file in a private directory.

    One file rather than one per entry: creating thousands of small files costs
    far more than writing their bytes (about 1 ms each on a VM's disk).
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / "contents"
        try:
            self._file = self.path.open("wb")
        except OSError as exc:
            raise cannot_write(self.path, exc) from None
        self._size = 0

    def write(self, source: IO[bytes], size: int) -> Content:
        offset, remaining = self._size, size
        while remaining > 0:
            chunk = source.read(min(_CHUNK, remaining))
            if not chunk:
                raise TreeError(f"content ends {remaining} bytes early")
            self._put(chunk)
            remaining -= len(chunk)
        self._size += size
        return Content(self.path, size, offset)

    def write_chunks(self, chunks: Iterable[bytes]) -> Content:
        """The concatenated chunks (of a length known only at their end) as one content."""
        offset = self._size
        for chunk in chunks:
            self._put(chunk)
            self._size += len(chunk)
        return Content(self.path, self._size - offset, offset)

    def write_bytes(self, data: bytes) -> Content:
        offset = self._size
        self._put(data)
        self._size += len(data)
        return Content(self.path, len(data), offset)

    def copy_file(self, source: Path) -> Content:
        with source.open("rb") as stream:
            return self.write(stream, source.stat().st_size)

    def flush(self) -> None:
        """Make everything written so far readable through the Content objects."""
        try:
            self._file.flush()
        except OSError as exc:
            raise cannot_write(self.path, exc) from None

    def _put(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            raise cannot_write(self.path, exc) from None

    def close(self) -> None:
        # The spool is thrown away next: what could not be flushed now no longer matters
        # (a build that used it flushed it first), and must not hide the build's own error.
        with contextlib.suppress(OSError):
            self._file.close()


class Tree:
    """Entries by normalised path; the root ('') is an implicit directory, and every other
    entry's parent directory is an entry too."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.entries: dict[str, Entry] = {}

    # --- path resolution -------------------------------------------------------------------

    def resolve(self, name: str, *, base: str = "", follow_last: bool = False) -> str:
        """The tree path `name` refers to inside the sub-root `base` (an image's own root),
        following symlinks of its parents within that sub-root, as a chroot would."""
        pending = [p for p in reversed(name.split("/")) if p not in ("", ".")]  # next: last
        # resolved[0] is the sub-root, resolved[-1] the path so far; '..' pops back to the
        # parent's, never above the sub-root.
        resolved = ["/".join(p for p in base.split("/") if p)]
        hops = 0
        while pending:
            part = pending.pop()
            if part == "..":
                if len(resolved) > 1:
                    resolved.pop()
                continue
            current = resolved[-1]
            candidate = f"{current}/{part}" if current else part
            entry = self.entries.get(candidate)
            if entry is not None and entry.kind is Kind.SYMLINK and (pending or follow_last):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise TreeError(f"{name}: too many levels of symbolic links")
                target = entry.linkname
                if target.startswith("/"):
                    del resolved[1:]
                pending += [p for p in reversed(target.split("/")) if p not in ("", ".")]
                continue
            resolved.append(candidate)
        path = resolved[-1]
        if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
            raise TreeError(f"{name[:80]}...: path longer than {MAX_PATH_BYTES} bytes")
        return path

    # --- changes ---------------------------------------------------------------------------------

    def put(self, entry: Entry) -> None:
        """Add or replace the entry at entry.path (already resolved), making parent dirs.

        A non-directory replacing a directory removes what was below it.
        """
        path = entry.path
        if not path:
            return  # the root's own metadata is not an entry
        self._make_parents(path, entry)
        old = self.entries.get(path)
        if old is not None and old.kind is Kind.DIRECTORY and entry.kind is not Kind.DIRECTORY:
            self.remove_below(path)
        self.entries[path] = entry

    def remove(self, path: str) -> None:
        """Whiteout: the path and everything below it disappear."""
        old = self.entries.pop(path, None)
        # Every entry's parent is an entry too: only a directory has anything below it.
        if not path or (old is not None and old.kind is Kind.DIRECTORY):
            self.remove_below(path)

    def remove_below(self, path: str) -> None:
        prefix = path + "/" if path else ""
        for name in [n for n in self.entries if n.startswith(prefix)]:
            del self.entries[name]

    def _make_parents(self, path: str, like: Entry) -> None:
        parent = path.rpartition("/")[0]  # (a normalised path: posixpath.dirname's)
        missing = []
        while parent and parent not in self.entries:
            missing.append(parent)
            parent = parent.rpartition("/")[0]
        if parent and self.entries[parent].kind is not Kind.DIRECTORY:
            # A resolved path's parents are never symlinks; a file there is replaced.
            self.remove(parent)
            missing.append(parent)
        for name in reversed(missing):
            self.entries[name] = Entry(
                name,
                Kind.DIRECTORY,
                0o755,
                mtime=like.mtime,
                source=like.source,
                location=like.location,
            )

    def get(self, path: str) -> Entry | None:
        return self.entries.get(path)

    # --- reading out ------------------------------------------------------------------------------

    def walk(self) -> Iterator[Entry]:
        """Every entry, parents before children, in byte order of the paths."""
        for name in sorted(self.entries, key=lambda n: n.split("/")):
            yield self.entries[name]
