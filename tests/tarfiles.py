"""Extracting tars in tests, on every Python the project supports.

tarfile's extraction filters came with Python 3.12 and 3.11.4; Debian 12's python3 is
3.11.2. Where they exist, the 'data' filter guards against a tar that escapes its
directory; without them the tar is extracted as tarfile always did, which is safe for the
tars the tests extract (osbuilder's own outputs and images).
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable
from pathlib import Path


def extract_all(
    tar: tarfile.TarFile,
    into: Path,
    members: Iterable[tarfile.TarInfo] | None = None,
    *,
    trusted: bool = False,
) -> None:
    """tar.extractall; `trusted` keeps what the 'data' filter would refuse or change
    (absolute symlinks, device nodes, modes)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(into, members, filter="fully_trusted" if trusted else "data")
    else:
        tar.extractall(into, members)
