"""The `tar-kernel-initrd` format: NAME-initrd.tar, LinuxKit's one tar of what the
kernel+initrd format writes as three files.

Its members, with LinuxKit's names and in its order (moby/build/output.go,
outputKernelInitrdTarball): `kernel`, `initrd.img`, `cmdline`, and `ucode.cpio` when the
spec names CPU microcode; a member that would be empty (an empty cmdline) is left out, as
LinuxKit leaves it. `kernel` and `cmdline` are kernel+initrd's NAME-kernel and
NAME-cmdline byte for byte, and so is `initrd.img` without microcode. Microcode LinuxKit
keeps apart in this format: `ucode.cpio` then `initrd.img` is kernel+initrd's
NAME-initrd.img. The kernel and initrd are those staged once per build
(formats/staging.py): a build that also writes kernel+initrd or a boot medium compresses
the tree once.

The headers are ustar, as Go's archive/tar writes LinuxKit's (with PAX records only for
what ustar cannot hold: a member of 8 GiB or more): regular files of mode 0644, owner 0:0
without names, every mtime the build's SOURCE_DATE_EPOCH; two zero blocks end the archive.
"""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Iterable
from typing import TYPE_CHECKING, BinaryIO

from osbuilder.assemble.entry import Content
from osbuilder.formats.initrd import kernel_parts
from osbuilder.formats.outputfile import COPY_CHUNK
from osbuilder.formats.staging import boot_files

if TYPE_CHECKING:
    from osbuilder.formats.job import WriteJob
    from osbuilder.formats.outputfile import Output
    from osbuilder.formats.staging import BootFiles

SUFFIX = "-initrd.tar"
BLOCK = 512  # tar's record unit: headers, and the padding after each member's data
MODE = 0o644

Member = tuple[str, Content | bytes]  # a member's name and its data


def write_tar_kernel_initrd(job: WriteJob) -> list[Output]:
    parts = kernel_parts(job.system)
    members = kernel_initrd_members(boot_files(job), parts.ucode)
    with job.outputs.create(f"{job.name}{SUFFIX}") as out:
        write_members(out, members, job.epoch)
    return [out.result()]


def kernel_initrd_members(boot: BootFiles, ucode: Content | None) -> list[Member]:
    """The archive's members from the staged files: the initrd there starts with the
    microcode (`ucode`), which becomes a member of its own."""
    ucode_size = ucode.size if ucode is not None else 0
    members: list[Member] = [
        ("kernel", Content(boot.kernel, boot.kernel.stat().st_size)),
        ("initrd.img", Content(boot.initrd, boot.initrd.stat().st_size - ucode_size, ucode_size)),
        ("cmdline", boot.cmdline.encode()),
    ]
    if ucode is not None:
        members.append(("ucode.cpio", ucode))
    return [(name, data) for name, data in members if _size(data)]


def write_members(out: BinaryIO, members: Iterable[Member], mtime: int) -> None:
    """`members` as the regular files of a tar archive written to `out`, in their order."""
    for name, data in members:
        header = tarfile.TarInfo(name)
        header.size = _size(data)
        header.mode = MODE
        header.mtime = mtime
        out.write(header.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict"))
        if isinstance(data, bytes):
            out.write(data)
        else:
            with data.open() as source:  # exactly its size, or EOFError
                shutil.copyfileobj(source, out, COPY_CHUNK)
        out.write(bytes(-header.size % BLOCK))
    out.write(bytes(2 * BLOCK))


def _size(data: Content | bytes) -> int:
    return len(data) if isinstance(data, bytes) else data.size
