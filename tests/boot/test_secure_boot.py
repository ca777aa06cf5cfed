"""Secure Boot under QEMU: the Redis OS signed by the key whose certificate the firmware's db
holds boots (its kernel locked down) and answers PING; unsigned, or signed by another key,
the firmware refuses it, and `run` says so in one line and exits non-zero at once."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.boot import conftest as boot
from tests.conftest import REPO, Packages
from tests.uefi_keys import KeyPair, make_key_pair

pytestmark = pytest.mark.boot

IMAGE = "redis-efi.img"
# (the firmware's boot option: the virtio disk)
REFUSED = (
    r'osbuilder: --secure-boot: the firmware refused to start Boot\w+ "UEFI Misc Device" from '
    r"PciRoot\(\S+\) \(Access Denied\): the image is not signed by the key of {cert}"
)
REFUSAL_SECONDS = 90  # OVMF refuses within about 10 s under TCG (a boot to PONG: 16 s)


class Images:
    def __init__(self, work: Path, db: KeyPair, other: KeyPair) -> None:
        self.work, self.db, self.other = work, db, other

    def path(self, signer: str) -> Path:
        return self.work / signer / IMAGE


@pytest.fixture(scope="module")
def images(packages: Packages, tmp_path_factory: pytest.TempPathFactory) -> Images:
    """examples/redis.yml as raw-efi: signed by db (twice), by another key, and unsigned."""
    work = tmp_path_factory.mktemp("secure-boot")
    db, other = make_key_pair(work, "db"), make_key_pair(work, "other")
    spec = REPO / "examples/redis.yml"
    for signer, pair in (("db", db), ("db-again", db), ("other", other), ("unsigned", None)):
        keys = () if pair is None else ("--secure-boot-key", str(pair.key))
        keys += () if pair is None else ("--secure-boot-cert", str(pair.cert))
        boot.build_system(packages, spec, work / signer, "raw-efi", options=keys)
    return Images(work, db, other)


def test_a_signed_image_builds_to_the_same_bytes_twice(images: Images) -> None:
    assert images.path("db").read_bytes() == images.path("db-again").read_bytes()
    assert images.path("db").read_bytes() != images.path("unsigned").read_bytes()


def test_the_signed_redis_os_boots_under_secure_boot_and_answers(images: Images) -> None:
    port = boot.free_port()
    image = images.path("db")
    started = boot.run_detached(image, port, "--secure-boot", str(images.db.cert))
    try:
        assert started.returncode == 0, started.stderr
        assert boot.redis_cli(port, "ping") == "PONG"
    finally:
        stopped = boot.osbuilder("stop", str(image))
    assert stopped.returncode == 0, stopped.stderr
    console = Path(f"{image}-state/console.log").read_text(errors="replace")
    assert "EFI stub: UEFI Secure Boot is enabled." in console
    assert "Kernel is locked down from EFI Secure Boot" in console  # (Debian's signed modules load)
    assert "Access Denied" not in console


def assert_refused(stderr: str, cert: Path) -> None:
    """osbuilder's refusal is the last line of `stderr`, with no traceback before it."""
    assert re.fullmatch(REFUSED.format(cert=re.escape(str(cert))), stderr.splitlines()[-1])
    assert "Traceback" not in stderr


def test_an_unsigned_image_is_refused_at_once(images: Images, tmp_path: Path) -> None:
    started = time.monotonic()
    result, console = boot.run_foreground(
        images.path("unsigned"), tmp_path / "state", "--secure-boot", str(images.db.cert)
    )
    took = time.monotonic() - started
    assert result.returncode == 1, console[-2000:]
    assert_refused(result.stderr, images.db.cert)
    assert took < REFUSAL_SECONDS, f"{took:.0f} s"
    assert "EFI stub" not in console  # the kernel never started


def test_an_image_signed_by_another_key_is_refused_by_a_detached_run(images: Images) -> None:
    # No port to wait for: `run --detach` still waits for the firmware's verdict.
    image = images.path("other")
    started = time.monotonic()
    result = boot.run_detached(image, None, "--secure-boot", str(images.db.cert))
    took = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert_refused(result.stderr, images.db.cert)
    assert took < REFUSAL_SECONDS, f"{took:.0f} s"
    assert boot.osbuilder("ps").stdout.count(f"{image}-state") == 0  # the VM is gone


MEASURED_SPEC = (
    boot.BASE_SPEC
    + """
onboot:
  - name: pcr
    image: {tpm2-tools}
  - name: poweroff
    image: {poweroff}
    command: [/poweroff.sh, "0"]
"""
)


def test_pcr_11_read_in_the_guest_is_the_one_the_build_wrote(
    packages: Packages, tmp_path: Path
) -> None:
    """`run --tpm`: the stub of the UKI measured it into PCR 11 of the swtpm, and
    tpm2_pcrread reads there the value `build` computed (NAME-efi.pcrs.json)."""
    prefix = boot.build_template(packages, MEASURED_SPEC, tmp_path / "measured", "raw-efi")
    (expected,) = json.loads(Path(f"{prefix}-efi.pcrs.json").read_text())["sha256"]
    assert expected["pcr"] == 11
    console = boot.run_until_poweroff(Path(f"{prefix}-efi.img"), tmp_path / "state", "--tpm")
    assert "tpm_tis MSFT0101:00: 2.0 TPM" in console
    assert f"11: 0x{expected['hash'].upper()}" in console
