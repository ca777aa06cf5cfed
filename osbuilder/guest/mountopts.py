"""fstab-style mount options to mount(2)'s flags and data string, as LinuxKit reads runtime.json.

An option that is no flag (size=, lowerdir=, mode= ...) belongs to the filesystem and is
passed on in the data string, in order.
"""

from __future__ import annotations

from collections.abc import Iterable

from osbuilder.guest import syscalls as sc

# flag -> (the option that sets it, the option that clears it)
_TOGGLES = {
    sc.MS_RDONLY: ("ro", "rw"),
    sc.MS_NOSUID: ("nosuid", "suid"),
    sc.MS_NODEV: ("nodev", "dev"),
    sc.MS_NOEXEC: ("noexec", "exec"),
    sc.MS_SYNCHRONOUS: ("sync", "async"),
    sc.MS_MANDLOCK: ("mand", "nomand"),
    sc.MS_NOATIME: ("noatime", "atime"),
    sc.MS_NODIRATIME: ("nodiratime", "diratime"),
    sc.MS_RELATIME: ("relatime", "norelatime"),
    sc.MS_STRICTATIME: ("strictatime", "nostrictatime"),
}
# the options that only set flags: what to mount, how it propagates
_SETTERS = {
    "defaults": 0,
    "bind": sc.MS_BIND,
    "rbind": sc.MS_BIND | sc.MS_REC,
    "dirsync": sc.MS_DIRSYNC,
    "remount": sc.MS_REMOUNT,
    "shared": sc.MS_SHARED,
    "rshared": sc.MS_SHARED | sc.MS_REC,
    "private": sc.MS_PRIVATE,
    "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "slave": sc.MS_SLAVE,
    "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE,
}
# option -> (flag, True when the option clears the flag rather than sets it)
_FLAGS: dict[str, tuple[int, bool]] = {
    **{option: (flag, False) for option, flag in _SETTERS.items()},
    **{sets: (flag, False) for flag, (sets, _) in _TOGGLES.items()},
    **{clears: (flag, True) for flag, (_, clears) in _TOGGLES.items()},
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
