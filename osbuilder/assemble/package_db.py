"""The package databases of the init images, unioned rather than overwritten.

Init images are merged into / one after the other, so a file two of them have is the
last one's. For the databases of installed packages that is wrong: the root holds the
packages of every init image, and tools that read the database (vulnerability scanners,
SBOM generators, osbuilder's own sbom.spdx.json) would see only the last image's. As
LinuxKit does for apk's `lib/apk/db/installed` (whose databases it concatenates), the
databases of the init images are joined: apk's concatenated, dpkg's `var/lib/dpkg/status`
(Debian-based images such as osbuilder's) as one paragraph per package and architecture,
the last image's when two have one, sorted by name as dpkg writes it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from osbuilder.assemble.entry import Content, Entry, Kind
from osbuilder.assemble.tree import Tree

DPKG_STATUS = "var/lib/dpkg/status"
APK_INSTALLED = "lib/apk/db/installed"


def _join_apk(databases: list[bytes]) -> bytes:
    return b"".join(database.rstrip(b"\n") + b"\n\n" for database in databases)


def _join_dpkg(databases: list[bytes]) -> bytes:
    paragraphs: dict[tuple[bytes, bytes], bytes] = {}
    for database in databases:
        for paragraph in re.split(rb"\n\s*\n", database.strip(b"\n")):
            if paragraph.strip():
                paragraphs[_field(paragraph, b"Package"), _field(paragraph, b"Architecture")] = (
                    paragraph
                )
    return b"".join(paragraphs[key] + b"\n\n" for key in sorted(paragraphs))


def _field(paragraph: bytes, name: bytes) -> bytes:
    found = re.search(rb"^" + name + rb":[ \t]*(.*)$", paragraph, re.MULTILINE)
    return found.group(1).strip() if found else b""


JOINERS: dict[str, Callable[[list[bytes]], bytes]] = {
    APK_INSTALLED: _join_apk,
    DPKG_STATUS: _join_dpkg,
}


class PackageDatabases:
    """Takes each init image's databases as the image is merged, then writes their union."""

    def __init__(self) -> None:
        self._seen: dict[str, list[Content]] = {path: [] for path in JOINERS}

    def take(self, tree: Tree) -> dict[str, Content]:
        """Note the databases the image merged last brought (the ones now in `tree`), and
        return them by path."""
        brought = {}
        for path, seen in self._seen.items():
            entry = tree.get(path)
            if entry is None or entry.kind is not Kind.FILE or entry.content is None:
                continue
            if not seen or entry.content is not seen[-1]:
                seen.append(entry.content)
                brought[path] = entry.content
        return brought

    def write(self, tree: Tree, epoch: int, source: str) -> None:
        """Replace each database two or more images had by their union."""
        for path, seen in self._seen.items():
            last = tree.get(path)
            if len(seen) < 2 or last is None:
                continue
            tree.spool.flush()
            union = JOINERS[path]([content.read_bytes() for content in seen])
            tree.put(
                Entry(
                    path,
                    Kind.FILE,
                    last.mode,
                    last.uid,
                    last.gid,
                    mtime=epoch,
                    content=tree.spool.write_bytes(union),
                    source=source,
                    location="init",
                )
            )
