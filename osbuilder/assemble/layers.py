"""Applying OCI image layers to the tree: whiteouts, links, and hostile input.

Member names are normalised (leading '/' and './' dropped); a name with a
'..' component is rejected. Parent paths are resolved within the image's
own root, so a symlink can never lead a later member outside it; hard links
must point at a regular file already in the image. Extended headers larger
than MAX_HEADER are refused before tarfile would read them into memory.
Every error names the image and the member.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterator
from typing import IO

from osbuilder.assemble.entry import Entry, Kind
from osbuilder.assemble.inflate import decompressed
from osbuilder.assemble.tree import Tree, TreeError
from osbuilder.oci import mediatypes

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_HEADER = 1024 * 1024

_KINDS = {
    tarfile.REGTYPE: Kind.FILE,
    tarfile.AREGTYPE: Kind.FILE,
    tarfile.CONTTYPE: Kind.FILE,
    tarfile.DIRTYPE: Kind.DIRECTORY,
    tarfile.SYMTYPE: Kind.SYMLINK,
    tarfile.CHRTYPE: Kind.CHAR,
    tarfile.BLKTYPE: Kind.BLOCK,
    tarfile.FIFOTYPE: Kind.FIFO,
}
_EXTENDED = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses oversized extended headers, which tarfile would read whole into memory."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED and self.size > MAX_HEADER:
            raise tarfile.ReadError(f"an extended header of {self.size} bytes")
        return super()._proc_member(tar)  # type: ignore[misc,no-any-return]


def layer_compression(media_type: str) -> str:
    """'gzip', 'zstd' or '' (an uncompressed tar), from a layer's media type."""
    if media_type.endswith("+zstd"):
        return "zstd"
    if media_type.endswith(("gzip", "+gzip")) or media_type in (
        mediatypes.OCI_LAYER_GZIP,
        mediatypes.DOCKER_LAYER_GZIP,
    ):
        return "gzip"
    return ""


def read_layer(
    tree: Tree,
    blob: IO[bytes],
    media_type: str,
    *,
    base: str,
    source: str,
    location: str,
    what: str,
) -> None:
    """Decompress and apply one layer blob; any failure is one TreeError naming `what`."""
    with decompressed(blob, layer_compression(media_type)) as stream:
        read_tar(tree, stream, base=base, source=source, location=location, what=what)


def read_tar(
    tree: Tree, stream: IO[bytes], *, base: str, source: str, location: str, what: str
) -> None:
    """Apply one layer, given as its uncompressed tar stream."""
    try:
        reader = _tar_stream(stream)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise TreeError(f"{what}: corrupt layer ({exc})") from None
    with reader:
        apply_layer(tree, reader, base=base, source=source, location=location, what=what)


def _tar_stream(stream: IO[bytes]) -> tarfile.TarFile:
    return tarfile.open(fileobj=stream, mode="r|", tarinfo=_BoundedTarInfo)


def apply_layer(
    tree: Tree, layer: tarfile.TarFile, *, base: str, source: str, location: str, what: str
) -> None:
    """Apply one layer to the image rooted at `base` in the tree."""
    added: set[str] = set()  # paths this layer wrote: its own whiteouts spare them
    try:
        for member in _members(layer):
            _apply(tree, layer, member, base, source, location, added)
    except TreeError as exc:
        raise TreeError(f"{what}: {exc}") from None
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise TreeError(f"{what}: corrupt layer ({exc})") from None


def _members(layer: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while True:
        member = layer.next()
        if member is None:
            return
        yield member


def member_name(raw: str) -> str:
    """Normalise a member name; reject one that climbs out with '..'."""
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise TreeError(f"member {raw!r} climbs out of the image root ('..'); refused")
    return "/".join(parts)


def _apply(
    tree: Tree,
    layer: tarfile.TarFile,
    member: tarfile.TarInfo,
    base: str,
    source: str,
    location: str,
    added: set[str],
) -> None:
    name = member_name(member.name)
    if not name:
        return
    directory, leaf = posixpath.split(name)
    if leaf.startswith(WHITEOUT):
        parent = tree.resolve(directory, base=base, follow_last=True) if directory else base
        if leaf == OPAQUE:
            for path in [p for p in tree.entries if p.startswith(parent + "/") and p not in added]:
                tree.entries.pop(path, None)
        else:
            hidden = leaf[len(WHITEOUT) :]
            if hidden in ("", ".", "..") or "/" in hidden:
                raise TreeError(f"member {member.name!r} is not a valid whiteout")
            hidden_path = f"{parent}/{hidden}" if parent else hidden
            if hidden_path not in added:
                tree.remove(hidden_path)
        return
    kind = _KINDS.get(member.type)
    if kind is None and not member.islnk():
        raise TreeError(f"member {member.name!r} has an unsupported type {member.type!r}")
    parent = tree.resolve(directory, base=base, follow_last=True) if directory else base
    path = f"{parent}/{leaf}" if parent else leaf
    entry = Entry(
        path=path,
        kind=kind or Kind.FILE,
        mode=member.mode & 0o7777,
        uid=member.uid,
        gid=member.gid,
        mtime=int(member.mtime),
        devmajor=member.devmajor,
        devminor=member.devminor,
        xattrs=_xattrs(member),
        source=source,
        location=location,
    )
    if member.islnk():
        target = tree.get(tree.resolve(member_name(member.linkname), base=base))
        if target is None or target.kind is not Kind.FILE or target.content is None:
            raise TreeError(
                f"member {member.name!r} is a hard link to {member.linkname!r}, which is not a "
                "regular file of the image"
            )
        entry.kind, entry.content = Kind.FILE, target.content
    elif entry.kind is Kind.SYMLINK:
        entry.linkname = member.linkname
    elif entry.kind is Kind.FILE:
        data = layer.extractfile(member)
        if data is None:  # pragma: no cover - tarfile gives a reader for every file
            raise TreeError(f"member {member.name!r} has no data")
        entry.content = tree.spool.write(data, member.size)
    tree.put(entry)  # over a directory, a directory keeps what is below it
    added.add(path)


def _xattrs(member: tarfile.TarInfo) -> dict[str, bytes]:
    prefix = "SCHILY.xattr."
    return {
        key[len(prefix) :]: value.encode("utf-8", "surrogateescape")
        for key, value in member.pax_headers.items()
        if key.startswith(prefix)
    }
