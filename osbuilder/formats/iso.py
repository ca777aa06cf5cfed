"""The ISO formats: `iso-bios` (NAME.iso) and `iso-efi` (NAME-efi.iso; also written as
NAME-efi-initrd.iso by `iso-efi-initrd`, LinuxKit's name for such an image).

Both boot as a CD and, written to a disk or USB stick, as a disk:

- iso-bios: El Torito with ISOLINUX, and an isohybrid MBR; /isolinux holds the boot
  loader, /boot the kernel and initrd;
- iso-efi: El Torito for UEFI, whose boot image /efi.img is the EFI system partition of
  raw-efi (the unified kernel image as EFI/BOOT/BOOTX64.EFI), also named by a GPT.

Unlike LinuxKit's iso-bios, whose root filesystem is the ISO itself, the root is the
initrd here as in every osbuilder format, so the system runs the same whatever it
booted from. xorriso writes them; the files' times are the build's SOURCE_DATE_EPOCH
(as are the volume's dates and GUIDs) and their owners and modes are normalised (-r),
so the images are reproducible.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from osbuilder.errors import cannot_write
from osbuilder.formats import syslinux
from osbuilder.formats.disk import esp_image
from osbuilder.formats.outputfile import COPY_CHUNK
from osbuilder.formats.staging import boot_files
from osbuilder.formats.uki import expected_pcrs
from osbuilder.runner import stream_stdout

if TYPE_CHECKING:
    from osbuilder.formats.job import WriteJob
    from osbuilder.formats.outputfile import Output

VOLUME_ID = "OSBUILDER"


def write_iso_bios(job: WriteJob) -> list[Output]:
    boot = boot_files(job)
    tree = job.scratch / "iso-bios"
    try:
        (tree / "isolinux").mkdir(parents=True)
        (tree / "boot").mkdir()
        # xorriso patches the boot image it embeds (-boot-info-table): give it a copy.
        shutil.copyfile(syslinux.loader_file(syslinux.ISOLINUX_BIN), tree / "isolinux/isolinux.bin")
        shutil.copyfile(syslinux.loader_file(syslinux.LDLINUX_C32), tree / "isolinux/ldlinux.c32")
        (tree / "isolinux/isolinux.cfg").write_bytes(
            syslinux.config("/boot/kernel", "/boot/initrd.img", boot.cmdline)
        )
        link_or_copy(boot.kernel, tree / "boot/kernel")
        link_or_copy(boot.initrd, tree / "boot/initrd.img")
    except OSError as exc:
        raise cannot_write(tree, exc) from None
    boot_options = [
        "-eltorito-boot",
        "isolinux/isolinux.bin",
        "-eltorito-catalog",
        "isolinux/boot.cat",
        "-no-emul-boot",
        "-boot-load-size",
        "4",
        "-boot-info-table",
        "-isohybrid-mbr",
        str(syslinux.loader_file(syslinux.ISOHYBRID_MBR)),
    ]
    return [_write_iso(job, tree, boot_options, f"{job.name}.iso")]


def write_iso_efi(job: WriteJob) -> list[Output]:
    return [_write_efi_iso(job, f"{job.name}-efi.iso"), expected_pcrs(job)]


def write_iso_efi_initrd(job: WriteJob) -> list[Output]:
    """LinuxKit's name for its UEFI ISO that boots a kernel and initrd, which osbuilder's
    iso-efi is too: the same image, as NAME-efi-initrd.iso."""
    return [_write_efi_iso(job, f"{job.name}-efi-initrd.iso"), expected_pcrs(job)]


def _write_efi_iso(job: WriteJob, name: str) -> Output:
    tree = job.once("efi iso tree", lambda: _efi_iso_tree(job))
    boot_options = [
        "-eltorito-platform",
        "efi",
        "-eltorito-boot",
        "efi.img",
        "-no-emul-boot",
        # The boot image as a GPT partition too, for firmware booting the ISO as a disk.
        "-efi-boot-part",
        "--efi-boot-image",
        "--protective-msdos-label",
    ]
    return _write_iso(job, tree, boot_options, name)


def _efi_iso_tree(job: WriteJob) -> Path:
    tree = job.scratch / "iso-efi"
    try:
        tree.mkdir()
        link_or_copy(esp_image(job), tree / "efi.img")
    except OSError as exc:
        raise cannot_write(tree, exc) from None
    return tree


def _write_iso(job: WriteJob, tree: Path, boot_options: list[str], name: str) -> Output:
    try:
        _set_times(tree, job.epoch)
    except OSError as exc:
        raise cannot_write(tree, exc) from None
    command = [
        "xorriso",
        "-as",
        "mkisofs",
        "-quiet",
        "-output",
        "-",
        "-volid",
        VOLUME_ID,
        "-r",  # Rock Ridge with owners root and modes a+r: not the build user's
        *boot_options,
        str(tree),
    ]
    # xorriso takes the volume's dates and GUIDs from SOURCE_DATE_EPOCH.
    environment = {"SOURCE_DATE_EPOCH": str(job.epoch)}
    with job.outputs.create(name) as out, stream_stdout(command, env=environment) as image:
        shutil.copyfileobj(image, out, COPY_CHUNK)
    return out.result()


def link_or_copy(source: Path, target: Path) -> None:
    """`target` as another name of `source`, or a copy where the file system (FAT, a
    network share: the output directory's) has no hard links."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _set_times(tree: Path, epoch: int) -> None:
    for directory, _, files in os.walk(tree):
        for name in files:
            os.utime(Path(directory, name), (epoch, epoch))
        os.utime(directory, (epoch, epoch))
