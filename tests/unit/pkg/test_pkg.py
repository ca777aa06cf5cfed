"""Package-building pieces that need no mmdebstrap: tags, drops, module selection."""

from __future__ import annotations

import io
import lzma
import marshal
import re
import shutil
import sys
import tarfile
from pathlib import Path

import pytest

from osbuilder.errors import UserError
from osbuilder.pkg.bytecode import Bytecode
from osbuilder.pkg.debian import STATUS_HOOK, mmdebstrap_command
from osbuilder.pkg.kernel import (
    compress_modules,
    module_name,
    parse_modules_dep,
    select_modules,
)
from osbuilder.pkg.layers import Dropper, normalise
from osbuilder.pkg.lockfile import read_lock
from osbuilder.pkg.recipe import DebianRoot, load_recipe
from osbuilder.pkg.tag import package_tag

REPO = Path(__file__).resolve().parents[3]
RECIPES = sorted([*REPO.glob("pkg/*/"), *REPO.glob("kernels/*/")])


def test_examples_name_the_packages_by_their_recipes() -> None:
    """`@pkg:PATH`, never a tag: a lock refreshed on a new machine (`make packages` with
    --refresh-missing) is a new tag, and the examples must follow it."""
    recipes = {d.resolve() for d in RECIPES}
    for example in sorted((REPO / "examples").glob("*.yml")):
        text = example.read_text()
        assert not re.findall(r"osbuilder/[a-z0-9-]+:", text), example.name
        for path in re.findall(r"@pkg:([^\"\s]+)", text):
            assert (example.parent / path).resolve() in recipes, (example.name, path)


def test_every_recipe_loads() -> None:
    names = {load_recipe(d).recipe.image for d in RECIPES}
    assert names == {
        "osbuilder/init",
        "osbuilder/crun",
        "osbuilder/runc",
        "osbuilder/dhcpcd",
        "osbuilder/getty",
        "osbuilder/sshd",
        "osbuilder/redis",
        "osbuilder/format",
        "osbuilder/mount",
        "osbuilder/metadata",
        "osbuilder/sysctl",
        "osbuilder/swap",
        "osbuilder/poweroff",
        "osbuilder/ntpd",
        "osbuilder/ca-certificates",
        "osbuilder/dm-crypt",
        "osbuilder/qemu-ga",
        "osbuilder/tpm2-tools",
        "osbuilder/kernel",
    }


