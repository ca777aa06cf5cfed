"""UEFI Secure Boot under QEMU (`run --secure-boot CERT`).

OVMF's Secure Boot build (OVMF_CODE_4M.secboot.fd: its variables guarded by SMM, so q35
with SMM and a secure flash) starts from a fresh variable store that virt-firmware fills
in: a platform key generated for this VM (as PK and KEK: nothing else may change the keys),
CERT as the one certificate in db, the dbx OVMF wants, and Secure Boot on. The firmware then
starts only EFI images signed by CERT's key. One it refuses, OVMF reports on the console
and passes over; `run` watches for that (REFUSED) and stops the VM with one line instead of
waiting for a boot that cannot come. `run --detach` without a port to wait for returns
once the verdict is in: the refusal, or the kernel's stub saying it started (STARTED).
"""

from __future__ import annotations

import re
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding
from virt.firmware.efi import certs, guids
from virt.firmware.varstore.edk2 import Edk2VarStore

from osbuilder.errors import cannot_write
from osbuilder.formats.uefi_signing import read_certificate

OPTION = "--secure-boot"
OVMF_SECURE_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")
# OVMF's BDS on an image whose signature it rejects: "BdsDxe: failed to load Boot0001 "UEFI
# Misc Device" from PciRoot(...): Access Denied".
REFUSED = re.compile(rb"BdsDxe: failed to load (Boot\w+ .*?): Access Denied")
# The kernel's EFI stub, once the firmware has started the image: the verdict was yes.
STARTED = b"EFI stub: UEFI Secure Boot is enabled."
PLATFORM_NAME = "osbuilder run: platform key"


def enrol(template: Path, cert: Path, store: Path) -> None:
    """Write to `store` the variable store `template` with Secure Boot on and `cert` the
    one certificate of db (a UserError when `cert` is not a PEM certificate)."""
    certificate = read_certificate(cert, OPTION).public_bytes(Encoding.PEM)
    variables = Edk2VarStore(str(template))
    entries = variables.get_varlist()
    platform = certs.pk_generate(cn=PLATFORM_NAME)  # (a temporary file holding it)
    with platform:
        entries.enroll_platform_with_cert(platform.name, ms_kek="none")
    entries.add_cert_prepare("db", replace=True).sigdb_add_cert_data(
        guids.parse_str(guids.OvmfEnrollDefaultKeys), certificate
    )
    entries.enable_secureboot()
    try:
        variables.write_varstore(str(store), entries)
    except OSError as exc:
        raise cannot_write(store, exc) from None


def refusal(console: bytes) -> str | None:
    """What the firmware refused to start, when the console says it did."""
    match = REFUSED.search(console)
    return None if match is None else match[1].decode(errors="replace")
