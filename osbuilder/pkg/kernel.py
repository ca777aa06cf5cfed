"""Kernel images from Debian's kernel packages, laid out as LinuxKit's are.

The linux-image package (the one the recipe's lock records) is unpacked by mmdebstrap (nothing is
installed on the host); depmod writes the modules.dep the package leaves to
its install script; an optional list of module globs keeps only what a VM
needs (with dependencies), and another keeps some of those xz-compressed
(those loaded on demand). The image holds /kernel (the bzImage), /kernel.tar
(lib/modules/VERSION/...), /config and /System.map.
"""

from __future__ import annotations

import fnmatch
import lzma
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

from osbuilder.errors import ExternalError, UserError
from osbuilder.oci.imagewriter import Layer, dir_info, file_info, new_layer
from osbuilder.oci.store import ContentStore
from osbuilder.pkg.debian import DEFAULT_MIRROR, Mirror, mmdebstrap_reason
from osbuilder.pkg.recipe import KernelSource
from osbuilder.runner import CommandFailed, run


def build_kernel_layer(
    store: ContentStore,
    source: KernelSource,
    architecture: str,
    epoch: int,
    what: str,
    mirror: Mirror = DEFAULT_MIRROR,
) -> Layer:
    with tempfile.TemporaryDirectory(prefix="osbuilder-kernel-") as tmp:
        root = Path(tmp) / "root"
        package = source.package_for(architecture)
        command = [
            "mmdebstrap",
            "--variant=extract",
            f"--architectures={architecture}",
            "--format=directory",
            *mirror.options("extract"),
            f"--include={package}" + (f"={source.version}" if source.version else ""),
            source.suite,
            str(root),
            *(mirror.lines or ([source.mirror] if source.mirror else [])),
        ]
        try:
            run(command, env={"SOURCE_DATE_EPOCH": str(epoch)})
        except CommandFailed as exc:
            raise ExternalError(f"{what}: {mmdebstrap_reason(exc)}") from None
        version = _kernel_version(root, what)
        modules = root / "lib/modules" / version
        run(["depmod", "-b", str(root), version])
        patterns = source.modules_for(architecture)
        if patterns is not None:
            keep_modules(modules, patterns, what)
        compressed = source.compressed_for(architecture)
        if compressed:
            compress_modules(modules, compressed, what)
        if patterns is not None or compressed:
            run(["depmod", "-b", str(root), version])
        modules_tar = Path(tmp) / "kernel.tar"
        write_modules_tar(modules, version, modules_tar, epoch)
        with new_layer(store) as layer:
            for name, path in (
                ("System.map", root / f"boot/System.map-{version}"),
                ("config", root / f"boot/config-{version}"),
                ("kernel", root / f"boot/vmlinuz-{version}"),
                ("kernel.tar", modules_tar),
            ):
                with path.open("rb") as stream:
                    layer.add(file_info(name, path.stat().st_size, 0o644, epoch), stream)
    assert layer.result is not None
    return layer.result


def _kernel_version(root: Path, what: str) -> str:
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise UserError(f"{what}: expected one kernel in the package, found {len(kernels)}")
    version = kernels[0].name.removeprefix("vmlinuz-")
    if not (root / "lib/modules" / version).is_dir():
        raise UserError(f"{what}: the package has no lib/modules/{version}")
    return version


def module_name(path: str) -> str:
    """`kernel/drivers/net/virtio_net.ko` -> `virtio_net` (the kernel treats - and _ alike)."""
    name = os.path.basename(path)
    return name[: name.index(".ko")].replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, list[str]]:
    """modules.dep: `path.ko: dependency.ko ...` -> {path: [dependencies]}."""
    table = {}
    for line in text.splitlines():
        module, sep, dependencies = line.partition(":")
        if sep:
            table[module.strip()] = dependencies.split()
    return table


def matching_modules(
    table: Iterable[str], patterns: list[str], builtin: frozenset[str] = frozenset()
) -> set[str]:
    """The module paths whose names match the globs.

    A glob that names only modules built into the kernel (`builtin`, by name) matches
    nothing and is no error: one list serves kernels that build a driver in or as a module.
    """
    chosen: set[str] = set()
    for pattern in patterns:
        wanted = pattern.replace("-", "_")
        matched = [m for m in table if fnmatch.fnmatchcase(module_name(m), wanted)]
        if not matched and not fnmatch.filter(builtin, wanted):
            raise UserError(f"kernel module pattern {pattern!r} matches no module")
        chosen.update(matched)
    return chosen


def select_modules(
    table: dict[str, list[str]], patterns: list[str], builtin: frozenset[str] = frozenset()
) -> set[str]:
    """The module paths matching the name globs, with everything they depend on."""
    chosen = matching_modules(table, patterns, builtin)
    pending = list(chosen)
    while pending:
        for dependency in table.get(pending.pop(), []):
            if dependency not in chosen:
                chosen.add(dependency)
                pending.append(dependency)
    return chosen


def _builtin(modules: Path) -> frozenset[str]:
    """The names of the modules built into the kernel."""
    listed = modules / "modules.builtin"
    return frozenset(map(module_name, listed.read_text().split() if listed.is_file() else []))


def keep_modules(modules: Path, patterns: list[str], what: str) -> None:
    """Delete every module of the tree that the globs do not select (nor need)."""
    table = parse_modules_dep((modules / "modules.dep").read_text())
    try:
        chosen = select_modules(table, patterns, _builtin(modules))
    except UserError as exc:
        raise UserError(f"{what}: {exc}") from None
    for module in table:
        if module not in chosen:
            (modules / module).unlink()
    for current, directories, files in os.walk(modules, topdown=False):
        if not directories and not files and Path(current) != modules:
            shutil.rmtree(current)


#: What the kernel's own MODULE_COMPRESS_XZ writes: CRC32 checks and a 1 MiB dictionary,
#: which is all the memory a decoder then allocates (xz's default is 8 MiB).
_XZ_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": 1 << 20}]


def compress_modules(modules: Path, patterns: list[str], what: str) -> None:
    """Replace each module the globs name (of those kept) by its .ko.xz (depmod next)."""
    listed = parse_modules_dep((modules / "modules.dep").read_text())
    kept = [module for module in listed if (modules / module).is_file()]
    try:
        chosen = matching_modules(kept, patterns, _builtin(modules))
    except UserError as exc:
        raise UserError(f"{what}: compressed: {exc}") from None
    for module in sorted(chosen):
        path = modules / module
        if path.suffix != ".ko":
            continue  # compressed already
        data = lzma.compress(
            path.read_bytes(), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, filters=_XZ_FILTERS
        )
        path.with_name(path.name + ".xz").write_bytes(data)
        path.unlink()


def write_modules_tar(modules: Path, version: str, output: Path, epoch: int) -> None:
    """lib/modules/VERSION as a deterministic tar (sorted, root-owned, clamped mtimes).

    No entries for lib/ and lib/modules/ themselves: unpacked onto a root where
    lib is a symlink (merged /usr), the modules must go through it, not replace it.
    """
    prefix = f"lib/modules/{version}"
    with tarfile.open(output, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(dir_info(prefix, 0o755, epoch))
        for path in sorted(modules.rglob("*")):
            name = f"{prefix}/{path.relative_to(modules).as_posix()}"
            if path.is_symlink():
                info = file_info(name, 0, 0o777, epoch)
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
                tar.addfile(info)
            elif path.is_dir():
                tar.addfile(dir_info(name, 0o755, epoch))
            else:
                with path.open("rb") as stream:
                    tar.addfile(file_info(name, path.stat().st_size, 0o644, epoch), stream)
