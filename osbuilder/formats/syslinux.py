"""SYSLINUX, the BIOS boot loader of the iso-bios and raw-bios formats (as LinuxKit's).

Its files come from the host's Debian packages (isolinux, syslinux-common, syslinux):
the same packages give the same bytes. Its configuration boots the kernel with the
initrd and the spec's cmdline at once, showing its messages on the first serial port
as well as the screen (a cloud VM's only console is often serial).
"""

from __future__ import annotations

from pathlib import Path

from osbuilder.errors import UserError
from osbuilder.spec.source import SpecValueError

ISOLINUX_BIN = Path("/usr/lib/ISOLINUX/isolinux.bin")  # El Torito boot image
ISOHYBRID_MBR = Path("/usr/lib/ISOLINUX/isohdpfx.bin")  # lets the ISO boot as a disk too
LDLINUX_C32 = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")  # isolinux's second stage
MBR_BIN = Path("/usr/lib/syslinux/mbr/mbr.bin")  # boots the active partition
_PACKAGES = {
    ISOLINUX_BIN: "isolinux",
    ISOHYBRID_MBR: "isolinux",
    LDLINUX_C32: "syslinux-common",
    MBR_BIN: "syslinux-common",
}
MAX_APPEND = 2000  # bytes of APPEND SYSLINUX takes (the kernel's own limit is 2048)


def loader_file(path: Path) -> Path:
    """`path`, one of the files above, or a clear error naming its package."""
    if not path.is_file():
        raise UserError(f"{path}: not found; install it (apt-get install {_PACKAGES[path]})")
    return path


def config(kernel: str, initrd: str, cmdline: str) -> bytes:
    """isolinux.cfg / syslinux.cfg booting `kernel` (a path on the medium) at once."""
    where = ("kernel", "cmdline")
    if any(char in cmdline for char in "\r\n\0"):
        raise SpecValueError(where, "a line break or NUL cannot go in a boot loader's config")
    if len(cmdline.encode()) > MAX_APPEND:
        raise SpecValueError(where, f"longer than the {MAX_APPEND} bytes SYSLINUX takes")
    lines = [
        "SERIAL 0 115200",
        "DEFAULT osbuilder",
        "PROMPT 0",
        "TIMEOUT 0",
        "LABEL osbuilder",
        f"  KERNEL {kernel}",
        f"  INITRD {initrd}",
    ]
    if cmdline:
        lines.append(f"  APPEND {cmdline}")
    return ("\n".join(lines) + "\n").encode()
