"""The boot stage of kernel+squashfs and kernel+erofs: a small initrd that mounts the root.

LinuxKit's kernels have the block drivers and the file system built in and mount the
image as `root=` themselves. Debian's kernels build them as modules, so something must
load them first: this initrd holds only the system's own static busybox, the modules the
root needs (squashfs or erofs, overlay, the block drivers, and what they depend on, in
load order) and an /init script that loads them, finds the root, stacks a tmpfs over it with
overlayfs and switch_roots into the system's /init. The system then runs exactly as from
an initrd (a writable root, only what it writes held in memory) while its files stay on
the disk.

The root is `root=/dev/NAME` from the kernel's command line, else the first block device
that holds the file system's magic, waited for up to `osbuilder.rootwait=SECONDS` (30;
disks behind SCSI or USB show up late). Each failure prints one line naming what to do and
ends the boot stage: the kernel then panics, which `osbuilder run` reports.

Built with --verity (formats/verity.py), the stage also carries dm_verity and the
system's dmsetup (formats/dmsetup.py) and insists on the command line's
`osbuilder.verity.FS=` word: it finds the disk by its hash tree's superblock, maps it
through dm-verity with that word's root hash, reads every block once (a changed one ends
the boot: "the root failed verification"), then reloads the mapping to panic on a block
that fails later, and mounts the root from the mapping.
"""

from __future__ import annotations

import lzma
import posixpath
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING

from msgspec import Struct

from osbuilder.assemble.entry import Content, Entry, Kind
from osbuilder.errors import UserError
from osbuilder.formats.dmsetup import DMSETUP_DIRECTORY, dmsetup_files
from osbuilder.formats.verity import BLOCK, CMDLINE_WORD, FORMAT, HASH

if TYPE_CHECKING:
    from osbuilder.assemble.tree import Spool, Tree
    from osbuilder.formats.job import WriteJob

BUSYBOX = "bin/busybox"
# Modules that may carry the root, loaded when the kernel has them as modules: virtio
# (QEMU, most clouds), SCSI disks, IDE/SATA, NVMe, Xen, Hyper-V; then the file systems.
ROOT_DEVICE_MODULES = (
    "virtio_pci",
    "virtio_mmio",
    "virtio_blk",
    "virtio_scsi",
    "sd_mod",
    "ata_piix",
    "ahci",
    "nvme",
    "xen_blkfront",
    "hv_storvsc",
)


class RootFilesystem(Struct, frozen=True):
    """A read-only file system a root image can be in."""

    name: str  # the kernel's: its module, `mount -t`
    magic: bytes  # what its image holds at `magic_offset`, to find the disk by
    magic_offset: int


SQUASHFS = RootFilesystem("squashfs", b"hsqs", 0)
EROFS = RootFilesystem("erofs", struct.pack("<I", 0xE0F5E1E2), 1024)
OVERLAY_MODULE = "overlay"
VERITY_MODULE = "dm_verity"  # (dm_mod and dm_bufio come with it, by modules.dep)
# QEMU's panic device, so that a boot stage that fails ends the VM instead of hanging it.
PANIC_MODULES = ("pvpanic", "pvpanic_mmio", "pvpanic_pci")
ROOT_WAIT_SECONDS = 30

_ELF_MAGIC = b"\x7fELF"
_XZ = ".xz"
_PT_INTERP = 3  # a program header naming the dynamic loader: not a static binary

# --verity: the mapping's parameters from the kernel's command line (the one word
# formats/verity.py writes), and the disk found by its hash tree's superblock instead.
VERITY_PARAMETERS = """\
[ -n "$verity" ] || fail "this root is checked by dm-verity, but the kernel's command \
line has no @VERITY_WORD@=BLOCKS,ROOTHASH,SALT; boot it with the cmdline it was built with"
blocks=${verity%%,*} roothash=${verity#*,}
salt=${roothash#*,} roothash=${roothash%%,*}
case "$verity:$blocks:$roothash$salt" in
*,*,*:[0-9]*:[0-9a-f]*) ;;
*) fail "@VERITY_WORD@=$verity is not BLOCKS,ROOTHASH,SALT" ;;
esac
case "$blocks:$roothash$salt" in
*[!0-9]*:* | *:*[!0-9a-f]*) fail "@VERITY_WORD@=$verity is not BLOCKS,ROOTHASH,SALT" ;;
esac
# ...with a hash tree, its superblock's ("verity", two zero bytes) after the data blocks.
magic_offset=$((blocks * @BLOCK@)) magic=7665726974790000 magic_bytes=8
"""
VERITY_OPEN = """\
# dm-verity over the disk, as the command line's root hash says it must be: dmsetup is the
# system's own, run by its own dynamic loader (no udev here: the kernel's devtmpfs makes
# the node of the first mapping, dm-0).
dm() { /@DM@/@LOADER@ --library-path /@DM@ /@DM@/dmsetup "$@"; }
table="0 $((blocks * @SECTORS@)) verity @FORMAT@ $device $device @BLOCK@ @BLOCK@ $blocks \
$((blocks + 1)) @HASH@ $roothash $salt"
dm --noudevsync create root --readonly --table "$table" ||
    fail "cannot open $device through dm-verity"
# Every block read once now, each checked against the root hash: a changed root is refused
# here, in one line, before anything on it runs.
$bb dd if=/dev/dm-0 of=/dev/null bs=1M 2>/dev/null ||
    fail "the root failed verification: $device is not the image the kernel's command \
line names (changed or damaged since the build); boot it as built"
# From now on a block that fails (the disk changed under the running system) panics the
# kernel rather than hand the system changed bytes.
{ dm --noudevsync reload root --readonly --table "$table 1 panic_on_corruption" &&
    dm --noudevsync resume root; } || fail "cannot make dm-verity panic on corruption"
device=/dev/dm-0
"""

