"""kernel+squashfs: the root as a squashfs image (read back with sqfs2tar), and the boot
stage that mounts it (its cpio read back, its module order, its refusals)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from osbuilder.assemble.entry import Content, Entry, Kind
from osbuilder.assemble.system import AssembledSystem, KernelParts
from osbuilder.assemble.tree import Spool as TreeSpool
from osbuilder.assemble.tree import Tree
from osbuilder.build import _write
from osbuilder.errors import UserError
from osbuilder.formats.boot_stage import is_static_elf
from osbuilder.formats.compression import Compression
from osbuilder.formats.job import WriteJob, WriteOptions
from osbuilder.formats.outputfile import output_directory
from osbuilder.formats.squashfs_root import squashfs_compression
from tests.unit.formats.helpers import CAPABILITY, read_newc, run_tool, sample_tree

EPOCH = 1_700_000_000
VERSION = "6.1.0-test"
MODULES = f"lib/modules/{VERSION}"
# A kernel's modules.dep (dependencies transitive, as depmod writes them).
MODULES_DEP = """\
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko \
kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko \
kernel/drivers/virtio/virtio_ring.ko
kernel/fs/squashfs/squashfs.ko:
kernel/fs/overlayfs/overlay.ko:
kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko
kernel/net/802/stp.ko:
"""
# The file systems' modules, which must load, then the disk drivers, which may fail (a
# hypervisor's that the machine is not on).
LOAD_ORDER = ["kernel/fs/squashfs/squashfs.ko", "kernel/fs/overlayfs/overlay.ko"]
DRIVERS_ORDER = [
    "kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/virtio/virtio.ko",
    "kernel/drivers/virtio/virtio_pci.ko",
    "kernel/drivers/block/virtio_blk.ko",
]
STATIC_BUSYBOX = Path("/bin/busybox")  # Debian's busybox is static: what the stage runs


def system(tmp_path: Path, *, modules_dep: str | None = MODULES_DEP) -> AssembledSystem:
    """The sample tree plus a static busybox, a kernel's modules and boot/kernel."""
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(exist_ok=True)
    spool = TreeSpool(spool_dir)
    tree = Tree(spool)

    def content(data: bytes) -> Content:
        return spool.write_bytes(data)

    for entry in sample_tree(content, devices=os.geteuid() == 0):
        if entry.path != "bin/busybox":
            tree.put(entry)
    tree.put(Entry("bin/busybox", Kind.FILE, 0o755, content=content(STATIC_BUSYBOX.read_bytes())))
    if modules_dep is not None:
        tree.put(
            Entry(f"{MODULES}/modules.dep", Kind.FILE, 0o644, content=content(modules_dep.encode()))
        )
        for line in modules_dep.splitlines():
            module = line.partition(":")[0]
            tree.put(
                Entry(f"{MODULES}/{module}", Kind.FILE, 0o644, content=content(module.encode()))
            )
    kernel = content(b"a kernel")
    tree.put(Entry("boot/kernel", Kind.FILE, 0o644, content=kernel))
    spool.flush()
    return AssembledSystem(
        tree, KernelParts(kernel, "console=ttyS0", config="CONFIG_SQUASHFS_ZSTD=y\n")
    )


def build(
    tmp_path: Path,
    assembled: AssembledSystem,
    out: str = "out",
    compression: Compression | None = None,
    format_name: str = "kernel+squashfs",
) -> dict[str, bytes]:
    """Write `format_name` (kernel+squashfs) of `assembled` into tmp_path/out; every file's
    bytes by name."""
    scratch = tmp_path / f"{out}-scratch"
    scratch.mkdir()
    directory = tmp_path / out
    directory.mkdir()
    with output_directory(directory) as outputs:
        job = WriteJob(
            assembled,
            outputs,
            "system",
            WriteOptions(compression),
            (format_name,),
            EPOCH,
            scratch,
        )
        written = _write(job)  # as a build writes it: its errors prefixed by the format
    assert sorted(o.path.name for o in written) == sorted(p.name for p in directory.iterdir())
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def root_image(files: dict[str, bytes], filesystem: str) -> bytes:
    """The root's image among a kernel+FS format's files, which are the four expected."""
    assert sorted(files) == sorted(
        f"system-{suffix}"
        for suffix in ("cmdline", "kernel", f"{filesystem}-initrd.img", f"{filesystem}.img")
    )
    assert files["system-kernel"] == b"a kernel"
    assert files["system-cmdline"] == b"console=ttyS0"
    return files[f"system-{filesystem}.img"]


def squashfs_members(image: bytes, tmp_path: Path) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    path = tmp_path / "read.sqfs"
    path.write_bytes(image)
    listing = run_tool("sqfs2tar", "--no-skip", path)
    with tarfile.open(
        fileobj=io.BytesIO(listing), encoding="utf-8", errors="surrogateescape"
    ) as tar:
        return {
            m.name.rstrip("/"): (m, tar.extractfile(m).read() if m.isreg() else b"")  # type: ignore[union-attr]
            for m in tar.getmembers()
        }


