"""The kernel image holds a bootable kernel: QEMU (TCG) boots it with a tiny initrd."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from osbuilder.oci.platform import host_target
from osbuilder.oci.pull import Puller
from osbuilder.oci.reference import parse_reference
from osbuilder.oci.store import ContentStore
from tests.boot.conftest import answered_ping, build_system
from tests.conftest import REPO, Packages
from tests.tarfiles import extract_all

pytestmark = pytest.mark.boot

MARKER = "osbuilder-kernel-test: userspace reached"


def kernel_files(store: ContentStore, reference: str, into: Path) -> dict[str, Path]:
    """The files of this machine's kernel image of `reference` (the tag may name an index)."""
    image = Puller(store, None, host_target()).pull(parse_reference(reference)).image
    [layer] = image.manifest.layers
    with tarfile.open(store.blob_path(layer.digest)) as tar:
        names = sorted(tar.getnames())
        extract_all(tar, into)
    assert names == ["System.map", "config", "kernel", "kernel.tar"]
    return {name: into / name for name in names}


def boot_initrd(kernel: Path, initrd: Path) -> str:
    """Boot `kernel` with `initrd` under QEMU (TCG, no network); the console, once it
    powered off cleanly."""
    result = subprocess.run(
        [
            "qemu-system-x86_64",
            "-machine",
            "q35,accel=tcg",
            "-m",
            "256",
            "-nographic",
            "-no-reboot",
            "-nic",
            "none",
            "-kernel",
            str(kernel),
            "-initrd",
            str(initrd),
            "-append",
            "console=ttyS0 panic=-1 quiet",
        ],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    return result.stdout


def test_kernel_image_layout_and_modules(packages: Packages, tmp_path: Path) -> None:
    files = kernel_files(packages.store, packages["osbuilder/kernel"], tmp_path)
    assert files["kernel"].read_bytes()[0x202:0x206] == b"HdrS"  # the bzImage boot header
    assert "CONFIG_VIRTIO_NET=m" in files["config"].read_text()
    with tarfile.open(files["kernel.tar"]) as modules:
        names = modules.getnames()
    version = names[0].split("/")[2]
    assert names[0] == f"lib/modules/{version}"
    dep = f"lib/modules/{version}/modules.dep"
    with tarfile.open(files["kernel.tar"]) as modules:
        member = modules.extractfile(dep)
        assert member is not None
        table = member.read().decode()
    # depmod ran, and the kept modules come with their dependencies
    assert (
        "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko "
        "kernel/net/core/failover.ko" in table
    )
    assert "overlay.ko" in table
    assert "kernel/drivers/gpu/" not in table  # the module list left the rest out


def test_kernel_boots_to_userspace(packages: Packages, tmp_path: Path) -> None:
    files = kernel_files(packages.store, packages["osbuilder/kernel"], tmp_path / "k")
    root = tmp_path / "initrd"
    (root / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin/busybox")
    init = root / "init"
    init.write_text(f"#!/bin/busybox sh\n/bin/busybox echo '{MARKER}'\n/bin/busybox poweroff -f\n")
    init.chmod(0o755)
    initrd = tmp_path / "initrd.img"
    listing = subprocess.run(
        ["find", ".", "-print0"], cwd=root, capture_output=True, check=True
    ).stdout
    with initrd.open("wb") as output:
        subprocess.run(
            ["cpio", "--null", "-o", "-H", "newc", "--quiet"],
            cwd=root,
            input=listing,
            stdout=output,
            check=True,
        )
    console = boot_initrd(files["kernel"], initrd)
    assert MARKER in console, console[-2000:]


def test_the_redis_os_boots_its_decompressed_kernel_as_firecracker_would_take_it(
    packages: Packages, tmp_path: Path
) -> None:
    """--decompress-kernel: Debian's bzImage (an lz4 payload) becomes its ELF vmlinux,
    which QEMU boots through its PVH entry point, as Firecracker does."""
    prefix = build_system(
        packages,
        REPO / "examples/redis.yml",
        tmp_path / "out",
        options=["--decompress-kernel"],
    )
    kernel = Path(f"{prefix}-kernel").read_bytes()
    assert kernel[:4] == b"\x7fELF" and kernel[18] == 62  # e_machine: x86-64
    console = answered_ping(prefix, Path(f"{prefix}-state"))
    assert "init: osbuilder " in console and "reboot: Power down" in console
