"""The same bytes stored once: identical read-only files of the containers become hard links.

Each container brings its own root, and roots made from one distribution carry the same
files (libc, libcrypto, busybox ...) two or three times over. After assembling, the regular
files under the read-only roots (a container's lower/, a read-only container's rootfs/, a
volume's lower/) that have the same bytes, mode, owner and extended attributes become one
Content: entries sharing a Content are hard links (entry.py), which every writer makes one
inode with several names, so the bytes are stored, unpacked and cached once.

Only there, because a write through one name of a hard link changes them all. Nothing
writes into those roots in place: a container writes through its overlay, whose lower layer
stays as it was (the write copies the file up into the container's own upper layer), and a
read-only root cannot be written at all. The system's own root (the init images, `files`)
is writable: its files are never linked.

Cheap: only files whose size and metadata collide are read, each distinct content once,
and a content two entries already share (one layer's file in two images) is not read at
all. Reproducible: the name whose entry stays (and carries the data where a writer must
choose one) is the first in the tree's walk order, and the other names take its mtime
(one inode has one).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable

from msgspec import Struct

from osbuilder.assemble.entry import Content, ContentReader, Entry, Kind
from osbuilder.assemble.tree import Tree

_CHUNK = 1024 * 1024

# What two files must have in common besides their bytes to be one inode.
_Metadata = tuple[int, int, int, int, tuple[tuple[str, bytes], ...]]


class Linked(Struct, frozen=True):
    """What linking saved: names that now share another file's inode, and the bytes their
    contents took."""

    files: int = 0
    size: int = 0


def link_identical_files(tree: Tree, roots: Iterable[str]) -> Linked:
    """Make the identical regular files below `roots` (tree paths of read-only roots) hard
    links to one another; returns what that saved."""
    prefixes = tuple(f"{root}/" for root in roots)
    if not prefixes:
        return Linked()
    alike: dict[_Metadata, list[Entry]] = defaultdict(list)
    for entry in tree.entries.values():
        if (
            entry.kind is Kind.FILE
            and entry.content is not None
            and entry.content.size > 0  # an empty file has nothing to share
            and entry.path.startswith(prefixes)
        ):
            alike[_metadata(entry)].append(entry)
    tree.spool.flush()  # generated contents (etc/hosts ...) are read too
    replaced: dict[int, Content] = {}  # id -> a content no longer used by the linked names
    files = 0
    with ContentReader(_CHUNK) as reader:
        for entries in alike.values():
            if len(entries) < 2:
                continue
            entries.sort(key=lambda entry: entry.path.split("/"))  # Tree.walk's order
            identities = _identities({entry.content for entry in entries}, reader)
            first: dict[object, Entry] = {}
            for entry in entries:
                assert entry.content is not None
                kept = first.setdefault(identities[entry.content], entry)
                if kept.content is entry.content:
                    continue  # the first of its kind, or already one of its links
                replaced[id(entry.content)] = entry.content
                entry.content, entry.mtime = kept.content, kept.mtime
                files += 1
    return Linked(files, sum(content.size for content in replaced.values()))


def _metadata(entry: Entry) -> _Metadata:
    assert entry.content is not None
    xattrs = tuple(sorted(entry.xattrs.items()))
    return (entry.content.size, entry.mode, entry.uid, entry.gid, xattrs)


def _identities(contents: set[Content | None], reader: ContentReader) -> dict[Content, object]:
    """What tells the contents' bytes apart: nothing to read when they are all one (the same
    bytes of the same file), else each one's sha256, read in file order."""
    present = {content for content in contents if content is not None}
    if len(present) == 1:
        return dict.fromkeys(present)
    ordered = sorted(present, key=lambda content: (str(content.path), content.offset))
    return {content: _sha256(content, reader) for content in ordered}


def _sha256(content: Content, reader: ContentReader) -> bytes:
    digest = hashlib.sha256()
    for chunk in reader.chunks(content):
        digest.update(chunk)
    return digest.digest()
