"""--verity: the Redis OS as kernel+squashfs, as kernel+erofs and as a UEFI disk with
--root squashfs, its root opened through dm-verity by the boot stage, answers a real
redis client; the kernel+squashfs outputs are bit-identical across two builds and
`veritysetup verify` accepts the root with the hash of the command line; one byte
changed in the root ends the boot with the stage's line and makes `osbuilder run` fail,
within its timeout."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.boot.conftest import (
    answered_ping,
    build_system,
    run_foreground,
)
from tests.conftest import REPO, Packages

pytestmark = pytest.mark.boot

SPEC = REPO / "examples/redis.yml"
WORD = re.compile(r"osbuilder\.verity\.squashfs=(\d+),([0-9a-f]{64}),([0-9a-f]{64})")


def assert_veritysetup_verifies(prefix: Path, filesystem: str) -> None:
    """`veritysetup verify` accepts PREFIX-FILESYSTEM.img with the root hash of PREFIX-cmdline."""
    word = re.compile(rf"osbuilder\.verity\.{filesystem}=(\d+),([0-9a-f]{{64}}),[0-9a-f]{{64}}")
    [(blocks, root_hash)] = word.findall(Path(f"{prefix}-cmdline").read_text())
    image = Path(f"{prefix}-{filesystem}.img")
    offset = f"--hash-offset={int(blocks) * 4096}"
    verify = ["veritysetup", "verify", offset, str(image), str(image), root_hash]
    verified = subprocess.run(verify, capture_output=True, text=True, check=False)
    assert verified.returncode == 0, verified.stderr


REFUSED = "osbuilder boot stage: the root failed verification: /dev/vda is not the image"


@pytest.fixture(scope="module")
def verity_system(packages: Packages, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Redis OS as kernel+squashfs --verity: its outputs' prefix."""
    out = tmp_path_factory.mktemp("verity") / "out"
    return build_system(packages, SPEC, out, "kernel+squashfs", options=("--verity",))


def test_the_root_is_verified_reproducible_and_the_system_answers(
    packages: Packages, verity_system: Path, tmp_path: Path
) -> None:
    prefix = verity_system
    assert_veritysetup_verifies(prefix, "squashfs")
    again = build_system(
        packages, SPEC, tmp_path / "again", "kernel+squashfs", options=("--verity",)
    )
    for suffix in ("-kernel", "-cmdline", "-squashfs.img", "-squashfs-initrd.img"):
        assert Path(f"{again}{suffix}").read_bytes() == Path(f"{prefix}{suffix}").read_bytes()
    console = answered_ping(prefix, Path(f"{prefix}-state"), "--mem", "128")
    assert "device-mapper: verity: sha256 using implementation" in console
    assert "osbuilder boot stage:" not in console and "corrupted" not in console
    assert "init: osbuilder " in console and "unknown option" not in console
    assert "reboot: Power down" in console


def test_a_changed_byte_of_the_root_ends_the_boot_with_the_stages_line(
    verity_system: Path, tmp_path: Path
) -> None:
    # One bit of a block in the middle of the image (every block is read at boot).
    copy = tmp_path / "redis"
    for suffix in ("-kernel", "-cmdline", "-squashfs.img", "-squashfs-initrd.img"):
        shutil.copyfile(f"{verity_system}{suffix}", f"{copy}{suffix}")
    [(blocks, _, _)] = WORD.findall(Path(f"{copy}-cmdline").read_text())
    image = Path(f"{copy}-squashfs.img")
    with image.open("r+b") as file:
        file.seek(int(blocks) * 4096 // 2)
        byte = file.read(1)
        file.seek(-1, 1)
        file.write(bytes([byte[0] ^ 1]))
    result, console = run_foreground(copy, tmp_path / "state", "--mem", "128")
    assert result.returncode not in (0, 124), console[-3000:]  # a panic, not the timeout
    assert REFUSED in console, console[-3000:]
    assert re.search(r"device-mapper: verity: \d+:\d+: data block \d+ is corrupted", console)
    assert "Kernel panic" in console and "init: osbuilder " not in console


def test_a_uefi_disk_with_a_verified_squashfs_root_answers(
    packages: Packages, tmp_path: Path
) -> None:
    # The root hash is on the command line inside the unified kernel image.
    out = tmp_path / "out"
    build_system(packages, SPEC, out, "qcow2-efi", options=("--root", "squashfs", "--verity"))
    image = out / "redis-efi.qcow2"
    console = answered_ping(image, Path(f"{image}-state"), "--mem", "192")
    assert WORD.search(console)  # the kernel's command line, from the UKI
    assert "device-mapper: verity: sha256 using implementation" in console
    assert "osbuilder boot stage:" not in console


def test_a_verified_erofs_root_answers(packages: Packages, tmp_path: Path) -> None:
    prefix = build_system(packages, SPEC, tmp_path / "out", "kernel+erofs", options=("--verity",))
    assert_veritysetup_verifies(prefix, "erofs")
    console = answered_ping(prefix, Path(f"{prefix}-state"), "--mem", "128")
    assert "device-mapper: verity: sha256 using implementation" in console
    assert "erofs: (device dm-0): mounted with root inode" in console
    assert "osbuilder boot stage:" not in console