def test_the_squashfs_holds_the_tree_but_the_kernel_with_owners_modes_times_and_xattrs(
    tmp_path: Path,
) -> None:
    assembled = system(tmp_path)
    image = root_image(build(tmp_path, assembled), "squashfs")
    assert image[:4] == b"hsqs"
    assert int.from_bytes(image[20:22], "little") == 6  # compressor id: zstd (the config's)
    members = squashfs_members(image, tmp_path)
    expected = [e for e in assembled.tree.walk() if e.path != "boot/kernel"]
    assert sorted(members) == sorted(e.path for e in expected)
    links: dict[int, str] = {}
    for entry in expected:
        member, data = members[entry.path]
        assert (member.mode, member.uid, member.gid, member.mtime) == (
            entry.mode,
            entry.uid,
            entry.gid,
            entry.mtime,
        ), entry.path
        if entry.kind is Kind.FILE and entry.content is None:
            assert member.isreg() and data == b"", entry.path
        elif entry.kind is Kind.FILE:
            first = links.setdefault(id(entry.content), entry.path)
            if first == entry.path:
                assert data == entry.content.read_bytes(), entry.path
            else:  # a hard link stays one
                assert member.islnk() and member.linkname == first, entry.path
        if entry.kind is Kind.SYMLINK:
            assert member.issym() and member.linkname == entry.linkname
        if entry.kind in (Kind.CHAR, Kind.BLOCK):
            assert (member.devmajor, member.devminor) == (entry.devmajor, entry.devminor)
    ping = members["usr/bin/ping"][0]
    assert (
        ping.pax_headers["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape")
        == CAPABILITY
    )  # file capabilities survive (an initrd loses them)


def test_the_outputs_are_reproducible_and_the_compressor_follows_the_kernel_or_the_choice(
    tmp_path: Path,
) -> None:
    first = build(tmp_path, system(tmp_path), "first")
    again = build(tmp_path, system(tmp_path), "again")
    assert first == again
    gzip = build(tmp_path, system(tmp_path), "gzip", compression="gzip")
    assert int.from_bytes(gzip["system-squashfs.img"][20:22], "little") == 1  # zlib
    assert gzip["system-squashfs-initrd.img"][:2] == b"\x1f\x8b"
    assert squashfs_compression(None, None) == "gzip"
    assert squashfs_compression("CONFIG_SQUASHFS_ZSTD=y\n", "none") == "zstd"
    assert squashfs_compression("# CONFIG_SQUASHFS_ZSTD is not set\n", None) == "gzip"


def test_the_boot_stage_holds_busybox_the_roots_modules_in_load_order_and_its_init(
    tmp_path: Path,
) -> None:
    files = build(tmp_path, system(tmp_path), compression="none")
    members = {m.name.decode(): m for m in read_newc(files["system-squashfs-initrd.img"])}
    modules = [f"{VERSION}/{path}" for path in LOAD_ORDER]
    drivers = [f"{VERSION}/{path}" for path in DRIVERS_ORDER]
    assert sorted(n for n in members if n.endswith(".ko")) == sorted(
        f"lib/modules/{m}" for m in modules + drivers
    )
    assert members["bin/busybox"].data == STATIC_BUSYBOX.read_bytes()
    assert (members["dev/console"].rdevmajor, members["dev/console"].rdevminor) == (5, 1)
    assert (members["dev/kmsg"].rdevmajor, members["dev/kmsg"].rdevminor) == (1, 11)
    init = members["init"]
    assert init.mode == 0o100755
    script = init.data.decode()
    assert script.startswith("#!/bin/busybox sh\n")
    assert f"for module in {' '.join(modules)}; do" in script  # dependencies first
    assert f"for module in {' '.join(drivers)}; do" in script
    assert script.index(" ".join(modules)) < script.index(" ".join(drivers))
    assert "exec $bb switch_root /newroot /init" in script
    assert not [n for n in members if "bridge" in n or "stp" in n]  # not the root's


def test_a_kernel_with_everything_built_in_needs_no_modules(tmp_path: Path) -> None:
    files = build(tmp_path, system(tmp_path, modules_dep=None), compression="none")
    names = [m.name.decode() for m in read_newc(files["system-squashfs-initrd.img"])]
    assert not [n for n in names if n.endswith(".ko")]
    assert (
        'for module in ; do\n    $bb insmod "/lib/modules/$module" || fail'
        in dict(
            (m.name.decode(), m.data.decode(errors="replace"))
            for m in read_newc(files["system-squashfs-initrd.img"])
        )["init"]
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("no busybox", "the system has no /bin/busybox to mount its root with"),
        ("dynamic busybox", "/bin/busybox is not a static executable"),
        ("no squashfs", "the kernel has no squashfs driver"),
        ("two kernels", "the system has modules of several kernels (6.1.0-other, 6.1.0-test)"),
    ],
)
def test_a_system_the_boot_stage_cannot_mount_is_refused_and_leaves_nothing(
    tmp_path: Path, change: str, message: str
) -> None:
    assembled = system(
        tmp_path,
        modules_dep=MODULES_DEP.replace("kernel/fs/squashfs/squashfs.ko:\n", "")
        if change == "no squashfs"
        else MODULES_DEP,
    )
    tree = assembled.tree
    if change == "no busybox":
        tree.remove("bin/busybox")
    if change == "dynamic busybox":
        dynamic = tree.spool.write_bytes(Path("/bin/ls").read_bytes())
        tree.spool.flush()
        tree.put(Entry("bin/busybox", Kind.FILE, 0o755, content=dynamic))
    if change == "two kernels":
        other = tree.spool.write_bytes(b"")
        tree.spool.flush()
        tree.put(Entry("lib/modules/6.1.0-other/modules.dep", Kind.FILE, 0o644, content=other))
    with pytest.raises(UserError) as raised:
        build(tmp_path, assembled)
    assert message in str(raised.value)
    assert str(raised.value).startswith("kernel+squashfs: ")
    assert list((tmp_path / "out").iterdir()) == []


def test_static_executables_are_told_from_dynamic_ones() -> None:
    assert is_static_elf(STATIC_BUSYBOX.read_bytes()[:65536])
    assert is_static_elf(Path("/sbin/ldconfig").read_bytes()[:65536])  # static-pie
    assert not is_static_elf(Path("/bin/ls").read_bytes()[:65536])
    assert not is_static_elf(b"#!/bin/sh\n")
    assert not is_static_elf(b"\x7fELF" + b"\x00" * 60)