INIT_SCRIPT = """\
#!/bin/busybox sh
# osbuilder's boot stage (kernel+@FS@): load the root's drivers, mount the @FS@ root
# under a tmpfs overlay, then switch_root to the system's /init.
bb=/bin/busybox
# Through the kernel's log (as an error, shown even with `quiet`): a console write could
# still be in the serial port's buffer when the kernel panics at the exit.
fail() {
    echo "<3>osbuilder boot stage: $*" >/dev/kmsg
    exit 1
}
$bb mount -t devtmpfs -o mode=0755 devtmpfs /dev || fail "cannot mount /dev"
$bb mount -t proc proc /proc || fail "cannot mount /proc"
$bb mount -t sysfs sysfs /sys || fail "cannot mount /sys"
for module in @MODULES@; do
    $bb insmod "/lib/modules/$module" || fail "cannot load $module"
done
# The disk drivers of every hypervisor: those of hardware this machine lacks refuse to load.
for module in @DRIVERS@; do
    $bb insmod "/lib/modules/$module" 2>/dev/null
done
root= wait=@WAIT@ verity=
for word in $($bb cat /proc/cmdline); do
    case "$word" in
    root=/dev/*) root="${word#root=}" ;;
    osbuilder.rootwait=*) wait="${word#osbuilder.rootwait=}" ;;
    @VERITY_WORD@=*) verity="${word#*=}" ;;
    esac
done
case "$wait" in '' | *[!0-9]*) wait=@WAIT@ ;; esac
# The root is the disk with the image's magic where the image has it...
magic_offset=@OFFSET@ magic=@MAGIC@ magic_bytes=@MAGIC_BYTES@
@VERITY_PARAMETERS@is_root() {
    [ -b "$1" ] && [ "$($bb od -A n -t x1 -j "$magic_offset" -N "$magic_bytes" "$1" 2>/dev/null |
        $bb tr -d ' \n')" = "$magic" ]
}
find_root() {
    if [ -n "$root" ]; then
        is_root "$root" && echo "$root"
        return
    fi
    for block in /sys/class/block/*; do
        device="/dev/${block##*/}"
        if is_root "$device"; then echo "$device"; return; fi
    done
}
tries=0
until device=$(find_root) && [ -n "$device" ]; do
    tries=$((tries + 1))
    if [ "$tries" -gt $((wait * 5)) ]; then
        if [ -n "$root" ]; then
            fail "root=$root holds no @FS@ image; attach NAME-@FS@.img there"
        fi
        fail "no disk holds a @FS@ root; attach NAME-@FS@.img (or give root=/dev/...)"
    fi
    $bb usleep 200000
done
@VERITY_OPEN@$bb mkdir -p /root/lower /root/changes /newroot
$bb mount -t @FS@ -o ro "$device" /root/lower || fail "cannot mount $device"
$bb mount -t tmpfs -o mode=0755 tmpfs /root/changes || fail "cannot mount a tmpfs"
$bb mkdir /root/changes/upper /root/changes/work
$bb mount -t overlay \\
    -o lowerdir=/root/lower,upperdir=/root/changes/upper,workdir=/root/changes/work \\
    overlay /newroot || fail "cannot mount the overlay root"
[ -x /newroot/init ] || fail "$device has no /init"
$bb umount /sys /proc
$bb mount --move /dev /newroot/dev || $bb umount /dev
exec $bb switch_root /newroot /init
"""


