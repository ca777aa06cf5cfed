"""Indexing a layer's tar: its members' headers, each with where its data starts.

An index is made once per layer (snapshots.py keeps it next to the tar) and applying
the layer reads the index, never the tar. Extended headers larger than MAX_HEADER are
refused before tarfile would read them into memory, and so is data that runs past the
tar's end.
"""

from __future__ import annotations

import io
import tarfile
from typing import IO

from osbuilder.assemble.entry import FileWindow
from osbuilder.assemble.layers import Member
from osbuilder.assemble.tree import TreeError

MAX_HEADER = 1024 * 1024

_EXTENDED = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)
_XATTR = "SCHILY.xattr."


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses oversized extended headers, which tarfile would read whole into memory."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED and self.size > MAX_HEADER:
            raise tarfile.ReadError(f"an extended header of {self.size} bytes")
        return super()._proc_member(tar)  # type: ignore[misc,no-any-return]


def index_tar(file: IO[bytes], offset: int, size: int, what: str) -> list[Member]:
    """The members of the tar stored in `file` at `offset` (`size` bytes), headers only.

    Raises TreeError ("WHAT: corrupt layer (...)") for a tar that cannot be read, and for
    a member whose data runs past the end.
    """
    members: list[Member] = []
    try:
        window = io.BufferedReader(FileWindow(file, offset, size), 64 * 1024)
        with tarfile.open(fileobj=window, mode="r:", tarinfo=_BoundedTarInfo) as tar:
            while (info := tar.next()) is not None:
                members.append(_member(info, offset))
                if info.isreg() and info.offset_data + info.size > size:
                    missing = info.offset_data + info.size - size
                    raise TreeError(f"member {info.name!r}: content ends {missing} bytes early")
    except TreeError as exc:
        raise TreeError(f"{what}: {exc}") from None
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise TreeError(f"{what}: corrupt layer ({exc})") from None
    return members


def _member(info: tarfile.TarInfo, offset: int) -> Member:
    return Member(
        info.name,
        info.type.decode("latin-1"),
        info.mode & 0o7777,
        info.uid,
        info.gid,
        int(info.mtime),
        info.size if info.isreg() else 0,
        offset + info.offset_data,
        info.linkname,
        info.devmajor,
        info.devminor,
        {k[len(_XATTR) :]: v for k, v in info.pax_headers.items() if k.startswith(_XATTR)},
    )
