"""Turning package contents into deterministic layer entries.

Entries from a tar stream (mmdebstrap's) are normalised: names without a
leading './', mtimes clamped to SOURCE_DATE_EPOCH, only the PAX records that
carry meaning kept (xattrs such as security.capability), and globs of the
recipe's `drop` left out. Files of the recipe become entries of their own
layer, in sorted order.
"""

from __future__ import annotations

import fnmatch
import io
import os
import stat
import tarfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import IO

from osbuilder.errors import UserError
from osbuilder.oci.imagewriter import LayerWriter, dir_info, file_info
from osbuilder.pkg.bytecode import Bytecode
from osbuilder.pkg.recipe import FileEntry
from osbuilder.pkg.roottree import entry_name
from osbuilder.pkg.stdlib import PrunedStdlib

# Device nodes come from devtmpfs at boot: an image carries none.
ALWAYS_DROPPED = ("dev/*",)
_KEPT_PAX_PREFIXES = ("SCHILY.xattr.",)


class Dropper:
    """Decides which paths a recipe leaves out: what its `drop` globs match (and what is
    below), and, when it has `keep` globs, whatever they do not match, is not below a
    match, and is not a directory on the way to one."""

    def __init__(
        self,
        patterns: Iterable[str],
        keep: Iterable[str] | None = None,
        names: frozenset[str] = frozenset(),
    ) -> None:
        self.patterns = [p.strip("/") for p in (*ALWAYS_DROPPED, *patterns)]
        self.keep = None if keep is None else [p.strip("/").split("/") for p in keep]
        self.names = names  # exact paths left out too (what no program loads)

    def __call__(self, name: str) -> bool:
        if name in self.names:
            return True
        if self.keep is not None and not any(_on_the_way(name, k) for k in self.keep):
            return True
        return any(
            fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(name, p + "/*")
            for p in self.patterns
        )


def _on_the_way(name: str, pattern: list[str]) -> bool:
    """Whether `name` matches the glob `pattern` (split at '/'), is below a match, or is a
    directory above one: component by component, as far as the shorter goes."""
    parts = name.split("/")
    return all(fnmatch.fnmatchcase(part, glob) for part, glob in zip(parts, pattern, strict=False))


def normalise(member: tarfile.TarInfo, epoch: int) -> tarfile.TarInfo | None:
    """The member as it goes into a layer, or None for the archive's root entry."""
    name = entry_name(member.name)
    if name in ("", "."):
        return None
    member.name = name
    if member.islnk():
        member.linkname = entry_name(member.linkname)
    member.mtime = min(int(member.mtime), epoch)
    member.pax_headers = {
        k: v for k, v in member.pax_headers.items() if k.startswith(_KEPT_PAX_PREFIXES)
    }
    return member


def copy_stream(
    source: tarfile.TarFile,
    layer: LayerWriter,
    epoch: int,
    dropped: Dropper,
    what: str,
    bytecode: Bytecode | None = None,
    stdlib: PrunedStdlib | None = None,
) -> int:
    """Copy a tar stream into `layer`, normalised; returns the number of entries written."""
    gone: set[str] = set()
    count = 0
    for member in source:
        entry = normalise(member, epoch)
        if entry is None:
            continue
        if dropped(entry.name):
            gone.add(entry.name)
            continue
        if entry.islnk() and entry.linkname in gone:
            raise UserError(
                f"{what}: 'drop' removes {entry.linkname}, but {entry.name} is a hard link "
                "to it; drop both or neither"
            )
        data = source.extractfile(member) if entry.isfile() else None
        if stdlib is not None:
            if stdlib.withholds(entry, data):
                continue
            data = stdlib.take(entry, data)
        if bytecode is not None:
            data = bytecode.take(entry, data)
        layer.add(entry, data)
        count += 1
    if bytecode is not None:
        bytecode.finish(layer)
    return count


def add_files(
    layer: LayerWriter,
    directory: Path,
    entries: list[FileEntry],
    epoch: int,
    bytecode: Bytecode | None = None,
    stdlib: PrunedStdlib | None = None,
) -> None:
    """The recipe's `files`, with their parent directories, in sorted order."""
    items: dict[str, tarfile.TarInfo] = {}
    sources: dict[str, Path | bytes] = {}  # what a file entry holds: a host file or bytes

    def directory_entry(name: str, mode: int = 0o755) -> None:
        items.setdefault(name, dir_info(name, mode, epoch))

    for entry in entries:
        target = PurePosixPath(entry.path.lstrip("/"))
        for parent in reversed(target.parents[:-1]):
            directory_entry(str(parent))
        mode = int(entry.mode, 8) if entry.mode else None
        if entry.symlink is not None:
            items[str(target)] = _symlink(str(target), entry.symlink, epoch)
        elif entry.contents is not None:
            data = entry.contents.encode()
            items[str(target)] = file_info(str(target), len(data), mode or 0o644, epoch)
            sources[str(target)] = data
        else:
            assert entry.source is not None
            source = directory / entry.source
            if source.is_dir():
                items[str(target)] = dir_info(str(target), mode or 0o755, epoch)
                for path in sorted(source.rglob("*")):
                    if "__pycache__" in path.parts or path.suffix == ".pyc":
                        continue
                    _add_path(
                        items,
                        sources,
                        str(target / path.relative_to(source).as_posix()),
                        path,
                        None,
                        epoch,
                    )
            else:
                _add_path(items, sources, str(target), source, mode, epoch)
    for name in sorted(items):
        info = items[name]
        content = sources.get(name)
        if content is None:
            layer.add(info)
        elif isinstance(content, bytes):
            layer.add(info, io.BytesIO(content))
        else:
            with content.open("rb") as stream:
                passed: IO[bytes] | None = stream
                if stdlib is not None:
                    passed = stdlib.take(info, passed)
                if bytecode is not None:
                    passed = bytecode.take(info, passed)
                layer.add(info, passed)
    if bytecode is not None:
        bytecode.finish(layer)


def _add_path(
    items: dict[str, tarfile.TarInfo],
    sources: dict[str, Path | bytes],
    name: str,
    path: Path,
    mode: int | None,
    epoch: int,
) -> None:
    if path.is_symlink():
        items[name] = _symlink(name, os.readlink(path), epoch)
    elif path.is_dir():
        items[name] = dir_info(name, mode or 0o755, epoch)
    else:
        items[name] = file_info(name, path.stat().st_size, mode or _default_mode(path), epoch)
        sources[name] = path


def _symlink(name: str, target: str, epoch: int) -> tarfile.TarInfo:
    info = file_info(name, 0, 0o777, epoch)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def _default_mode(path: Path) -> int:
    if path.is_dir():
        return 0o755
    return 0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644


def read_tar(stream: IO[bytes]) -> tarfile.TarFile:
    return tarfile.open(fileobj=stream, mode="r|")
