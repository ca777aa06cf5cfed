"""Getting off the initramfs root, so OCI runtimes can pivot_root.

The kernel refuses pivot_root(2) while the current root is the initial rootfs, because
that mount has no parent. LinuxKit copies the whole tree into a new tmpfs and switches
to it (seconds of copying for a 150 MB initrd under emulation, and twice the memory
while it runs). We need only a root mount that has a parent, and a bind mount of the
rootfs is one: bind / (recursively) onto a directory, move that mount over /, chroot
into it. No byte is copied, it takes a millisecond, and containers get the ordinary,
safe pivot_root (with `--no-pivot` a container that can chroot could climb back out to
the initramfs). `osbuilder.no_pivot=1` keeps the old root and uses --no-pivot instead.
"""

from __future__ import annotations

import contextlib
import os

from osbuilder.guest import syscalls

_NEW_ROOT = "/.osbuilder-root"


def on_initramfs() -> bool:
    return syscalls.filesystem_type("/") in (syscalls.RAMFS_MAGIC, syscalls.TMPFS_MAGIC)


def move_root_to_bind_mount() -> None:
    os.makedirs(_NEW_ROOT, 0o755, exist_ok=True)
    syscalls.mount("/", _NEW_ROOT, None, syscalls.MS_BIND | syscalls.MS_REC, "")
    os.chdir(_NEW_ROOT)
    syscalls.mount(_NEW_ROOT, "/", None, syscalls.MS_MOVE, "")
    os.chroot(".")
    os.chdir("/")
    with contextlib.suppress(OSError):
        os.rmdir(_NEW_ROOT)  # in the new root it is an empty directory again
