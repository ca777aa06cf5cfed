"""kernel+erofs: the root as an EROFS image beside its boot stage; the image read back with
erofs-utils (the image writer itself is tests/unit/formats/test_erofs.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from osbuilder.assemble.entry import Entry, Kind
from osbuilder.assemble.system import AssembledSystem
from osbuilder.errors import UserError
from tests.unit.formats.helpers import read_newc, run_tool
from tests.unit.formats.test_squashfs import (
    DRIVERS_ORDER,
    EPOCH,
    MODULES_DEP,
    VERSION,
    root_image,
    system,
)
from tests.unit.formats.test_squashfs import build as build_format

EROFS_MAGIC = bytes.fromhex("e2e1f5e0")  # 0xE0F5E1E2, little-endian, at byte 1024
EROFS_DEP = (
    MODULES_DEP + "kernel/fs/erofs/erofs.ko: kernel/lib/libcrc32c.ko\nkernel/lib/libcrc32c.ko:\n"
)
LOAD_ORDER = [
    "kernel/lib/libcrc32c.ko",
    "kernel/fs/erofs/erofs.ko",
    "kernel/fs/overlayfs/overlay.ko",
]


def build(tmp_path: Path, assembled: AssembledSystem, out: str = "out") -> dict[str, bytes]:
    return build_format(tmp_path, assembled, out, "none", "kernel+erofs")


def image_uuid(image: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=image[1024 + 48 : 1024 + 64])


def test_the_outputs_are_the_kernel_cmdline_a_consistent_erofs_root_and_its_boot_stage(
    tmp_path: Path,
) -> None:
    assembled = system(tmp_path, modules_dep=EROFS_DEP)
    files = build(tmp_path, assembled)
    image = root_image(files, "erofs")
    assert image[1024:1028] == EROFS_MAGIC
    path = tmp_path / "root.img"
    path.write_bytes(image)
    run_tool("fsck.erofs", path)  # consistent, as erofs-utils reads it
    superblock = run_tool("dump.erofs", "-s", path).decode()
    assert str(image_uuid(image)) in superblock
    assert image_uuid(image).version == 4
    extracted = tmp_path / "extracted"
    run_tool("fsck.erofs", f"--extract={extracted}", "--no-preserve", path)
    assert (extracted / "etc/hostname").read_bytes() == b"osbuilder\n"
    assert (extracted / "boot").is_dir() and not (extracted / "boot/kernel").exists()

    # The boot stage loads erofs (and what it needs) and looks for erofs's magic.
    members = {m.name.decode(): m for m in read_newc(files["system-erofs-initrd.img"])}
    modules = [f"{VERSION}/{module}" for module in LOAD_ORDER]
    drivers = [f"{VERSION}/{module}" for module in DRIVERS_ORDER]
    assert sorted(n for n in members if n.endswith(".ko")) == sorted(
        f"lib/modules/{m}" for m in modules + drivers
    )
    script = members["init"].data.decode()
    assert f"for module in {' '.join(modules)}; do" in script
    assert "magic_offset=1024 magic=e2e1f5e0 magic_bytes=4" in script
    assert '$bb mount -t erofs -o ro "$device" /root/lower' in script
    assert "attach NAME-erofs.img" in script and "squashfs" not in script


def test_the_image_is_reproducible_and_its_uuid_follows_its_contents(tmp_path: Path) -> None:
    first = build(tmp_path, system(tmp_path, modules_dep=EROFS_DEP), "first")
    again = build(tmp_path, system(tmp_path, modules_dep=EROFS_DEP), "again")
    assert first == again
    changed = system(tmp_path, modules_dep=EROFS_DEP)
    content = changed.tree.spool.write_bytes(b"changed\n")
    changed.tree.spool.flush()
    changed.tree.put(Entry("etc/hostname", Kind.FILE, 0o644, mtime=EPOCH, content=content))
    other = build(tmp_path, changed, "other")
    assert image_uuid(other["system-erofs.img"]) != image_uuid(first["system-erofs.img"])
    assert image_uuid(first["system-erofs.img"]) != uuid.UUID(int=0)


def test_a_kernel_without_erofs_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"kernel\+erofs: the kernel has no erofs driver"):
        build(tmp_path, system(tmp_path))  # modules.dep names squashfs, not erofs
    assert not list((tmp_path / "out").iterdir())
