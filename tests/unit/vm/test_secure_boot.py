"""`run --secure-boot CERT`: the QEMU command line, the variable store enrolled, and the
firmware's refusal read from its console."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from virt.firmware.efi import guids
from virt.firmware.varstore.edk2 import Edk2VarStore

from osbuilder.errors import ExternalError, UserError
from osbuilder.media import MediaBoot
from osbuilder.vm.qemu import OVMF_VARS, KernelBoot, VmConfig, qemu_command
from osbuilder.vm.run import (
    FirmwareRefused,
    firmware_refusal,
    prepare_state,
    wait_firmware_verdict,
    wait_unrefused,
)
from osbuilder.vm.secureboot import OVMF_SECURE_CODE, PLATFORM_NAME, STARTED, refusal
from tests.uefi_keys import KeyPair, make_key_pair
from tests.unit.vm.test_vm import GPT, MBR, image

# OVMF_CODE_4M.secboot.fd's console booting an unsigned UKI (as a raw-efi disk).
REFUSED_CONSOLE = (
    b'\x1b[2J\x1b[01;01HBdsDxe: failed to load Boot0001 "UEFI QEMU DVD-ROM QM00005 " from '
    b"PciRoot(0x0)/Pci(0x1F,0x2)/Sata(0x2,0xFFFF,0x0): Not Found\r\n"
    b'BdsDxe: loading Boot0002 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x2,0x0)\r\n'
    b'BdsDxe: failed to load Boot0002 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x2,0x0): '
    b"Access Denied\r\n"
    b'BdsDxe: loading Boot0003 "EFI Internal Shell" from Fv(7CB8BDC9-F8EB-4F34-AAEA-'
    b"3EE4AF6516A1)/FvFile(7C04A583-9E3E-4F1C-AD65-E05268D0B4D1)\r\n"
)


@pytest.fixture
def db(tmp_path: Path) -> KeyPair:
    return make_key_pair(tmp_path, "db")


def efi_disk(tmp_path: Path) -> MediaBoot:
    return MediaBoot.from_file(image(tmp_path / "a-efi.img", MBR, GPT))


def test_secure_boot_takes_smm_a_secure_flash_and_ovmfs_secure_boot_build(
    tmp_path: Path, db: KeyPair
) -> None:
    config = VmConfig(efi_disk(tmp_path), tmp_path / "state", secure_boot=db.cert)
    command = " ".join(qemu_command(config))
    assert "-machine q35,accel=tcg,smm=on" in command
    assert "-global driver=cfi.pflash01,property=secure,value=on" in command
    assert f"-drive if=pflash,format=raw,readonly=on,file={OVMF_SECURE_CODE}" in command
    assert f"-drive if=pflash,format=raw,file={config.efi_vars}" in command
    plain = " ".join(qemu_command(VmConfig(efi_disk(tmp_path), tmp_path / "state")))
    assert "smm=on" not in plain and "property=secure" not in plain
    assert str(OVMF_SECURE_CODE) not in plain


def test_what_does_not_boot_through_uefi_is_refused(tmp_path: Path, db: KeyPair) -> None:
    bios = MediaBoot.from_file(image(tmp_path / "a-bios.img", MBR))
    with pytest.raises(UserError, match=r"^--secure-boot: .*a-bios.img does not boot through UEFI"):
        VmConfig(bios, tmp_path / "state", secure_boot=db.cert)
    for suffix in ("kernel", "initrd.img"):
        (tmp_path / f"sys-{suffix}").write_text("x")
    with pytest.raises(UserError, match="sys-kernel does not boot through UEFI; give an image"):
        VmConfig(KernelBoot.from_prefix(tmp_path / "sys"), tmp_path / "s", secure_boot=db.cert)


def test_the_variable_store_trusts_the_certificate_alone_with_secure_boot_on(
    tmp_path: Path, db: KeyPair
) -> None:
    config = VmConfig(efi_disk(tmp_path), tmp_path / "state", secure_boot=db.cert)
    prepare_state(config)
    variables = Edk2VarStore(str(config.efi_vars)).get_varlist()
    assert config.efi_vars.stat().st_size == OVMF_VARS.stat().st_size
    assert variables["SecureBootEnable"].data == b"\x01"
    assert variables["CustomMode"].data == b"\x00"
    trusted = x509.load_pem_x509_certificate(db.cert.read_bytes())
    (database,) = variables["db"].sigdb  # one list with one certificate: CERT
    assert [entry.x509 for entry in [database]] == [trusted]
    assert str(database[0]["guid"]) == guids.OvmfEnrollDefaultKeys
    for name in ("PK", "KEK"):  # generated for the VM: no one else holds its key
        (keys,) = variables[name].sigdb
        common_name = keys.x509.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        assert common_name[0].value == PLATFORM_NAME
    assert variables["dbx"].sigdb is not None  # (OVMF wants one, if only a dummy)


def test_a_certificate_that_is_not_one_is_refused_before_a_vm_starts(tmp_path: Path) -> None:
    text = tmp_path / "cert.pem"
    text.write_text("hello\n")
    config = VmConfig(efi_disk(tmp_path), tmp_path / "state", secure_boot=text)
    with pytest.raises(UserError, match=rf"^--secure-boot {text}: not a PEM X.509 certificate"):
        prepare_state(config)


def test_the_firmwares_refusal_is_read_from_its_console(tmp_path: Path, db: KeyPair) -> None:
    assert refusal(REFUSED_CONSOLE) == 'Boot0002 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x2,0x0)'
    assert refusal(REFUSED_CONSOLE.replace(b"Access Denied", b"Not Found")) is None
    config = VmConfig(efi_disk(tmp_path), tmp_path / "state", secure_boot=db.cert)
    prepare_state(config)
    assert firmware_refusal(config) is None  # (no console yet)
    config.console_log.write_bytes(REFUSED_CONSOLE)
    refused = firmware_refusal(config)
    assert str(refused) == (
        '--secure-boot: the firmware refused to start Boot0002 "UEFI Misc Device" from '
        f"PciRoot(0x0)/Pci(0x2,0x0) (Access Denied): the image is not signed by the key of "
        f"{db.cert}"
    )
    unsecured = VmConfig(efi_disk(tmp_path), tmp_path / "state")
    assert firmware_refusal(unsecured) is None  # (only Secure Boot's refusals end a run)


def test_waiting_for_the_vm_ends_at_the_refusal_not_the_timeout(
    tmp_path: Path, db: KeyPair
) -> None:
    config = VmConfig(efi_disk(tmp_path), tmp_path / "state", secure_boot=db.cert)
    prepare_state(config)
    # A stand-in for QEMU that prints the firmware's refusal and waits.
    writes = f"open({str(config.console_log)!r}, 'wb').write({REFUSED_CONSOLE!r})"
    process = subprocess.Popen([sys.executable, "-c", f"{writes}; import time; time.sleep(60)"])
    started = time.monotonic()
    try:
        with pytest.raises(FirmwareRefused):
            wait_unrefused(config, process, 50)
    finally:
        process.kill()
        process.wait()
    assert time.monotonic() - started < 10


def test_a_detached_run_returns_once_the_kernel_started_and_not_before(
    tmp_path: Path, db: KeyPair
) -> None:
    config = VmConfig(efi_disk(tmp_path), tmp_path / "state", secure_boot=db.cert)
    prepare_state(config)
    alive = os.getpid()  # (a process that runs, standing for QEMU's)
    config.console_log.write_bytes(b"BdsDxe: loading Boot0002 ...\r\n")
    with pytest.raises(ExternalError, match="the firmware had not started the image within"):
        wait_firmware_verdict(config, alive, 0.3)
    config.console_log.write_bytes(b"BdsDxe: loading Boot0002\r\n" + STARTED + b"\r\n")
    wait_firmware_verdict(config, alive, 0.3)  # returns
