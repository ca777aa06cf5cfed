"""fstab-style mount options to mount(2)'s flags and data string, as LinuxKit reads runtime.json.

An option that is no flag (size=, lowerdir=, mode= ...) belongs to the filesystem and is
passed on in the data string, in order.
"""

from __future__ import annotations

from collections.abc import Iterable

from osbuilder.guest import syscalls as sc

# option -> (flag, True when the option clears the flag rather than sets it)
_FLAGS: dict[str, tuple[int, bool]] = {
    "async": (sc.MS_SYNCHRONOUS, True),
    "atime": (sc.MS_NOATIME, True),
    "bind": (sc.MS_BIND, False),
    "defaults": (0, False),
    "dev": (sc.MS_NODEV, True),
    "diratime": (sc.MS_NODIRATIME, True),
    "dirsync": (sc.MS_DIRSYNC, False),
    "exec": (sc.MS_NOEXEC, True),
    "mand": (sc.MS_MANDLOCK, False),
    "noatime": (sc.MS_NOATIME, False),
    "nodev": (sc.MS_NODEV, False),
    "nodiratime": (sc.MS_NODIRATIME, False),
    "noexec": (sc.MS_NOEXEC, False),
    "nomand": (sc.MS_MANDLOCK, True),
    "norelatime": (sc.MS_RELATIME, True),
    "nostrictatime": (sc.MS_STRICTATIME, True),
    "nosuid": (sc.MS_NOSUID, False),
    "private": (sc.MS_PRIVATE, False),
    "rprivate": (sc.MS_PRIVATE | sc.MS_REC, False),
    "rbind": (sc.MS_BIND | sc.MS_REC, False),
    "relatime": (sc.MS_RELATIME, False),
    "remount": (sc.MS_REMOUNT, False),
    "ro": (sc.MS_RDONLY, False),
    "rw": (sc.MS_RDONLY, True),
    "shared": (sc.MS_SHARED, False),
    "rshared": (sc.MS_SHARED | sc.MS_REC, False),
    "slave": (sc.MS_SLAVE, False),
    "rslave": (sc.MS_SLAVE | sc.MS_REC, False),
    "strictatime": (sc.MS_STRICTATIME, False),
    "suid": (sc.MS_NOSUID, True),
    "sync": (sc.MS_SYNCHRONOUS, False),
    "unbindable": (sc.MS_UNBINDABLE, False),
}

PROPAGATION_FLAGS = sc.MS_SHARED | sc.MS_PRIVATE | sc.MS_SLAVE | sc.MS_UNBINDABLE


def parse_mount_options(options: Iterable[str]) -> tuple[int, str]:
    """Return (flags, data) for mount(2)."""
    flags = 0
    data: list[str] = []
    for option in options:
        known = _FLAGS.get(option)
        if known is None:
            data.append(option)
            continue
        flag, clears = known
        if clears:
            flags &= ~flag
        else:
            flags |= flag
    return flags, ",".join(data)
