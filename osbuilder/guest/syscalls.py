"""The few system calls the standard library lacks, through ctypes.

Each raises OSError with the errno, like the os module's own functions.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct

from osbuilder.guest.records import Record

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

MNT_DETACH = 0x2

RB_AUTOBOOT = 0x01234567
RB_HALT_SYSTEM = 0xCDEF0123
RB_POWER_OFF = 0x4321FEDC
RB_DISABLE_CAD = 0

RAMFS_MAGIC = 0x858458F6
TMPFS_MAGIC = 0x01021994

PR_SET_CHILD_SUBREAPER = 36

# init_module(2) and finit_module(2) have no glibc wrapper: call them by number.
_MODULE_SYSCALLS = {"x86_64": (175, 313), "aarch64": (105, 273)}
MODULE_INIT_COMPRESSED_FILE = 4

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str) -> None:
    result = _libc.mount(
        ctypes.c_char_p(_bytes(source)),
        ctypes.c_char_p(_bytes(target)),
        ctypes.c_char_p(_bytes(fstype)),
        ctypes.c_ulong(flags),
        ctypes.c_char_p(_bytes(data) if data else None),
    )
    _check(result, f"mount {source} on {target}")


class MountCall(Record):
    """The arguments of one mount(2) call (the early filesystems, a bundle's mounts)."""

    __slots__ = ("data", "flags", "fstype", "source", "target")

    def __init__(
        self, source: str | None, target: str, fstype: str | None, flags: int = 0, data: str = ""
    ) -> None:
        self.source = source
        self.target = target
        self.fstype = fstype
        self.flags = flags
        self.data = data

    @property
    def arguments(self) -> tuple[str | None, str, str | None, int, str]:
        """In mount's order, for mount(*call.arguments)."""
        return self.source, self.target, self.fstype, self.flags, self.data


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(ctypes.c_char_p(_bytes(target)), ctypes.c_int(flags)), f"umount {target}")


def reboot(command: int) -> None:
    _check(_libc.reboot(ctypes.c_int(ctypes.c_int32(command).value)), "reboot")


def swapoff(path: str) -> None:
    _check(_libc.swapoff(ctypes.c_char_p(_bytes(path))), f"swapoff {path}")


# device-mapper's ioctl header (struct dm_ioctl, linux/dm-ioctl.h): version 4.0.0, 312 bytes,
# no payload. DM_REMOVE_ALL = _IOWR(0xfd, 1, struct dm_ioctl).
_DM_IOCTL_SIZE = 312
_DM_REMOVE_ALL = 0xC0000000 | (_DM_IOCTL_SIZE << 16) | (0xFD << 8) | 1


def remove_unused_device_mappings(control: str = "/dev/mapper/control") -> None:
    """Remove every device-mapper device nothing holds open (what `dmsetup remove_all`
    does); nothing to do when device-mapper was never loaded."""
    header = struct.pack("=5I", 4, 0, 0, _DM_IOCTL_SIZE, _DM_IOCTL_SIZE)
    try:
        fd = os.open(control, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.ioctl(fd, _DM_REMOVE_ALL, header.ljust(_DM_IOCTL_SIZE, b"\0"))
    finally:
        os.close(fd)


def filesystem_type(path: str) -> int:
    """statfs(2)'s f_type (the filesystem's magic number): the first word of struct statfs."""
    buffer = ctypes.create_string_buffer(256)
    _check(_libc.statfs(ctypes.c_char_p(_bytes(path)), buffer), f"statfs {path}")
    return ctypes.c_ulong.from_buffer(buffer).value & 0xFFFFFFFF


def set_child_subreaper(enabled: bool) -> None:
    """Orphaned descendants are re-parented to us (needed when we are not PID 1)."""
    result = _libc.prctl(
        ctypes.c_int(PR_SET_CHILD_SUBREAPER), ctypes.c_ulong(int(enabled)), 0, 0, 0
    )
    _check(result, "prctl(PR_SET_CHILD_SUBREAPER)")


def _module_syscall(index: int) -> int:
    numbers = _MODULE_SYSCALLS.get(os.uname().machine)
    if numbers is None:
        raise OSError(38, f"module loading: unknown architecture {os.uname().machine}")
    return numbers[index]


def finit_module(fd: int, params: str = "", flags: int = 0) -> None:
    result = _libc.syscall(
        ctypes.c_long(_module_syscall(1)),
        ctypes.c_int(fd),
        ctypes.c_char_p(params.encode()),
        ctypes.c_int(flags),
    )
    _check(result, "finit_module")


def init_module(image: bytes, params: str = "") -> None:
    result = _libc.syscall(
        ctypes.c_long(_module_syscall(0)),
        ctypes.c_char_p(image),
        ctypes.c_ulong(len(image)),
        ctypes.c_char_p(params.encode()),
    )
    _check(result, "init_module")
