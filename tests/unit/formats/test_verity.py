"""--verity: each root image carries a dm-verity hash tree that `veritysetup verify` accepts
with the root hash of the kernel's command line, the outputs stay bit-identical, the boot
stage carries what opens the root through dm-verity (the system's dmsetup, its loader and
libraries, dm_verity and what it needs), and a format that cannot carry a hash tree is
refused in one line before anything is written."""

from __future__ import annotations

import lzma
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from osbuilder.assemble.entry import Entry, Kind
from osbuilder.assemble.system import AssembledSystem
from osbuilder.build import _write
from osbuilder.errors import UserError
from osbuilder.formats.job import WriteJob, WriteOptions
from osbuilder.formats.outputfile import output_directory
from tests.unit.formats.helpers import read_newc, run_tool
from tests.unit.formats.test_squashfs import EPOCH, MODULES, MODULES_DEP, VERSION, system

DMSETUP = Path("/sbin/dmsetup")  # the host's (cryptsetup-bin's dependencies bring it)
# dm_mod xz-compressed, as kernels/cloud keeps it (the stage carries it inflated).
VERITY_DEP = """\
kernel/drivers/md/dm-mod.ko.xz:
kernel/drivers/md/dm-bufio.ko: kernel/drivers/md/dm-mod.ko.xz
kernel/lib/reed_solomon/reed_solomon.ko:
kernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko.xz \
kernel/lib/reed_solomon/reed_solomon.ko
kernel/fs/erofs/erofs.ko:
"""
WORD = re.compile(r"osbuilder\.verity\.(\w+)=(\d+),([0-9a-f]{64}),([0-9a-f]{64})")


def host_closure() -> dict[str, Path]:
    """The host's dmsetup's libraries and loader, by the name dmsetup asks for them
    (ldd's answer: what ld.so loads)."""
    listing = run_tool("ldd", DMSETUP).decode()
    found = {}
    for line in listing.splitlines():
        if "=>" in line:
            name, _, rest = line.strip().partition(" => ")
            found[name] = Path(rest.split()[0])
        elif line.strip().startswith("/"):
            loader = line.split()[0]
            found[loader] = Path(loader)
    return found


def verity_system(tmp_path: Path, *, dmsetup: bool = True) -> AssembledSystem:
    """test_squashfs's system with dm_verity's modules and, unless told, the host's dmsetup
    laid out as Debian does: /sbin/dmsetup, libraries in lib/x86_64-linux-gnu, the loader
    through /lib64."""
    assembled = system(tmp_path, modules_dep=MODULES_DEP + VERITY_DEP)
    tree, spool = assembled.tree, assembled.tree.spool
    for line in VERITY_DEP.splitlines():
        if module := line.partition(":")[0]:
            data = module.removesuffix(".xz").encode()
            content = spool.write_bytes(lzma.compress(data) if module.endswith(".xz") else data)
            tree.put(Entry(f"{MODULES}/{module}", Kind.FILE, 0o644, content=content))
    if dmsetup:
        tree.put(Entry("sbin/dmsetup", Kind.FILE, 0o755, content=spool.copy_file(DMSETUP)))
        for name, path in host_closure().items():
            target = f"lib/x86_64-linux-gnu/{Path(name).name}"
            data = spool.copy_file(path.resolve())
            tree.put(Entry(target, Kind.FILE, 0o755, content=data))
            if name.startswith("/"):  # the loader: a symlink where programs name it
                link = f"../{target}"
                tree.put(Entry(name.lstrip("/"), Kind.SYMLINK, 0o777, linkname=link))
    spool.flush()
    return assembled


def build(
    tmp_path: Path,
    assembled: AssembledSystem,
    formats: tuple[str, ...],
    out: str = "out",
    root: str = "initrd",
) -> dict[str, bytes]:
    """`formats` of `assembled` with --verity (and --root `root`); every file by name."""
    scratch = tmp_path / f"{out}-scratch"
    scratch.mkdir()
    directory = tmp_path / out
    directory.mkdir()
    options = WriteOptions("none", root=root, verity=True)  # type: ignore[arg-type]
    with output_directory(directory) as outputs:
        job = WriteJob(assembled, outputs, "system", options, formats, EPOCH, scratch)
        _write(job)
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def verity_words(cmdline: str) -> dict[str, tuple[int, str, str]]:
    """The command line's verity words: (data blocks, root hash, salt) by file system."""
    return {fs: (int(blocks), h, salt) for fs, blocks, h, salt in WORD.findall(cmdline)}


def verify(image: Path, blocks: int, root_hash: str, salt: str) -> None:
    """`veritysetup verify` of the image (its tree after its `blocks`), which must pass,
    and the salt and block count its superblock records."""
    offset = f"--hash-offset={blocks * 4096}"
    run_tool("veritysetup", "verify", offset, image, image, root_hash)
    dump = run_tool("veritysetup", "dump", offset, image).decode()
    assert re.search(rf"Salt:\s+{salt}\n", dump) and re.search(rf"Data blocks:\s+{blocks}\n", dump)
    assert re.search(r"Hash type:\s+1\n", dump) and re.search(r"Hash algorithm:\s+sha256\n", dump)


