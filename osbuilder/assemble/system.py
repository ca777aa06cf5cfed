"""Assembling a spec into one root filesystem, in LinuxKit's order and layout.

kernel -> init -> volumes -> onboot -> onshutdown -> services -> files:

    boot/kernel, boot/cmdline, boot/ucode.cpio   from the kernel image
    /                                           the kernel image's kernel.tar, the init images
    containers/volumes/NAME/{lower,tmp,merged}  volumes
    containers/onboot/NNN-NAME/                 config.json, runtime.json, rootfs/ or lower/
    containers/onshutdown/NNN-NAME/
    containers/services/NAME/
    files                                       last, so they override

An image used by several containers is unpacked once; the others' overlay
(or bind) mounts point at the first copy. Then the files those read-only roots
have in common (the same bytes, from different images) become hard links
(dedup.py), unless the build asks otherwise.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from msgspec import Struct, field

from osbuilder.assemble.cmdline import system_cmdline
from osbuilder.assemble.dedup import link_identical_files
from osbuilder.assemble.entry import Content, Entry, Kind
from osbuilder.assemble.filters import adjust_image
from osbuilder.assemble.images import ImageSource
from osbuilder.assemble.jsondoc import json_document
from osbuilder.assemble.layers import apply_layer, layer_compression
from osbuilder.assemble.oci_volume import VolumeLayout, oci_volume_layout
from osbuilder.assemble.package_db import PackageDatabases
from osbuilder.assemble.runtime_config import (
    allocate_ids,
    encode,
    load_label,
    numeric_id,
    runtime_config,
)
from osbuilder.assemble.sbom import DEFAULT_PATH as SBOM_PATH
from osbuilder.assemble.sbom import ImageRecord, write_sbom
from osbuilder.assemble.snapshots import LayerRef, Snapshots
from osbuilder.assemble.tree import Tree
from osbuilder.oci.pull import Image
from osbuilder.spec.model import Container, Spec, Volume
from osbuilder.spec.model import Kernel as KernelSpec
from osbuilder.spec.source import DataPath, SpecValueError, at, format_path
from osbuilder.spec.yaml12 import dump_yaml

log = logging.getLogger(__name__)

CONTAINERS = "containers"
FILES_SOURCE = "osbuilder.files"
VOLUME_SOURCE = "osbuilder.volume"  # a volume without an image
PACKAGE_DB_SOURCE = "osbuilder.init-packages"  # the union of the init images' package databases


class KernelParts(Struct):
    """What the kernel+initrd writer takes besides the tree."""

    kernel: Content | None = None
    cmdline: str = ""
    ucode: Content | None = None
    config: str | None = None  # the kernel's .config, to choose the initrd's compression


class _Step(NamedTuple):
    """One step of assembling, with the image whose layers it applies (if any)."""

    run: Callable[[], object]
    unpacks: Image | None = None


class AssembledSystem(Struct):
    tree: Tree
    kernel: KernelParts = field(default_factory=KernelParts)
    references: dict[str, str] = field(default_factory=dict)  # spec reference -> digest


def assemble(
    spec: Spec,
    images: ImageSource,
    tree: Tree,
    epoch: int,
    snapshots: Snapshots,
    *,
    decompress_kernel: bool = False,
    sbom: str | None = SBOM_PATH,
    dedup: bool = True,
) -> AssembledSystem:
    """Assemble the spec into `tree`, unpacking layers into (or reusing them from) `snapshots`;
    with `decompress_kernel`, the kernel is its uncompressed image (kernel_decompress.py);
    the system's SPDX document goes to the path `sbom` names (sbom.py), unless it is None;
    with `dedup`, identical files of the read-only roots are hard links (dedup.py)."""
    system = AssembledSystem(tree)
    assembler = _Assembler(spec, images, system, epoch, snapshots, decompress_kernel, sbom, dedup)
    assembler.run()
    return system


class _Assembler:
    def __init__(
        self,
        spec: Spec,
        images: ImageSource,
        system: AssembledSystem,
        epoch: int,
        snapshots: Snapshots,
        decompress_kernel: bool,
        sbom: str | None,
        dedup: bool,
    ) -> None:
        self.spec = spec
        self.decompress_kernel = decompress_kernel
        self.sbom = sbom
        self.images_used: list[ImageRecord] = []  # for the SBOM
        self.images = images
        self.system = system
        self.tree = system.tree
        self.epoch = epoch
        self.ids = allocate_ids(spec)
        self.unpacked: dict[str, str] = {}  # manifest digest -> where its filesystem is
        # Roots nothing writes into in place: overlay lowers, read-only roots (dedup.py)
        self.read_only_roots: list[str] = []
        self.dedup = dedup
        self.snapshots = snapshots

    def run(self) -> None:
        steps = self._plan()
        # Every layer at once (Snapshots.prepare unpacks them in parallel), in the order
        # the steps apply them.
        self.snapshots.prepare(
            [ref for step in steps if step.unpacks for ref in self._layers(step.unpacks)]
        )
        for step in steps:
            step.run()
        if self.dedup:
            linked = link_identical_files(self.tree, self.read_only_roots)
            log.info("%d identical files stored once: %d bytes saved", linked.files, linked.size)
        if self.sbom is not None:  # last: what it says is the system as built
            write_sbom(self.tree, self.images_used, self.epoch, self.sbom)

    def _plan(self) -> list[_Step]:
        """The steps of assembling in their order, every image the spec names taken first:
        the one walk over the spec, so the layers prepared are the ones the steps apply."""
        steps: list[_Step] = []
        kernel = self.spec.kernel
        if kernel is not None and kernel.image is not None:
            image = self._image(kernel.image, ("kernel", "image"))
            steps.append(_Step(partial(self._kernel, kernel, image), unpacks=image))
        databases = PackageDatabases()
        for index, reference in enumerate(self.spec.init or []):
            image = self._image(reference, ("init", index))
            steps.append(_Step(partial(self._init, image, index, databases), unpacks=image))
        steps.append(_Step(partial(self._init_done, databases)))
        for index, volume in enumerate(self.spec.volumes or []):
            steps.append(self._volume(index, volume))
        for section, index, container in self.spec.containers():
            image = self._image(container.image, (section, index, "image"))
            name = container.name if section == "services" else f"{index:03d}-{container.name}"
            prefix = f"{CONTAINERS}/{section}/{name}"
            run = partial(self._bundle, container, image, prefix, (section, index))
            steps.append(_Step(run, unpacks=image))
        steps.append(_Step(self._files))
        return steps

    def _layers(self, image: Image) -> list[LayerRef]:
        layers = image.manifest.layers
        diff_ids = image.config.diff_ids
        source = str(image.reference)
        return [
            LayerRef(
                layer.digest,
                layer_compression(layer.media_type),
                # Without one diff_id per layer the config says nothing checkable.
                diff_ids[index] if len(diff_ids) == len(layers) else None,
                f"image {source}, layer {layer.digest[:19]}",
            )
            for index, layer in enumerate(layers)
        ]

    def _used(
        self, image: Image, root: str | None = None, databases: dict[str, Content] | None = None
    ) -> None:
        """Note an image of the system for the SBOM, with where its files are."""
        digest = image.manifest_descriptor.digest
        self.images_used.append(ImageRecord(str(image.reference), digest, root, databases or {}))

    # --- init -------------------------------------------------------------------------------

    def _init(self, image: Image, index: int, databases: PackageDatabases) -> None:
        self._unpack(image, "", f"init[{index}]")
        brought = databases.take(self.tree)
        self._used(image, databases=brought)

    def _init_done(self, databases: PackageDatabases) -> None:
        """After the last init image: the union of their package databases, the root's
        adjustments."""
        databases.write(self.tree, self.epoch, PACKAGE_DB_SOURCE)
        if self.spec.init:
            adjust_image(
                self.tree,
                "",
                system_root=True,
                source=self.spec.init[-1],
                location="init",
                epoch=self.epoch,
            )

    # --- images -------------------------------------------------------------------------------

    def _image(self, reference: str, path: DataPath) -> Image:
        """The image `reference` names; `path` is where the spec names it, for errors."""
        with at(path):  # e.g. not in the store: say which line of the spec wants it
            image = self.images.get(reference)
        self.system.references[reference] = image.digest
        return image

    def _unpack(self, image: Image, base: str, location: str, tree: Tree | None = None) -> None:
        for ref in self._layers(image):
            snapshot = self.snapshots.layer(ref)
            apply_layer(
                self.tree if tree is None else tree,
                snapshot.members,
                snapshot.path,
                base=base,
                source=str(image.reference),
                location=location,
                what=ref.what,
            )

    def _generated(
        self,
        path: str,
        kind: Kind,
        mode: int,
        source: str,
        location: str,
        data: bytes | None = None,
    ) -> None:
        entry = Entry(path, kind, mode, mtime=self.epoch, source=source, location=location)
        if data is not None:
            entry.content = self.tree.spool.write_bytes(data)
        self.tree.put(entry)

    def _file(self, path: str, content: Content, source: str, location: str) -> None:
        """A file of the system with `content` as it is (mode 0644, the build's time)."""
        entry = Entry(path, Kind.FILE, 0o644, mtime=self.epoch, source=source, location=location)
        entry.content = content
        self.tree.put(entry)

    # --- kernel -------------------------------------------------------------------------------

    def _kernel(self, kernel: KernelSpec, image: Image) -> None:
        self._used(image)
        source = str(image.reference)
        # The kernel image's own files are read from a scratch tree; only what LinuxKit
        # takes (kernel, kernel.tar, ucode) goes into the system.
        scratch = Tree(self.tree.spool)
        self._unpack(image, "", "kernel", scratch)
        binary = scratch.get(kernel.binary or "kernel")
        if binary is None or binary.content is None:
            raise SpecValueError(
                ("kernel", "binary" if kernel.binary else "image"),
                f"kernel image {source} has no file {kernel.binary or 'kernel'!r}",
            )
        parts = self.system.kernel
        parts.kernel = binary.content
        if self.decompress_kernel:
            # (imported here: lz4 and the module cost every other build ~1.2 ms, -X importtime)
            from osbuilder.assemble.kernel_decompress import decompress_kernel

            what = f"kernel image {source}'s {kernel.binary or 'kernel'}"
            with at(("kernel", "binary" if kernel.binary else "image")):
                parts.kernel = decompress_kernel(binary.content, self.tree.spool, what)
        parts.cmdline = system_cmdline(kernel.cmdline)
        config = scratch.get("config")
        if config is not None and config.content is not None:
            parts.config = config.content.read_bytes().decode(errors="replace")
        self._generated("boot", Kind.DIRECTORY, 0o755, source, "kernel")
        self._file("boot/kernel", parts.kernel, source, "kernel")
        self._generated("boot/cmdline", Kind.FILE, 0o644, source, "kernel", parts.cmdline.encode())
        tar_name = kernel.tar if kernel.tar is not None else "kernel.tar"
        if tar_name != "none":
            modules = scratch.get(tar_name)
            if modules is None or modules.content is None:
                raise SpecValueError(
                    ("kernel", "tar" if kernel.tar is not None else "image"),
                    f"kernel image {source} has no {tar_name!r} (set tar: none?)",
                )
            what = f"kernel image {source}, {tar_name}"
            apply_layer(
                self.tree,
                self.snapshots.nested(modules.content, what),
                modules.content.path,
                base="",
                source=source,
                location="kernel",
                what=what,
            )
        if kernel.ucode:
            ucode = scratch.get(kernel.ucode)
            if ucode is None or ucode.content is None:
                raise SpecValueError(
                    ("kernel", "ucode"), f"kernel image {source} has no ucode file {kernel.ucode!r}"
                )
            parts.ucode = ucode.content
            self._file("boot/ucode.cpio", ucode.content, source, "kernel")

    # --- volumes ------------------------------------------------------------------------------

    def _volume(self, index: int, volume: Volume) -> _Step:
        """The step laying out `volume`: its image's files (unpacked), or for `format: oci`
        the image itself (its blobs: nothing to unpack)."""
        if volume.image is None:
            return _Step(partial(self._volume_directories, index, volume))
        image = self._image(volume.image, ("volumes", index, "image"))
        if volume.format == "oci":
            return _Step(partial(self._oci_volume, index, volume, image))
        return _Step(partial(self._filesystem_volume, index, volume, image), unpacks=image)

    def _volume_directories(self, index: int, volume: Volume) -> str:
        """A volume's directories; returns the one its contents go in."""
        base = f"{CONTAINERS}/volumes/{volume.name}"
        source, location = volume.image or VOLUME_SOURCE, f"volumes[{index}]"
        for name in ("", "/lower", "/tmp", "/merged"):
            self._generated(base + name, Kind.DIRECTORY, 0o755, source, location)
        self.read_only_roots.append(f"{base}/lower")  # the lower layer of merged/'s overlay
        return f"{base}/lower"

    def _filesystem_volume(self, index: int, volume: Volume, image: Image) -> None:
        lower = self._volume_directories(index, volume)
        self._unpack(image, lower, f"volumes[{index}]")
        self._used(image, lower)
        adjust_image(
            self.tree,
            lower,
            system_root=True,
            source=str(image.reference),
            location=f"volumes[{index}]",
            epoch=self.epoch,
        )

    def _oci_volume(self, index: int, volume: Volume, image: Image) -> None:
        lower = self._volume_directories(index, volume)
        layout = oci_volume_layout(image, volume.platforms, self.images, ("volumes", index))
        self._oci_layout(image, layout, lower, f"volumes[{index}]")
        self._used(image)  # (an OCI layout: no package database to read)

    def _oci_layout(self, image: Image, layout: VolumeLayout, base: str, location: str) -> None:
        """The image itself (its blobs, index.json naming it) rather than its files."""
        store = self.images.store
        source = str(image.reference)
        for blob in layout.blobs:
            # The store's own file: the build holds the store, so gc cannot take it away.
            content = Content(store.blob_path(blob.digest), blob.size)
            self._file(f"{base}/blobs/sha256/{blob.digest[7:]}", content, source, location)
        index = {
            "schemaVersion": 2,
            "manifests": [
                layout.top.replace(
                    annotations={"org.opencontainers.image.ref.name": source}
                ).as_json()
            ],
        }
        self._generated(
            f"{base}/index.json",
            Kind.FILE,
            0o644,
            source,
            location,
            json_document(index, indent=2),
        )
        self._generated(
            f"{base}/oci-layout",
            Kind.FILE,
            0o644,
            source,
            location,
            b'{"imageLayoutVersion":"1.0.0"}',
        )

    # --- containers ---------------------------------------------------------------------------

    def _bundle(self, container: Container, image: Image, prefix: str, path: DataPath) -> None:
        location = format_path(path)
        source = str(image.reference)
        with at((*path, "image")):
            label = load_label(image.config, source)
        with at(path):
            config, runtime = runtime_config(
                container, image.config, label, self.ids, volumes=self.spec.volumes or ()
            )
        readonly = bool(config.get("root", {}).get("readonly"))
        self._generated(prefix, Kind.DIRECTORY, 0o755, source, location)
        root = f"{prefix}/{'rootfs' if readonly else 'lower'}"
        first = self.unpacked.get(image.manifest_descriptor.digest)
        if first is None:
            self._generated(root, Kind.DIRECTORY, 0o755, source, location)
            self._unpack(image, root, location)
            adjust_image(
                self.tree,
                root,
                system_root=False,
                source=source,
                location=location,
                epoch=self.epoch,
            )
            self.unpacked[image.manifest_descriptor.digest] = root
            self.read_only_roots.append(root)  # a lowerdir, or mounted read-only
            first = root
        self._used(image, first)
        if not readonly:
            tmp = f"{prefix}/tmp"
            self._generated(tmp, Kind.DIRECTORY, 0o755, source, location)
            self._generated(f"{prefix}/rootfs", Kind.DIRECTORY, 0o755, source, location)
            mounts = [
                {"source": "tmpfs", "type": "tmpfs", "destination": f"/{tmp}"},
                # private: nothing else should see the container's temporary layers
                {"destination": f"/{tmp}", "options": ["remount", "private"]},
                {
                    "source": "overlay",
                    "type": "overlay",
                    "destination": f"/{prefix}/rootfs",
                    "options": [
                        f"lowerdir=/{first}",
                        f"upperdir=/{tmp}/upper",
                        f"workdir=/{tmp}/work",
                    ],
                },
            ]
        else:
            self._generated(f"{prefix}/rootfs", Kind.DIRECTORY, 0o755, source, location)
            # bind, from the first copy or onto itself: runc wants the root to be a mount
            mounts = [
                {"source": f"/{first}", "destination": f"/{prefix}/rootfs", "options": ["bind"]}
            ]
        runtime["mounts"] = mounts + list(runtime.get("mounts") or [])
        self._generated(f"{prefix}/config.json", Kind.FILE, 0o644, source, location, encode(config))
        self._generated(
            f"{prefix}/runtime.json", Kind.FILE, 0o644, source, location, encode(runtime)
        )

    # --- files --------------------------------------------------------------------------------

    def _files(self) -> None:
        for index, file in enumerate(self.spec.files or []):
            location = f"files[{index}]"
            path = self.tree.resolve(file.path)
            if not path:
                raise SpecValueError(("files", index, "path"), f"{file.path!r} is the root")
            mode = int(file.mode, 8) if file.mode else (0o700 if file.directory else 0o600)
            uid = self._id(file.uid, ("files", index, "uid"))
            gid = self._id(file.gid, ("files", index, "gid"))
            dir_mode = mode | ((mode & 0o444) >> 2)  # x wherever r: parents must be enterable
            parent = posixpath.dirname(path)
            missing = []
            while parent and self.tree.get(parent) is None:
                missing.append(parent)
                parent = posixpath.dirname(parent)
            for name in reversed(missing):
                self.tree.put(
                    Entry(
                        name,
                        Kind.DIRECTORY,
                        dir_mode,
                        uid,
                        gid,
                        self.epoch,
                        source=FILES_SOURCE,
                        location=location,
                    )
                )
            entry = Entry(
                path, Kind.FILE, mode, uid, gid, self.epoch, source=FILES_SOURCE, location=location
            )
            if file.directory:
                entry.kind = Kind.DIRECTORY
            elif file.symlink is not None:
                entry.kind, entry.linkname = Kind.SYMLINK, file.symlink
            elif file.contents is not None:
                entry.content = self.tree.spool.write_bytes(file.contents.encode())
            elif file.metadata is not None:
                entry.content = self.tree.spool.write_bytes(self._metadata(file.metadata))
            elif file.source is not None:
                host = Path(file.source).expanduser()
                if host.exists() and not host.is_file():
                    raise SpecValueError(
                        ("files", index, "source"),
                        f"{host} is not a regular file (a source is one file's contents)",
                    )
                if not host.is_file():
                    if file.optional:
                        log.info("%s: %s is missing; skipped (optional)", location, host)
                        continue
                    raise SpecValueError(
                        ("files", index, "source"),
                        f"{host} does not exist (mark it optional: true to skip it when missing)",
                    )
                try:
                    entry.content = self.tree.spool.copy_file(host)
                except OSError as exc:
                    raise SpecValueError(
                        ("files", index, "source"), f"cannot read {host}: {exc.strerror or exc}"
                    ) from None
            self.tree.put(entry)

    def _id(self, value: int | str | None, path: DataPath) -> int:
        with at(path):
            return numeric_id(value, self.ids)

    def _metadata(self, kind: str) -> bytes:
        """The spec as built: images named with the digests used (LinuxKit's metadata file)."""
        data: dict[str, Any] = self.spec.to_data()
        resolved = self.system.references

        def pin(reference: str) -> str:
            digest = resolved.get(reference)
            return f"{reference.split('@', maxsplit=1)[0]}@{digest}" if digest else reference

        if "kernel" in data and "image" in data["kernel"]:
            data["kernel"]["image"] = pin(data["kernel"]["image"])
        data["init"] = [pin(r) for r in data.get("init", [])]
        for section, index, container in self.spec.containers():
            data[section][index]["image"] = pin(container.image)
        if kind == "json":
            return json_document(data, indent=2, sort_keys=True)
        return dump_yaml(data, sort_keys=True).encode()
