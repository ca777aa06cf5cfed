"""Volumes: /containers/volumes/NAME/{lower,tmp,merged}, ready on merged/ before onboot.

With tmp/ the volume is writable: a tmpfs on tmp/ holds overlay's upper and work dirs.
Without it the volume is read-only: lower/ bound onto merged/ read-only (LinuxKit mounts
a tmpfs on tmp/ even then, and fails when tmp/ is absent).
"""

from __future__ import annotations

from osbuilder.guest import syscalls
from osbuilder.guest.console import Console
from osbuilder.guest.fspath import Path

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at boot

if TYPE_CHECKING:
    from osbuilder.guest.protocols import Mounter


def mount_volume(volume: Path, mounter: Mounter) -> str:
    """Mount one volume; returns 'read-write' or 'read-only'. Raises OSError."""
    lower, tmp, merged = volume / "lower", volume / "tmp", volume / "merged"
    lower.mkdir(exist_ok=True)
    merged.mkdir(exist_ok=True)
    if not tmp.is_dir():
        mounter.mount(str(lower), str(merged), None, syscalls.MS_BIND, "")
        mounter.mount(
            None, str(merged), None, syscalls.MS_REMOUNT | syscalls.MS_BIND | syscalls.MS_RDONLY, ""
        )
        return "read-only"
    mounter.mount("tmpfs", str(tmp), "tmpfs", syscalls.MS_RELATIME, "mode=0755")
    (tmp / "upper").mkdir(exist_ok=True)
    (tmp / "work").mkdir(exist_ok=True)
    data = f"lowerdir={lower},upperdir={tmp / 'upper'},workdir={tmp / 'work'}"
    mounter.mount("overlay", str(merged), "overlay", syscalls.MS_RELATIME, data)
    return "read-write"


def mount_volumes(volumes: Path, mounter: Mounter, console: Console) -> None:
    try:
        names = sorted(entry for entry in volumes.iterdir() if entry.is_dir())
    except FileNotFoundError:
        return
    for volume in names:
        try:
            mode = mount_volume(volume, mounter)
            console.info(f"volume {volume.name}: {mode}")
        except OSError as error:
            console.error(f"volume {volume.name} FAILED: {error.strerror or error}")
