"""The Redis OS boots from each boot medium through its firmware and loader, and answers PING."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.boot.conftest import build_system, free_port, osbuilder, redis_cli, run_detached
from tests.conftest import REPO, Packages

pytestmark = pytest.mark.boot


@pytest.fixture(scope="module")
def media(packages: Packages, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/redis.yml built as every BIOS medium, once for the module's tests."""
    out = tmp_path_factory.mktemp("media")
    formats = ("iso-bios", "raw-bios", "qcow2-bios", "vhd", "dynamic-vhd", "vmdk")
    formats += ("iso-efi", "raw-efi", "qcow2-efi")
    build_system(packages, REPO / "examples/redis.yml", out, *formats)
    return out


@pytest.mark.parametrize(
    ("image", "loader"),
    [
        ("redis.iso", "ISOLINUX 6"),
        ("redis-bios.img", "SYSLINUX 6"),
        ("redis.qcow2", "SYSLINUX 6"),
        ("redis.vhd", "SYSLINUX 6"),
        ("redis-dynamic.vhd", "SYSLINUX 6"),
        ("redis.vmdk", "SYSLINUX 6"),
        # OVMF started the unified kernel image, whose kernel took the initrd from it.
        ("redis-efi.iso", "EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID"),
        ("redis-efi.img", "EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID"),
        ("redis-efi.qcow2", "EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID"),
    ],
)
def test_the_redis_os_boots_from_the_medium(media: Path, image: str, loader: str) -> None:
    port = free_port()
    state = Path(f"{media / image}-state")
    started = run_detached(media / image, port)
    try:  # (a VM that started but did not answer is stopped too)
        assert started.returncode == 0, started.stderr
        assert redis_cli(port, "ping") == "PONG"
    finally:
        stopped = osbuilder("stop", str(media / image))
    assert stopped.stdout.strip() == f"{state}: powered off", stopped.stderr
    console = (state / "console.log").read_text(errors="replace")
    assert loader in console  # the firmware booted the medium's own boot loader...
    assert "Command line: " in console and "console=ttyS0" in console  # ...and the kernel
    assert "reboot: Power down" in console
