"""Applying OCI image layers to the tree: whiteouts, links, and hostile input.

A layer arrives as the index of an uncompressed tar kept in a file (see
snapshots.py and tarindex.py): its members' headers, each with the offset of its
data in that file, so file contents are never copied, only referred to. Applying
normalises member names (leading '/' and './' dropped) and rejects a name with a
'..' component; parent paths are resolved within the image's own root, so a
symlink can never lead a later member outside it; hard links must point at a
regular file already in the image. Every error names the image and the member.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from osbuilder.assemble.entry import Content, Entry, Kind
from osbuilder.assemble.tree import Tree, TreeError
from osbuilder.oci import mediatypes

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"

# By tar type flag, as the index keeps it (tarfile's REGTYPE, AREGTYPE, ... : a warm build
# reads no tar, so it does not load tarfile).
_KINDS = {
    "0": Kind.FILE,
    "\0": Kind.FILE,  # a regular file, in old tars
    "7": Kind.FILE,  # a contiguous file
    "5": Kind.DIRECTORY,
    "2": Kind.SYMLINK,
    "3": Kind.CHAR,
    "4": Kind.BLOCK,
    "6": Kind.FIFO,
}
_HARDLINK = "1"


class Member(NamedTuple):
    """One tar member's header; `offset` is where its data starts in the tar's file."""

    name: str
    type: str  # the tar type flag, e.g. "0" (file), "5" (directory)
    mode: int
    uid: int
    gid: int
    mtime: int
    size: int
    offset: int
    linkname: str
    devmajor: int
    devminor: int
    xattrs: dict[str, str]  # as in the PAX header (values decoded with surrogateescape)


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


# --- applying ------------------------------------------------------------------------------


def apply_layer(
    tree: Tree,
    members: list[Member],
    data: Path,
    *,
    base: str,
    source: str,
    location: str,
    what: str,
) -> None:
    """Apply one layer, whose file contents are in `data`, to the image rooted at `base`."""
    added: set[str] = set()  # paths this layer wrote: its own whiteouts spare them
    # Where each directory named by members resolves to, kept while no symlink is made,
    # replaced or removed (resolution follows nothing else): most members share theirs.
    parents: dict[str, str] = {}
    try:
        for member in members:
            _apply(tree, member, data, base, source, location, added, parents)
    except TreeError as exc:
        raise TreeError(f"{what}: {exc}") from None


def _ancestors(path: str) -> Iterator[str]:
    """`path` and each directory above it."""
    while path:
        yield path
        path = posixpath.dirname(path)


def member_name(raw: str) -> str:
    """Normalise a member name; reject one that climbs out with '..'."""
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise TreeError(f"member {raw!r} climbs out of the image root ('..'); refused")
    return "/".join(parts)


def _apply(
    tree: Tree,
    member: Member,
    data: Path,
    base: str,
    source: str,
    location: str,
    added: set[str],
    parents: dict[str, str],
) -> None:
    name = member_name(member.name)
    if not name:
        return
    directory, _, leaf = name.rpartition("/")  # (a normalised name: posixpath.split's)
    parent = parents.get(directory)
    if parent is None:
        parent = tree.resolve(directory, base=base, follow_last=True) if directory else base
        parents[directory] = parent
    if leaf.startswith(WHITEOUT):
        parents.clear()  # what goes may be a symlink that directories resolved through
        if leaf == OPAQUE:
            # What lower layers have below `parent` goes; this layer's own entries stay, and
            # so do the directories they are in (a tree has no entry without its parent).
            below = parent + "/"
            kept = {a for path in added if path.startswith(below) for a in _ancestors(path)}
            for path in [p for p in tree.entries if p.startswith(below) and p not in kept]:
                tree.entries.pop(path, None)
        else:
            hidden = leaf[len(WHITEOUT) :]
            if hidden in ("", ".", "..") or "/" in hidden:
                raise TreeError(f"member {member.name!r} is not a valid whiteout")
            hidden_path = f"{parent}/{hidden}" if parent else hidden
            if hidden_path not in added:
                tree.remove(hidden_path)
        return
    hardlink = member.type == _HARDLINK
    kind = _KINDS.get(member.type)
    if kind is None and not hardlink:
        raise TreeError(f"member {member.name!r} has an unsupported type {member.type!r}")
    path = f"{parent}/{leaf}" if parent else leaf
    entry = Entry(
        path=path,
        kind=kind or Kind.FILE,
        mode=member.mode,
        uid=member.uid,
        gid=member.gid,
        mtime=member.mtime,
        devmajor=member.devmajor,
        devminor=member.devminor,
        xattrs={k: v.encode("utf-8", "surrogateescape") for k, v in member.xattrs.items()},
        source=source,
        location=location,
    )
    if hardlink:
        target = tree.get(tree.resolve(member_name(member.linkname), base=base))
        if target is None or target.kind is not Kind.FILE or target.content is None:
            raise TreeError(
                f"member {member.name!r} is a hard link to {member.linkname!r}, which is not a "
                "regular file of the image"
            )
        entry.content = target.content
    elif entry.kind is Kind.SYMLINK:
        entry.linkname = member.linkname
    elif entry.kind is Kind.FILE:
        entry.content = Content(data, member.size, member.offset)
    old = tree.get(path)
    if entry.kind is Kind.SYMLINK or (
        old is not None
        and (old.kind is Kind.SYMLINK or (old.kind is Kind.DIRECTORY and kind is not old.kind))
    ):
        parents.clear()  # a symlink comes or goes (a directory replaced takes what is below)
    tree.put(entry)  # over a directory, a directory keeps what is below it
    added.add(path)