def boot_stage(job: WriteJob, filesystem: RootFilesystem) -> list[Entry]:
    """The boot stage's entries for a root in `filesystem`, made once per build."""
    return job.once(
        f"{filesystem.name} boot stage",
        lambda: boot_stage_entries(
            job.system.tree, job.epoch, filesystem, verity=job.options.verity
        ),
    )


def boot_stage_entries(
    tree: Tree, epoch: int, filesystem: RootFilesystem, *, verity: bool = False
) -> list[Entry]:
    """The boot stage's entries (parents first), taken from the system's `tree`, for a
    root in `filesystem`; with `verity`, one that opens it through dm-verity, and only so."""
    busybox = _static_busybox(tree)
    modules = _root_modules(tree, filesystem, verity=verity)
    required = " ".join(_stage_name(module) for module, _, needed in modules if needed)
    dmsetup = dmsetup_files(tree) if verity else None
    script = INIT_SCRIPT.replace("@VERITY_PARAMETERS@", VERITY_PARAMETERS if dmsetup else "")
    script = script.replace("@VERITY_OPEN@", VERITY_OPEN if dmsetup else "")
    replacements = {
        "@MODULES@": required,
        "@DRIVERS@": " ".join(_stage_name(m) for m, _, needed in modules if not needed),
        "@WAIT@": str(ROOT_WAIT_SECONDS),
        "@FS@": filesystem.name,
        "@OFFSET@": str(filesystem.magic_offset),
        "@MAGIC@": filesystem.magic.hex(),
        "@MAGIC_BYTES@": str(len(filesystem.magic)),
        "@VERITY_WORD@": CMDLINE_WORD.format(filesystem=filesystem.name),
        "@DM@": DMSETUP_DIRECTORY,
        "@LOADER@": dmsetup.loader if dmsetup else "",
        "@BLOCK@": str(BLOCK),
        "@SECTORS@": str(BLOCK // 512),
        "@FORMAT@": str(FORMAT),
        "@HASH@": HASH,
    }
    for placeholder, value in replacements.items():
        script = script.replace(placeholder, value)
    spool = tree.spool
    top = ["bin", "dev", "lib", "lib/modules", "newroot", "proc", "root", "sys"]
    entries = [
        Entry(name, Kind.DIRECTORY, 0o755, mtime=epoch)
        for name in top + ([DMSETUP_DIRECTORY] if dmsetup else [])
    ]
    # The kernel opens /dev/console for init's stdio before any /dev is mounted; /dev/kmsg
    # is where its failures are told.
    entries.append(Entry("dev/console", Kind.CHAR, 0o600, mtime=epoch, devmajor=5, devminor=1))
    entries.append(Entry("dev/kmsg", Kind.CHAR, 0o644, mtime=epoch, devmajor=1, devminor=11))
    entries.append(Entry(BUSYBOX, Kind.FILE, 0o755, mtime=epoch, content=busybox.content))
    entries.append(
        Entry("init", Kind.FILE, 0o755, mtime=epoch, content=spool.write_bytes(script.encode()))
    )
    if dmsetup:
        for name, entry in dmsetup.files.items():
            path = f"{DMSETUP_DIRECTORY}/{name}"
            entries.append(Entry(path, Kind.FILE, 0o755, mtime=epoch, content=entry.content))
    directories = set()
    for module, content in _stage_modules(spool, modules):
        parent = posixpath.dirname(f"lib/modules/{module}")
        for directory in _parents(parent):
            if directory not in directories:
                directories.add(directory)
                entries.append(Entry(directory, Kind.DIRECTORY, 0o755, mtime=epoch))
        entries.append(
            Entry(f"lib/modules/{module}", Kind.FILE, 0o644, mtime=epoch, content=content)
        )
    spool.flush()
    return sorted(entries, key=lambda e: e.path.split("/"))


def _stage_modules(
    spool: Spool, modules: list[tuple[str, Entry, bool]]
) -> Iterator[tuple[str, Content]]:
    """Each module's name in the stage and its bytes: those the kernel image keeps
    xz-compressed (to save the system's memory) as Debian shipped them, since busybox's
    insmod would inflate them at every boot (half a second for dm_mod under TCG) and
    the stage's cpio is compressed anyway."""
    for module, entry, _ in modules:
        assert entry.content is not None
        if module.endswith(_XZ):
            yield (
                _stage_name(module),
                spool.write_bytes(lzma.decompress(entry.content.read_bytes())),
            )
        else:
            yield module, entry.content


def _stage_name(module: str) -> str:
    return module.removesuffix(_XZ)


def _parents(directory: str) -> Iterator[str]:
    """lib/modules/a/b -> lib/modules/a, lib/modules/a/b (what lies below lib/modules)."""
    parts = directory.split("/")
    for end in range(3, len(parts) + 1):
        yield "/".join(parts[:end])


def _static_busybox(tree: Tree) -> Entry:
    entry = tree.get(tree.resolve(BUSYBOX, follow_last=True))
    if entry is None or entry.kind is not Kind.FILE or entry.content is None:
        raise UserError(
            f"the system has no /{BUSYBOX} to mount its root with; "
            "add an init image that has a static busybox (osbuilder/init has one)"
        )
    with entry.content.open() as stream:
        head = stream.read(64 * 1024)
    if not is_static_elf(head):
        raise UserError(
            f"/{BUSYBOX} is not a static executable, so it cannot run "
            "before the root is mounted; use busybox-static (osbuilder/init has it)"
        )
    return entry


def is_static_elf(head: bytes) -> bool:
    """Whether the ELF file starting with `head` runs without a dynamic loader."""
    if len(head) < 52 or not head.startswith(_ELF_MAGIC) or head[4] not in (1, 2):
        return False
    wide, order = head[4] == 2, "<" if head[5] == 1 else ">"
    if wide:
        (phoff,) = struct.unpack_from(order + "Q", head, 32)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
    else:
        (phoff,) = struct.unpack_from(order + "I", head, 28)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 42)
    if phnum == 0 or phoff + phnum * phentsize > len(head):
        return False
    return all(
        struct.unpack_from(order + "I", head, phoff + index * phentsize)[0] != _PT_INTERP
        for index in range(phnum)
    )


