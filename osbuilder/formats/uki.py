"""A unified kernel image: one EFI executable holding the kernel, initrd and cmdline.

The EFI media boot it as the firmware's default loader (EFI/BOOT/BOOTX64.EFI): no boot
loader, no configuration. It is systemd's EFI stub (Debian's systemd-boot-efi) with the
.osrel, .cmdline, .linux and .initrd sections added by objcopy, each at a page-aligned
address after the stub's own. objcopy stamps the PE header with the current time, so the
time is set to SOURCE_DATE_EPOCH afterwards and the header's checksum computed again:
the image is reproducible. With `build --secure-boot-key/--secure-boot-cert` the image is
then signed for Secure Boot (formats/uefi_signing.py), reproducibly too.

Booted with a TPM, the stub measures the sections into PCR 11; `systemd-measure calculate`
(the same systemd's) computes the value from the same files, and each build that writes
the UKI writes it to NAME-efi.pcrs.json: with no phase (`--phase=`), since no
systemd-pcrphase extends PCR 11 after the stub in an osbuilder system.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from osbuilder.errors import UserError, cannot_write
from osbuilder.formats.catalog import UKI_PCRS_FILE
from osbuilder.formats.outputfile import Output
from osbuilder.formats.staging import boot_files
from osbuilder.formats.uefi_signing import sign_efi_image
from osbuilder.runner import run
from osbuilder.spec.source import SpecValueError

if TYPE_CHECKING:
    from osbuilder.formats.job import WriteJob

EFI_STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
MEASURE = Path("/usr/lib/systemd/systemd-measure")
PAGE = 0x1000
SECTIONS_START = 0x100000  # well past the stub's own sections (they end below 64 KiB)
OS_RELEASE = b'ID=osbuilder\nNAME="osbuilder"\nPRETTY_NAME="osbuilder system"\n'
_CHUNK = 1 << 20


def unified_kernel_image(job: WriteJob) -> Path:
    """The build's UKI, made once in the scratch directory."""
    return job.once("uki", lambda: _make(job))


def expected_pcrs(job: WriteJob) -> Output:
    """NAME-efi.pcrs.json: the PCR 11 the UKI's stub will leave (SHA-256), written once."""
    return job.once("uki-pcrs", lambda: _write_pcrs(job))


def _sections(job: WriteJob) -> tuple[Path, Path]:
    """The UKI's .osrel and .cmdline section files, in the scratch directory."""
    return job.scratch / "uki-osrel", job.scratch / "uki-cmdline"


def _write_pcrs(job: WriteJob) -> Output:
    if not MEASURE.is_file():
        raise UserError(f"{MEASURE}: not found; install systemd (252 or later)")
    unified_kernel_image(job)  # (its section files)
    boot = boot_files(job)
    osrel, cmdline = _sections(job)
    measured = run(
        [
            MEASURE,
            "calculate",
            f"--linux={boot.kernel}",
            f"--osrel={osrel}",
            f"--cmdline={cmdline}",
            f"--initrd={boot.initrd}",
            "--bank=sha256",
            "--phase=",
            "--json=pretty",
        ]
    )
    with job.outputs.create(UKI_PCRS_FILE.format(name=job.name)) as output:
        output.write(measured.stdout)
    return output.result()


def _make(job: WriteJob) -> Path:
    if not EFI_STUB.is_file():
        raise UserError(f"{EFI_STUB}: not found; install it (apt-get install systemd-boot-efi)")
    config = job.system.kernel.config
    if config is not None and not re.search(r"^CONFIG_EFI_STUB=y$", config, re.MULTILINE):
        raise SpecValueError(
            ("kernel", "image"),
            "this kernel has no EFI stub (its config lacks CONFIG_EFI_STUB=y), "
            "so UEFI cannot start it; build a -bios format",
        )
    boot = boot_files(job)
    osrel, cmdline = _sections(job)
    image = job.scratch / "uki.efi"
    try:
        osrel.write_bytes(OS_RELEASE)
        cmdline.write_bytes(boot.cmdline.encode())
    except OSError as exc:
        raise cannot_write(job.scratch, exc) from None
    command: list[str | Path] = ["objcopy"]
    address = SECTIONS_START
    for section, path in (
        (".osrel", osrel),
        (".cmdline", cmdline),
        (".linux", boot.kernel),
        (".initrd", boot.initrd),
    ):
        command += [
            "--add-section",
            f"{section}={path}",
            "--change-section-vma",
            f"{section}={address:#x}",
        ]
        address += -(-path.stat().st_size // PAGE) * PAGE
    run([*command, EFI_STUB, image])
    try:
        set_pe_timestamp(image, job.epoch)
    except OSError as exc:
        raise cannot_write(image, exc) from None
    if (identity := job.options.secure_boot) is None:
        return image
    signed = job.scratch / "uki-signed.efi"
    sign_efi_image(identity, image, signed, job.epoch)
    return signed


def set_pe_timestamp(path: Path, epoch: int) -> None:
    """Set the PE image's COFF timestamp to `epoch`, and its checksum to match."""
    with path.open("r+b") as file:
        file.seek(0x3C)  # where the DOS header keeps the PE header's offset
        (pe,) = struct.unpack("<I", file.read(4))
        file.seek(pe)
        if file.read(4) != b"PE\0\0":
            raise ValueError(f"{path}: not a PE image")
        file.seek(pe + 8)  # the COFF header's TimeDateStamp
        file.write(struct.pack("<I", epoch & 0xFFFFFFFF))
        checksum_at = pe + 4 + 20 + 64  # the optional header's CheckSum
        file.seek(checksum_at)
        file.write(bytes(4))
        file.flush()
        checksum = pe_checksum(path)
        file.seek(checksum_at)
        file.write(struct.pack("<I", checksum))


def pe_checksum(path: Path) -> int:
    """The PE image checksum (as imagehlp's CheckSumMappedFile) of a file whose CheckSum
    field is zero: the 16-bit one's-complement sum of its little-endian words, plus its
    length.

    The sum is taken modulo 0xFFFF, which is what the end-around carry computes: read as
    one little-endian integer, each chunk is its words times powers of 65536, and
    65536 = 1 (mod 0xFFFF), so the integer modulo 0xFFFF is its words' sum modulo 0xFFFF.
    One's complement writes a non-zero multiple of 0xFFFF as 0xFFFF, not 0.
    """
    total = 0
    nonzero = False
    size = os.path.getsize(path)
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):  # (an even size: only the last can be odd)
            total = (total + int.from_bytes(chunk, "little")) % 0xFFFF
            nonzero = nonzero or chunk.count(0) != len(chunk)
    folded = total if total or not nonzero else 0xFFFF
    return (folded + size) & 0xFFFFFFFF
