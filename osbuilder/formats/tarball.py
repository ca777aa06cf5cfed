"""Write a root filesystem as a PAX tar archive, each member annotated with where it came from.

Every member carries two PAX records, osbuilder's names for LinuxKit's LINUXKIT.source and
LINUXKIT.location: OSBUILDER.source (the image or file it came from) and OSBUILDER.location
(the part of the spec, e.g. "services[1]"). Extended attributes travel as SCHILY.xattr.NAME
records, which GNU tar and libarchive both read. Owners are numeric only (no user or group
names) and no atime or ctime is stored, so the output depends on the entries alone.
"""

from __future__ import annotations

import stat
import tarfile
from collections.abc import Iterable
from typing import IO

from osbuilder.assemble.entry import Content, Entry, Kind

SOURCE_RECORD = "OSBUILDER.source"
LOCATION_RECORD = "OSBUILDER.location"
XATTR_RECORD_PREFIX = "SCHILY.xattr."

_MEMBER_TYPE = {
    Kind.FILE: tarfile.REGTYPE,
    Kind.DIRECTORY: tarfile.DIRTYPE,
    Kind.SYMLINK: tarfile.SYMTYPE,
    Kind.CHAR: tarfile.CHRTYPE,
    Kind.BLOCK: tarfile.BLKTYPE,
    Kind.FIFO: tarfile.FIFOTYPE,
}


def write_tar(entries: Iterable[Entry], out: IO[bytes]) -> None:
    """Write `entries` to `out` as a PAX tar archive, in the order given.

    The first entry of a hard-link group (entries sharing one Content) carries the data;
    the others become hard links to its path. File content is streamed from the spool files.
    """
    # id(Content) -> the path that carries its data, and the Content (held, so that its
    # id cannot be reused by another while `entries` is consumed)
    data_paths: dict[int, tuple[str, Content]] = {}
    # Stream mode ("w|") only ever writes: `out` may be a pipe or a compressor.
    with tarfile.open(
        fileobj=out,
        mode="w|",
        format=tarfile.PAX_FORMAT,
        encoding="utf-8",
        errors="surrogateescape",  # names that are not UTF-8 keep their bytes
    ) as archive:
        for entry in entries:
            member = _member(entry)
            content = entry.content
            if content is None:
                archive.addfile(member)
            elif id(content) in data_paths:
                member.type = tarfile.LNKTYPE
                member.linkname = data_paths[id(content)][0]
                archive.addfile(member)
            else:
                data_paths[id(content)] = (entry.path, content)
                member.size = content.size
                with content.open() as data:
                    archive.addfile(member, data)


def _member(entry: Entry) -> tarfile.TarInfo:
    member = tarfile.TarInfo(entry.path)
    member.type = _MEMBER_TYPE[entry.kind]
    member.mode = stat.S_IMODE(entry.mode)
    member.uid = entry.uid
    member.gid = entry.gid
    member.mtime = entry.mtime
    member.linkname = entry.linkname
    member.devmajor = entry.devmajor
    member.devminor = entry.devminor
    member.pax_headers = _pax_records(entry)
    return member


def _pax_records(entry: Entry) -> dict[str, str]:
    records = {SOURCE_RECORD: entry.source, LOCATION_RECORD: entry.location}
    for name, value in sorted(entry.xattrs.items()):
        # tarfile takes str values: surrogateescape carries arbitrary bytes through, and
        # tarfile then writes them raw (marking the header hdrcharset=BINARY).
        records[XATTR_RECORD_PREFIX + name] = value.decode("utf-8", "surrogateescape")
    return records
