"""User data for a VM: `osbuilder run --data TEXT | --data-file FILE` (LinuxKit's -data).

The data goes into STATE/data.iso, an ISO 9660 volume labelled `cidata` holding it as
`config` (the name LinuxKit's run uses), attached as a read-only virtio disk after the
data disks. The metadata package (pkg/metadata) finds it at boot and puts it in
/run/config.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pycdlib

from osbuilder.errors import UserError

VOLUME_LABEL = "cidata"
FILE_NAME = "config"
MAX_SIZE = 16 << 20  # user data is configuration, not a payload


def read_data_file(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"--data-file {path}: cannot read it: {exc.strerror}") from None
    return checked(data, f"--data-file {path}")


def checked(data: bytes, what: str) -> bytes:
    if len(data) > MAX_SIZE:
        raise UserError(f"{what}: {len(data)} bytes; user data is at most {MAX_SIZE >> 20} MiB")
    return data


def write_data_iso(data: bytes, path: Path) -> None:
    """The ISO, written under a temporary name and renamed: never a half-written one."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=VOLUME_LABEL, rock_ridge="1.09", joliet=3)
    iso.add_fp(
        io.BytesIO(data),
        len(data),
        f"/{FILE_NAME.upper()}.;1",
        rr_name=FILE_NAME,
        joliet_path=f"/{FILE_NAME}",
    )
    partial = path.with_name(f".{path.name}.partial")
    try:
        iso.write(str(partial))
        os.replace(partial, path)
    finally:
        iso.close()
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