def test_init_tag_covers_the_guest_code(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "pkg/init", copy / "pkg/init")
    shutil.copytree(
        REPO / "osbuilder/guest",
        copy / "osbuilder/guest",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(REPO / "osbuilder/__init__.py", copy / "osbuilder/__init__.py")
    before = package_tag(load_recipe(copy / "pkg/init"))
    assert before == package_tag(load_recipe(REPO / "pkg/init"))
    (copy / "osbuilder/guest/__init__.py").write_text("# changed\n")
    assert package_tag(load_recipe(copy / "pkg/init")) != before


@pytest.mark.parametrize(
    ("name", "dropped"),
    [
        ("usr/share/doc", True),
        ("usr/share/doc/x/copyright", True),
        ("usr/share/docs", False),
        ("usr/lib/python3.11/test", True),
        ("usr/lib/python3.11/test/a.py", True),
        ("usr/lib/python3.11/testing.py", False),
        ("dev/null", True),
        ("dev", False),
    ],
)
def test_drop_globs(name: str, dropped: bool) -> None:
    drop = Dropper(["usr/share/doc", "usr/lib/python3.11/test"])
    assert drop(name) is dropped


@pytest.mark.parametrize(
    ("name", "dropped"),
    [
        ("etc", False),  # directories on the way to what is kept
        ("etc/ssl", False),
        ("etc/ssl/certs", False),
        ("etc/ssl/certs/ca-certificates.crt", False),  # below what is kept
        ("etc/ssl/private", True),
        ("etc/passwd", True),
        ("usr", False),
        ("usr/lib/python3.11/os.py", False),  # a glob in the middle
        ("usr/lib/python3.11/test/x.py", True),  # kept, but dropped
        ("usr/lib/x86_64-linux-gnu/libc.so.6", True),
        ("bin", True),
        ("dev", True),
    ],
)
def test_keep_globs(name: str, dropped: bool) -> None:
    keep = Dropper(["usr/lib/python3.11/test"], keep=["etc/ssl/certs/", "usr/lib/python3.*"])
    assert keep(name) is dropped


def test_normalise_entries() -> None:
    member = tarfile.TarInfo("./usr/bin/x")
    member.mtime = 2_000_000_000
    member.pax_headers = {"atime": "1", "SCHILY.xattr.security.capability": "\x01"}
    entry = normalise(member, 1_700_000_000)
    assert entry is not None
    assert (entry.name, entry.mtime) == ("usr/bin/x", 1_700_000_000)
    assert entry.pax_headers == {"SCHILY.xattr.security.capability": "\x01"}
    assert normalise(tarfile.TarInfo("./"), 0) is None


MODULES_DEP = """\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/fs/overlayfs/overlay.ko:
kernel/drivers/gpu/drm/drm.ko:
kernel/drivers/hid/hid-generic.ko:
"""


def test_module_selection_takes_dependencies() -> None:
    table = parse_modules_dep(MODULES_DEP)
    assert select_modules(table, ["virtio*", "overlay"]) == {
        "kernel/drivers/net/virtio_net.ko",
        "kernel/drivers/net/net_failover.ko",
        "kernel/net/core/failover.ko",
        "kernel/fs/overlayfs/overlay.ko",
    }
    assert module_name("kernel/drivers/hid/hid-generic.ko") == "hid_generic"
    assert select_modules(table, ["hid-generic"]) == {"kernel/drivers/hid/hid-generic.ko"}
    with pytest.raises(UserError, match="'ahci' matches no module"):
        select_modules(table, ["ahci"])
    # built into the kernel: nothing to keep, and no error (the same list for every kernel)
    assert select_modules(table, ["button"], frozenset({"button", "ext4"})) == set()
    with pytest.raises(UserError, match="'ahci' matches no module"):
        select_modules(table, ["ahci"], frozenset({"button"}))


def test_kernel_recipe_for_each_architecture() -> None:
    kernel = load_recipe(REPO / "kernels/cloud").recipe.kernel
    assert kernel is not None
    # The metapackage, no version by hand: the lock names the kernel package it took.
    assert kernel.package_for("amd64") == "linux-image-cloud-amd64" and kernel.version is None
    assert kernel.package_for("arm64") == "linux-image-cloud-arm64"
    lock = read_lock(REPO / "kernels/cloud")
    assert lock is not None
    for architecture in ("amd64", "arm64"):
        names = {p.name for p in lock.packages_for(architecture)}
        assert f"linux-image-cloud-{architecture}" in names
        assert [
            n for n in names if re.fullmatch(rf"linux-image-[\d.]+-\d+-cloud-{architecture}", n)
        ]
    amd64, arm64 = kernel.modules_for("amd64"), kernel.modules_for("arm64")
    assert amd64 is not None and arm64 is not None
    assert {"ata_piix", "pvpanic*", "virtio_pci"} <= set(amd64)
    assert "virtio_pci" in arm64 and "ata_piix" not in arm64 and "pvpanic*" not in arm64
    assert not any(":" in pattern for pattern in [*amd64, *arm64])
    # What loads on demand is kept compressed; what a QEMU VM loads at boot is not.
    compressed = kernel.compressed_for("amd64")
    assert {"xfs", "btrfs", "xen_netfront"} <= set(compressed)
    assert "xen_netfront" not in kernel.compressed_for("arm64")
    assert not {"virtio_pci", "virtio_net", "overlay", "ata_piix"} & set(compressed)


def test_compressed_modules_are_xz_files_of_the_same_module(tmp_path: Path) -> None:
    modules = tmp_path / "lib/modules/6.1.0"
    for module in ("kernel/fs/xfs/xfs.ko", "kernel/lib/libcrc32c.ko"):
        (modules / module).parent.mkdir(parents=True, exist_ok=True)
        (modules / module).write_bytes(b"\x7fELF module " + module.encode() * 100)
    (modules / "modules.dep").write_text(
        "kernel/fs/xfs/xfs.ko: kernel/lib/libcrc32c.ko\nkernel/lib/libcrc32c.ko:\n"
        "kernel/fs/btrfs/btrfs.ko: kernel/lib/libcrc32c.ko\n"  # not kept: no file
    )
    (modules / "modules.builtin").write_text("kernel/fs/ext4/ext4.ko\n")
    compress_modules(modules, ["xfs", "ext4"], "kernels/x/build.yml")
    assert not (modules / "kernel/fs/xfs/xfs.ko").exists()
    packed = (modules / "kernel/fs/xfs/xfs.ko.xz").read_bytes()
    assert lzma.decompress(packed).startswith(b"\x7fELF module kernel/fs/xfs/xfs.ko")
    assert (modules / "kernel/lib/libcrc32c.ko").is_file()  # a dependency stays as it is
    with pytest.raises(UserError, match="compressed: kernel module pattern 'btrfs' matches no"):
        compress_modules(modules, ["btrfs"], "kernels/x/build.yml")


def test_bytecode_compiles_modules_to_unchecked_hash_pycs() -> None:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    bytecode = Bytecode(version, 0, "t/build.yml")
    source = b"ANSWER = 42\n"
    info = tarfile.TarInfo("usr/lib/python3/dist-packages/m.py")
    info.size = len(source)
    passed = bytecode.take(info, io.BytesIO(source))
    assert passed is not None and passed.read() == source
    broken = tarfile.TarInfo("usr/share/x/template.py")
    bytecode.take(broken, io.BytesIO(b"def (:\n"))  # not Python: skipped, as compileall does
    [(name, pyc)] = bytecode.compile().items()
    assert name == f"usr/lib/python3/dist-packages/__pycache__/m.{sys.implementation.cache_tag}.pyc"
    flags = int.from_bytes(pyc[4:8], "little")
    assert flags == 0b01  # hash-based, unchecked: never compared with the source again
    code = marshal.loads(pyc[16:])
    assert code.co_filename == "/usr/lib/python3/dist-packages/m.py"  # where it is in the image
    namespace: dict[str, object] = {}
    exec(code, namespace)
    assert namespace["ANSWER"] == 42
    assert bytecode.compile() == {}  # each layer's modules are compiled once
    with pytest.raises(UserError, match=r"bytecode for Python 2\.7 needs osbuilder to run on"):
        Bytecode("2.7", 0, "t/build.yml")


def test_bytecode_does_not_depend_on_what_the_building_process_did() -> None:
    """marshal marks a string as interned or not as the process has it: a one-character
    string is a shared singleton, interned as soon as anything interns it. Compiled in
    osbuilder's own process, one recipe gave different .pyc bytes from one run to the next
    (a package build inside the tests differed from `make packages`)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    source = b'SEPARATOR = "\\x1f"\n'  # a one-character constant nothing here interns

    def pyc() -> bytes:
        bytecode = Bytecode(version, 0, "t/build.yml")
        info = tarfile.TarInfo("m.py")
        bytecode.take(info, io.BytesIO(source))
        [data] = bytecode.compile().values()
        return data

    before = pyc()
    sys.intern("\x1f")  # as any module of the building process might
    assert pyc() == before


def test_only_extract_roots_write_their_package_database_from_the_downloaded_packages() -> None:
    """The extract variant leaves dpkg's database empty; a hook writes it while the .debs
    are there. An essential root's dpkg writes its own, which the hook must not precede."""
    extract = mmdebstrap_command(DebianRoot(packages=["redis-server"]), "amd64")
    hooks = [part for part in extract if part.startswith("--extract-hook=")]
    assert hooks == [f"--extract-hook={STATUS_HOOK}"]
    essential = mmdebstrap_command(DebianRoot(packages=["x"], variant="essential"), "amd64")
    assert not [part for part in essential if part.startswith("--extract-hook")]
