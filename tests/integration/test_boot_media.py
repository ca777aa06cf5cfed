"""The boot media (iso-bios, raw-bios, qcow2-bios, vhd, dynamic-vhd, vmdk, aws, iso-efi,
iso-efi-initrd, raw-efi, qcow2-efi), read back with the real tools.

That they boot is tests/boot/test_boot_media.py; here: what is on them, reproducibly.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from osbuilder.oci.store import ContentStore
from tests.conftest import Packages
from tests.integration.helpers import osbuilder, store_image
from tests.integration.test_build import build, spec

pytestmark = pytest.mark.integration

SPEC = """\
kernel:
  image: {kernel}
  cmdline: console=ttyS0 osbuilder.test=a,b
init: [{init}]
"""
FORMATS = (
    *("kernel+initrd", "iso-bios", "raw-bios", "qcow2-bios", "vhd", "dynamic-vhd", "vmdk"),
    *("aws", "iso-efi", "iso-efi-initrd", "raw-efi", "qcow2-efi"),
)
MEDIA = [option for name in FORMATS for option in ("-f", name)]


def tool(*command: str | Path) -> str:
    return subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, check=True
    ).stdout


def test_media_are_reproducible_and_carry_the_kernel_initrd_and_cmdline(
    packages: Packages, tmp_path: Path
) -> None:
    path = spec(tmp_path, packages, SPEC)
    first = build(packages, tmp_path, "--json", *MEDIA, str(path))
    assert first.returncode == 0, first.stderr
    digests = {Path(o["path"]).name: o["sha256"] for o in json.loads(first.stdout)}
    assert sorted(digests) == sorted(
        [
            "spec-kernel",
            "spec-initrd.img",
            "spec-cmdline",
            "spec.iso",
            "spec-bios.img",
            "spec.qcow2",
            "spec.vhd",
            "spec-dynamic.vhd",
            "spec.vmdk",
            "spec.raw",
            "spec-efi.iso",
            "spec-efi-initrd.iso",
            "spec-efi.img",
            "spec-efi.qcow2",
            "spec-efi.pcrs.json",  # (the UKI's PCR 11, once for the four formats)
        ]
    )
    time.sleep(1.1)  # a clock time that slipped into a medium would differ now
    again = build(packages, tmp_path, "--json", *MEDIA, str(path), out="again")
    assert {Path(o["path"]).name: o["sha256"] for o in json.loads(again.stdout)} == digests
    out = tmp_path / "out"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no spool left
    kernel, initrd = (out / "spec-kernel").read_bytes(), (out / "spec-initrd.img").read_bytes()
    # LinuxKit's names for two of the images: aws's raw disk for EC2's import is raw-bios's,
    # its UEFI ISO of a kernel and initrd is iso-efi's.
    assert digests["spec.raw"] == digests["spec-bios.img"]
    assert digests["spec-efi-initrd.iso"] == digests["spec-efi.iso"]

    iso = out / "spec.iso"
    listed = tool("xorriso", "-indev", iso, "-find", "/", "-type", "f")  # (and boot.cat)
    assert sorted(listed.split()) == sorted(
        f"'/{name}'"
        for name in (
            "boot/kernel",
            "boot/initrd.img",
            "isolinux/isolinux.bin",
            "isolinux/isolinux.cfg",
            "isolinux/ldlinux.c32",
        )
    )
    extracted = tmp_path / "iso"
    tool(
        "xorriso",
        "-osirrox",
        "on",
        "-indev",
        iso,
        "-extract",
        "/boot",
        extracted / "boot",
        "-extract",
        "/isolinux/isolinux.cfg",
        extracted / "isolinux.cfg",
    )
    assert (extracted / "boot/kernel").read_bytes() == kernel
    assert (extracted / "boot/initrd.img").read_bytes() == initrd
    config = (extracted / "isolinux.cfg").read_text()
    assert "  APPEND console=ttyS0 osbuilder.test=a,b rootfstype=ramfs\n" in config
    assert "INITRD /boot/initrd.img" in config
    el_torito = tool("xorriso", "-indev", iso, "-report_el_torito", "plain")
    assert "El Torito boot img :   1  BIOS  y   none" in el_torito
    assert iso.read_bytes()[510:512] == b"\x55\xaa"  # isohybrid: it boots as a disk too

    disk = out / "spec-bios.img"
    fat = f"{disk}@@1M"  # mtools' way to name the file system at the first partition's offset
    names = tool("mdir", "-a", "-b", "-i", fat, "::").split()
    assert sorted(names) == sorted(
        f"::/{name}"
        for name in ("kernel", "initrd.img", "syslinux.cfg", "ldlinux.sys", "ldlinux.c32")
    )
    tool("mcopy", "-n", "-i", fat, "::kernel", "::initrd.img", "::syslinux.cfg", tmp_path)
    assert (tmp_path / "kernel").read_bytes() == kernel
    assert (tmp_path / "initrd.img").read_bytes() == initrd
    assert (
        "  APPEND console=ttyS0 osbuilder.test=a,b rootfstype=ramfs\n"
        in (tmp_path / "syslinux.cfg").read_text()
    )
    partition = tmp_path / "partition.img"
    partition.write_bytes(disk.read_bytes()[1 << 20 :])
    tool("fsck.fat", "-n", partition)  # a consistent file system, as Linux's fsck sees it
    assert "OSBUILDER" in tool("fatlabel", partition)

    qcow2 = out / "spec.qcow2"
    assert json.loads(tool("qemu-img", "info", "--output", "json", qcow2))["format"] == "qcow2"
    tool("qemu-img", "compare", "-f", "raw", "-F", "qcow2", disk, qcow2)  # the same disk
    vhd = out / "spec.vhd"
    assert (
        json.loads(tool("qemu-img", "info", "--output", "json", "-f", "vpc", vhd))["virtual-size"]
        == disk.stat().st_size
    )
    tool("qemu-img", "compare", "-f", "raw", "-F", "vpc", disk, vhd)
    dynamic = out / "spec-dynamic.vhd"
    assert dynamic.read_bytes()[:8] == b"conectix"  # a dynamic VHD: the footer's copy first
    assert dynamic.stat().st_size < disk.stat().st_size
    tool("qemu-img", "compare", "-f", "raw", "-F", "vpc", disk, dynamic)
    vmdk = out / "spec.vmdk"
    assert json.loads(tool("qemu-img", "info", "--output", "json", vmdk))["format"] == "vmdk"
    tool("qemu-img", "compare", "-f", "raw", "-F", "vmdk", disk, vmdk)

    efi = out / "spec-efi.img"
    table = json.loads(tool("sfdisk", "--json", efi))["partitiontable"]
    assert table["label"] == "gpt"
    [esp] = table["partitions"]
    assert esp["type"] == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"  # an EFI system partition
    assert esp["start"] == 2048
    fat = f"{efi}@@1M"
    assert tool("mdir", "-a", "-b", "-i", fat, "::/EFI/BOOT").split() == ["::/EFI/BOOT/BOOTX64.EFI"]
    uki = tmp_path / "BOOTX64.EFI"
    tool("mcopy", "-n", "-i", fat, "::EFI/BOOT/BOOTX64.EFI", uki)
    sections = tool("objdump", "-h", uki)
    for section, expected in (
        (".linux", kernel),
        (".initrd", initrd),
        (".cmdline", b"console=ttyS0 osbuilder.test=a,b rootfstype=ramfs"),
    ):
        assert f" {section} " in sections
        tool("objcopy", "-O", "binary", f"--only-section={section}", uki, tmp_path / section)
        assert (tmp_path / section).read_bytes() == expected, section
    partition = tmp_path / "esp.img"
    partition.write_bytes(efi.read_bytes()[1 << 20 : (2048 + esp["size"]) * 512])
    tool("fsck.fat", "-n", partition)
    tool("qemu-img", "compare", "-f", "raw", "-F", "qcow2", efi, out / "spec-efi.qcow2")

    efi_iso = out / "spec-efi.iso"
    el_torito = tool("xorriso", "-indev", efi_iso, "-report_el_torito", "plain")
    assert "El Torito boot img :   1  UEFI  y   none" in el_torito
    assert "El Torito img path :   1  /efi.img" in el_torito
    tool(
        "xorriso", "-osirrox", "on", "-indev", efi_iso, "-extract", "/efi.img", tmp_path / "efi.img"
    )
    assert (tmp_path / "efi.img").read_bytes() == partition.read_bytes()  # raw-efi's ESP
    [iso_esp] = [
        p
        for p in json.loads(tool("sfdisk", "--json", efi_iso))["partitiontable"]["partitions"]
        if p["type"] == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    ]  # the same, as a partition: the ISO boots as a disk too
    assert iso_esp["size"] * 512 == partition.stat().st_size


def test_a_medium_needs_a_kernel(packages: Packages, tmp_path: Path) -> None:
    path = spec(tmp_path, packages, "init: [{init}]\n")
    result = build(packages, tmp_path, "-f", "tar", "-f", "qcow2-bios", str(path))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "osbuilder: qcow2-bios: the spec has no kernel; give it a `kernel: image:`, "
        "or build another format (-f tar)"
    )
    assert list((tmp_path / "out").iterdir()) == []  # not even the tar


def test_a_bios_medium_for_another_architecture_is_refused_at_once(
    packages: Packages, tmp_path: Path
) -> None:
    path = spec(tmp_path, packages, SPEC)
    result = build(packages, tmp_path, "--arch", "arm64", "-f", "raw-bios", str(path))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "osbuilder: raw-bios is made for amd64 PCs, not arm64; build kernel+initrd or tar for it"
    )


def test_an_efi_medium_of_a_kernel_without_an_efi_stub_is_refused_at_its_line(
    tmp_path: Path,
) -> None:
    store = ContentStore(tmp_path / "store")
    config = b"CONFIG_RD_GZIP=y\n# CONFIG_EFI_STUB is not set\n"
    store_image(store, "test/no-efi-kernel:1", {"kernel": b"bzIm", "config": config})
    path = tmp_path / "spec.yml"
    path.write_text("kernel:\n  image: test/no-efi-kernel:1\n  tar: none\n")
    result = osbuilder(
        "build",
        "--offline",
        "--cache",
        str(store.root),
        "-o",
        str(tmp_path / "out"),
        "-f",
        "tar",
        "-f",
        "raw-efi",
        str(path),
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"osbuilder: {path}:2:10: raw-efi: kernel.image: this kernel has no EFI stub (its "
        "config lacks CONFIG_EFI_STUB=y), so UEFI cannot start it; build a -bios format"
    )
    assert list((tmp_path / "out").iterdir()) == []