def test_kernel_roots_carry_a_tree_veritysetup_verifies_and_builds_are_bit_identical(
    tmp_path: Path,
) -> None:
    assembled = verity_system(tmp_path)
    formats = ("kernel+squashfs", "kernel+erofs")
    files = build(tmp_path, assembled, formats)
    assert build(tmp_path, assembled, formats, out="again") == files
    cmdline = files["system-cmdline"].decode()
    assert cmdline.startswith("console=ttyS0 osbuilder.verity.")
    words = verity_words(cmdline)
    assert sorted(words) == ["erofs", "squashfs"]  # (the two share NAME-cmdline)
    for filesystem, (blocks, root_hash, salt) in words.items():
        image = tmp_path / "out" / f"system-{filesystem}.img"
        verify(image, blocks, root_hash, salt)
        data = image.read_bytes()[: blocks * 4096]
        magic = b"hsqs" if filesystem == "squashfs" else struct.pack("<I", 0xE0F5E1E2)
        assert magic in data[:1028]  # the data part is the plain image, padded
        flipped = bytearray(image.read_bytes())
        flipped[blocks * 4096 // 2] ^= 1
        image.write_bytes(flipped)
        refused = subprocess.run(
            ["veritysetup", "verify", f"--hash-offset={blocks * 4096}", image, image, root_hash],
            capture_output=True,
            check=False,
        )
        assert refused.returncode != 0  # one changed bit, and the tree no longer matches


def test_a_disk_with_a_squashfs_root_carries_it_with_its_tree_and_its_cmdline_the_hash(
    tmp_path: Path,
) -> None:
    files = build(tmp_path, verity_system(tmp_path), ("raw-bios",), root="squashfs")
    disk = files["system-bios.img"]
    # The second MBR partition: the root's squashfs and its tree.
    start, sectors = struct.unpack_from("<II", disk, 446 + 16 + 8)
    partition = tmp_path / "root.img"
    partition.write_bytes(disk[start * 512 : (start + sectors) * 512])
    image, config = tmp_path / "disk.img", tmp_path / "syslinux.cfg"
    image.write_bytes(disk)
    run_tool("mcopy", "-i", f"{image}@@1M", "::syslinux.cfg", config)
    [(filesystem, (blocks, root_hash, salt))] = verity_words(config.read_text()).items()
    assert filesystem == "squashfs"
    verify(partition, blocks, root_hash, salt)


def test_the_boot_stage_carries_dmsetup_its_libraries_and_dm_verity(tmp_path: Path) -> None:
    files = build(tmp_path, verity_system(tmp_path), ("kernel+squashfs",))
    members = {m.name.decode(): m for m in read_newc(files["system-squashfs-initrd.img"])}
    closure = host_closure()
    assert members["dm/dmsetup"].data == DMSETUP.read_bytes()
    for name, path in closure.items():
        assert members[f"dm/{Path(name).name}"].data == path.resolve().read_bytes()
    script = members["init"].data.decode()
    assert "\0" not in script
    loader = next(Path(name).name for name in closure if name.startswith("/"))
    assert f"dm() {{ /dm/{loader} --library-path /dm /dm/dmsetup" in script
    # dm_verity after what it needs, and all of them must load.
    modules = [
        f"{VERSION}/kernel/{m}" for m in ("fs/squashfs/squashfs.ko", "fs/overlayfs/overlay.ko")
    ]
    modules += [
        f"{VERSION}/kernel/{m}"
        for m in (
            "drivers/md/dm-mod.ko",
            "drivers/md/dm-bufio.ko",
            "lib/reed_solomon/reed_solomon.ko",
            "drivers/md/dm-verity.ko",
        )
    ]
    assert f"for module in {' '.join(modules)}; do" in script
    for module in modules:
        assert members[f"lib/modules/{module}"].data == module.removeprefix(f"{VERSION}/").encode()
    assert "osbuilder.verity.squashfs=*) verity=" in script
    assert "1 panic_on_corruption" in script
    (tmp_path / "init").write_text(script)
    run_tool("sh", "-n", tmp_path / "init")  # it parses


def test_a_system_without_dmsetup_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^kernel\+squashfs: --verity: the system has no "):
        build(tmp_path, verity_system(tmp_path, dmsetup=False), ("kernel+squashfs",))
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (
            ["-f", "kernel+initrd"],
            "--verity: kernel+initrd keeps the root in its initrd, which dm-verity cannot "
            "check; build kernel+squashfs, kernel+erofs, raw-bios, ",
        ),
        (["-f", "tar"], "--verity: tar has no root image, which dm-verity cannot check; "),
        (
            ["-f", "qcow2-efi"],
            "--verity: qcow2-efi keeps the root in its initrd, which dm-verity cannot check; "
            "add --root squashfs",
        ),
        (
            ["-f", "kernel+squashfs", "-f", "iso-efi"],
            "--verity: iso-efi keeps the root in its initrd",
        ),
    ],
)
def test_a_format_that_cannot_carry_a_tree_is_refused_at_once_in_one_line(
    tmp_path: Path, options: list[str], said: str
) -> None:
    spec = tmp_path / "system.yml"
    spec.write_text("kernel:\n  image: example.org/kernel:1\ninit: [example.org/init:1]\n")
    output = tmp_path / "out"
    command = [sys.executable, "-m", "osbuilder", "build", "--offline", "--verity"]
    done = subprocess.run(
        [*command, "--cache", str(tmp_path), "-o", str(output), *options, str(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    [line] = done.stderr.splitlines()
    assert said in line, line
    assert not output.exists()
