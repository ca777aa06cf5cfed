"""Paths for the init: the part of pathlib.Path it uses, on os.path.

pathlib is the costliest import of PID 1's start: it imports urllib.parse (for as_uri)
and with it ipaddress, and ntpath. Under valgrind, importing it took 13 M of the 110 M
instructions of the init's imports and interpreter start, and kept 0.6 MB resident; under
emulation on one vCPU every instruction is boot time. This class has pathlib's names and
meaning for what the guest does with a path (joining, its name and parent, reading,
listing, making and removing), so code written against pathlib.Path reads the same and
accepts a pathlib.Path as well (a test's tmp_path): both are os.PathLike.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from fnmatch import fnmatchcase


def _normal(path: str) -> str:
    """As pathlib spells a path: no empty or '.' parts, no trailing slash."""
    parts = [part for part in path.split("/") if part and part != "."]
    if path.startswith("/"):
        return "/" + "/".join(parts)
    return "/".join(parts) or "."


class Path(os.PathLike[str]):
    """A POSIX path, as pathlib.Path (the methods the guest uses, with their semantics)."""

    __slots__ = ("_path",)

    def __init__(self, path: str | os.PathLike[str] = ".") -> None:
        self._path = _normal(os.fspath(path))

    def __fspath__(self) -> str:
        return self._path

    def __str__(self) -> str:
        return self._path

    def __repr__(self) -> str:
        return f"Path({self._path!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, os.PathLike):  # also pathlib's, which defers to this
            return self._path == _normal(os.fspath(other))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._path)

    def __lt__(self, other: Path) -> bool:
        return self._path < other._path

    def __truediv__(self, other: str | os.PathLike[str]) -> Path:
        return Path(os.path.join(self._path, os.fspath(other)))

    @property
    def name(self) -> str:
        return os.path.basename(self._path)

    @property
    def suffix(self) -> str:
        return os.path.splitext(self.name)[1]

    @property
    def parent(self) -> Path:
        return Path(os.path.dirname(self._path) or ".")

    def with_name(self, name: str) -> Path:
        return self.parent / name

    def exists(self) -> bool:
        return os.path.exists(self._path)

    def is_file(self) -> bool:
        return os.path.isfile(self._path)

    def is_dir(self) -> bool:
        return os.path.isdir(self._path)

    def iterdir(self) -> Iterator[Path]:
        for name in os.listdir(self._path):
            yield self / name

    def glob(self, pattern: str) -> Iterator[Path]:
        """The entries of this directory whose names match `pattern` (one level, as
        pathlib's glob of a pattern without '/'); none when it is no directory."""
        try:
            names = os.listdir(self._path)
        except OSError:
            return
        for name in names:
            if fnmatchcase(name, pattern):
                yield self / name

    def read_text(self, encoding: str | None = None, errors: str | None = None) -> str:
        with open(self._path, encoding=encoding, errors=errors) as file:
            return file.read()

    def read_bytes(self) -> bytes:
        with open(self._path, "rb") as file:
            return file.read()

    def write_bytes(self, data: bytes) -> int:
        with open(self._path, "wb") as file:
            return file.write(data)

    def mkdir(self, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        try:
            if parents:
                os.makedirs(self._path, mode)
            else:
                os.mkdir(self._path, mode)
        except FileExistsError:
            if not exist_ok or not os.path.isdir(self._path):
                raise

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            os.unlink(self._path)
        except FileNotFoundError:
            if not missing_ok:
                raise
