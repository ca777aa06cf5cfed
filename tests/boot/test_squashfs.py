"""kernel+squashfs and kernel+erofs: the Redis OS with its root on a read-only disk,
mounted by the boot stage, answers a real redis client in 96 MB of memory (as
kernel+initrd in 160: the whole tree is unpacked into memory), and for arm64
in 192; disks built with --root squashfs answer in 128 (BIOS) and 160 MB (UEFI); a root
that is no squashfs ends the boot with the stage's line and a failure status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.boot.conftest import (
    answered_ping,
    build_system,
    free_port,
    osbuilder,
    redis_cli,
    run_detached,
    run_foreground,
)
from tests.conftest import REPO, Packages

pytestmark = pytest.mark.boot


@pytest.mark.parametrize(
    ("filesystem", "arch", "memory", "mounted"),
    # arm64 boots through UEFI firmware, which itself fails below 192 MB.
    [
        ("squashfs", None, "96", "squashfs: version 4.0"),
        ("squashfs", "arm64", "192", "squashfs: version 4.0"),
        # (osbuilder wrote the image: the guest kernel's erofs driver reads it)
        ("erofs", None, "96", "erofs: (device vda): mounted with root inode"),
    ],
    ids=["host", "arm64", "erofs"],
)
def test_the_redis_os_on_a_read_only_root_answers_in_little_memory(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    filesystem: str,
    arch: str | None,
    memory: str,
    mounted: str,
) -> None:
    packages: Packages = request.getfixturevalue("arm64_packages" if arch else "packages")
    spec = REPO / "examples/redis.yml"
    prefix = build_system(packages, spec, tmp_path / "out", f"kernel+{filesystem}", arch=arch)
    port = free_port()
    state = Path(f"{prefix}-state")
    started = run_detached(prefix, port, "--mem", memory)
    try:
        console = (state / "console.log").read_text(errors="replace")
        assert started.returncode == 0, started.stderr + console[-3000:]
        assert redis_cli(port, "ping") == "PONG"
        assert redis_cli(port, "set", "on", filesystem) == "OK"
        assert redis_cli(port, "get", "on") == filesystem
        [record] = [
            vm for vm in json.loads(osbuilder("ps", "--json").stdout) if vm["state"] == str(state)
        ]
        assert record["root"] == f"{prefix}-{filesystem}.img"
        assert record["initrd"] == f"{prefix}-{filesystem}-initrd.img"
    finally:
        stopped = osbuilder("stop", str(state))
    assert stopped.stdout.strip() == f"{state}: powered off", stopped.stderr
    console = (state / "console.log").read_text(errors="replace")
    assert mounted in console  # the stage loaded the module, which read the root
    assert "init: osbuilder " in console and "onboot dhcpcd: exit code 0" in console
    assert "osbuilder boot stage:" not in console
    assert "reboot: Power down" in console


def test_a_root_that_is_no_squashfs_ends_the_boot_with_the_stages_line(
    packages: Packages, tmp_path: Path
) -> None:
    prefix = build_system(
        packages, REPO / "examples/redis.yml", tmp_path / "out", "kernel+squashfs"
    )
    result, console = run_foreground(
        prefix,
        tmp_path / "state",
        "--disk",
        f"{tmp_path / 'blank.img'},size=16M,format=raw",
        "--append",
        "root=/dev/vdb osbuilder.rootwait=1",
    )
    assert result.returncode not in (0, 124), console[-3000:]  # a panic, not the timeout
    assert (
        "osbuilder boot stage: root=/dev/vdb holds no squashfs image; "
        "attach NAME-squashfs.img there" in console
    )
    assert "Kernel panic" in console and "init: osbuilder " not in console


@pytest.mark.parametrize(
    ("image", "memory", "loader"),
    [
        ("redis-bios.img", "128", "SYSLINUX 6"),
        # OVMF itself needs more than 128 MB to start a loader.
        ("redis-efi.qcow2", "160", "EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID"),
    ],
)
def test_disks_with_a_squashfs_root_answer_in_little_memory(
    packages: Packages, tmp_path: Path, image: str, memory: str, loader: str
) -> None:
    out = tmp_path / "out"
    formats = ("raw-bios", "qcow2-efi")
    build_system(
        packages, REPO / "examples/redis.yml", out, *formats, options=("--root", "squashfs")
    )
    port = free_port()
    state = Path(f"{out / image}-state")
    started = run_detached(out / image, port, "--mem", memory)
    try:
        console = (state / "console.log").read_text(errors="replace")
        assert started.returncode == 0, started.stderr + console[-3000:]
        assert redis_cli(port, "ping") == "PONG"
    finally:
        stopped = osbuilder("stop", str(out / image))
    assert stopped.stdout.strip() == f"{state}: powered off", stopped.stderr
    console = (state / "console.log").read_text(errors="replace")
    assert loader in console and "squashfs: version 4.0" in console
    assert "reboot: Power down" in console


def test_the_redis_os_as_kernel_initrd_answers_in_160_mb(
    packages: Packages, tmp_path: Path
) -> None:
    # Its whole tree is unpacked into memory; the command line's rootfstype=ramfs lifts the
    # kernel's cap of half the memory on that first root (osbuilder/assemble/cmdline.py).
    prefix = build_system(packages, REPO / "examples/redis.yml", tmp_path / "out")
    assert Path(f"{prefix}-cmdline").read_text().endswith(" rootfstype=ramfs")
    console = answered_ping(prefix, Path(f"{prefix}-state"), "--mem", "160")
    assert "Initramfs unpacking failed" not in console


def test_an_initrd_too_big_for_the_memory_ends_the_vm_and_says_what_to_do(
    packages: Packages, tmp_path: Path
) -> None:
    # The same system as kernel+initrd does not fit in 112 MB: the kernel runs out of memory
    # unpacking it and panics; panic=-1 ends QEMU.
    prefix = build_system(packages, REPO / "examples/redis.yml", tmp_path / "out")
    result, console = run_foreground(prefix, tmp_path / "state", "--mem", "112")
    assert result.returncode == 1, console[-3000:]  # a panic, not the timeout (124)
    assert "unpack_to_rootfs+" in console
    assert (
        "osbuilder: the initrd did not fit in the VM's 112 MB (the kernel could not unpack "
        "it); give it more memory (--mem), or build kernel+squashfs or kernel+erofs, whose "
        "root stays on a disk" in result.stderr
    )


def test_a_half_unpacked_initrd_is_stopped_rather_than_served(
    packages: Packages, tmp_path: Path
) -> None:
    # With the kernel's default tmpfs root (capped at half the memory) the unpacking fails
    # half-way and the kernel runs /init on what it got: `run` stops that VM and says why.
    prefix = build_system(packages, REPO / "examples/redis.yml", tmp_path / "out")
    state = Path(f"{prefix}-state")
    started = run_detached(prefix, free_port(), "--mem", "160", "--append", "rootfstype=tmpfs")
    console = (state / "console.log").read_text(errors="replace")
    assert started.returncode != 0, console[-3000:]
    assert "Initramfs unpacking failed: write error" in console
    assert started.stderr.strip().endswith(
        "the initrd did not fit in the VM's 160 MB (the kernel could not unpack it); give "
        "it more memory (--mem), or build kernel+squashfs or kernel+erofs, whose root stays "
        "on a disk"
    ), started.stderr
    assert osbuilder("ps", "--json").stdout.count(str(state)) == 0