def _root_modules(
    tree: Tree, filesystem: RootFilesystem, *, verity: bool = False
) -> list[tuple[str, Entry, bool]]:
    """(path below lib/modules, entry, whether it must load) of each module to load,
    dependencies first: the file systems' and dm-verity's (which must), then the panic
    device's and the disk drivers' (those of a hypervisor the machine is not on fail,
    which is no error).

    None when the kernel has no modules.dep (everything built in, as LinuxKit's kernels).
    """
    modules_dir = tree.resolve("lib/modules", follow_last=True)
    versions = sorted(
        path.rsplit("/", 2)[-2]
        for path in tree.entries
        if path.startswith(modules_dir + "/")
        and path.endswith("/modules.dep")
        and path.count("/") == modules_dir.count("/") + 2
    )
    if not versions:
        return []
    if len(versions) > 1:
        raise UserError(
            f"the system has modules of several kernels "
            f"({', '.join(versions)}); keep those of the spec's kernel only"
        )
    base = f"{modules_dir}/{versions[0]}"
    depends = _read_modules_dep(tree, f"{base}/modules.dep")
    by_name = {_module_name(path): path for path in depends}
    builtin = _read_builtin(tree, f"{base}/modules.builtin")
    filesystem_modules = (filesystem.name, OVERLAY_MODULE, *((VERITY_MODULE,) if verity else ()))
    for name in filesystem_modules:
        if name not in by_name and name not in builtin:
            raise UserError(
                f"the kernel has no {name} driver (neither a module in "
                f"{versions[0]}'s modules.dep nor built in); add it to the kernel image"
            )
    order: list[str] = []
    for name in filesystem_modules:
        if name in by_name:
            _add_with_dependencies(by_name[name], depends, order)
    required = len(order)
    for name in (*PANIC_MODULES, *ROOT_DEVICE_MODULES):
        if name in by_name:
            _add_with_dependencies(by_name[name], depends, order)
    result = []
    for index, path in enumerate(order):
        entry = tree.get(f"{base}/{path}")
        if entry is None or entry.content is None:
            raise UserError(f"modules.dep names {path}, which the kernel image lacks")
        result.append((f"{versions[0]}/{path}", entry, index < required))
    return result


def _add_with_dependencies(path: str, depends: dict[str, list[str]], order: list[str]) -> None:
    if path in order:
        return
    for dependency in depends.get(path, []):
        _add_with_dependencies(dependency, depends, order)
    order.append(path)


def _module_name(path: str) -> str:
    """kernel/drivers/block/virtio_blk.ko[.xz] -> virtio_blk ('-' and '_' are one)."""
    return posixpath.basename(path).split(".ko", 1)[0].replace("-", "_")


def _read_modules_dep(tree: Tree, path: str) -> dict[str, list[str]]:
    depends: dict[str, list[str]] = {}
    for line in _read_text(tree, path).splitlines():
        module, _, rest = line.partition(":")
        if module:
            depends[module] = rest.split()
    return depends


def _read_builtin(tree: Tree, path: str) -> set[str]:
    return {_module_name(line) for line in _read_text(tree, path).splitlines() if line}


def _read_text(tree: Tree, path: str) -> str:
    entry = tree.get(path)
    if entry is None or entry.content is None:
        return ""
    return entry.content.read_bytes().decode(errors="replace")
