"""Pushing a built system: its output files as one OCI artifact (see artifact.py).

Each file is hashed, then uploaded unless the repository has it (upload.py: one PUT,
or chunks for a large disk image); the record goes up as the config; the manifest
last, so the registry never holds a manifest whose content is missing. Several
architectures make one manifest each and an index over them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from msgspec import Struct, field

from osbuilder.errors import UserError
from osbuilder.oci import mediatypes
from osbuilder.oci.model import Descriptor, Platform, sha256_digest
from osbuilder.oci.progress import NullProgress, Progress
from osbuilder.oci.reference import ImageReference
from osbuilder.oci.registry import RegistryClient
from osbuilder.oci.upload import upload_blob
from osbuilder.systems.artifact import (
    MAX_FILES,
    SYSTEM_TYPE,
    BuildRecord,
    check_title,
    file_descriptor,
    index_bytes,
    manifest_bytes,
)

SBOM_SUFFIX = ".spdx.json"  # PREFIX.spdx.json beside the outputs: the SBOM, not a file


class SystemFiles(Struct, frozen=True):
    """One architecture's files of a system, and what is known of its build."""

    record: BuildRecord
    files: list[Path]
    sbom: Path | None = None


class PushedSystem(Struct):
    destination: ImageReference
    digest: str  # what the tag names: the manifest, or the index of several
    media_type: str
    size: int
    manifests: dict[str, Descriptor] = field(default_factory=dict)  # architecture -> manifest
    uploaded: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    sboms: list[str] = field(default_factory=list)  # architectures whose SBOM is attached
    signed: bool = False

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size)


def output_files(outputs: Sequence[Path]) -> tuple[list[Path], Path | None]:
    """The files OUTPUT arguments name: a file as it is; a prefix (output/redis) every
    file of its directory named PREFIX-* or PREFIX.* (not hidden). PREFIX.spdx.json is
    the SBOM, returned apart."""
    files: list[Path] = []
    sbom: Path | None = None
    for output in outputs:
        if output.is_file():
            files.append(output)
            continue
        directory, stem = output.parent, output.name
        if not stem or not directory.is_dir():
            raise UserError(f"{output}: no such file, nor an output prefix (e.g. output/redis)")
        matched = sorted(
            p
            for p in directory.iterdir()
            if p.is_file()
            and not p.name.startswith(".")
            and (p.name.startswith(stem + "-") or p.name.startswith(stem + "."))
        )
        if not matched:
            raise UserError(
                f"{output}: no file of {directory} is named {stem}-* or {stem}.*; "
                "build the system first, or name its files"
            )
        for path in matched:
            if path.name == stem + SBOM_SUFFIX:
                sbom = path
            else:
                files.append(path)
    names: dict[str, Path] = {}
    for path in files:
        check_title(path.name, str(path))
        if path.name in names and names[path.name].resolve() != path.resolve():
            raise UserError(f"{path}: two files are named {path.name}; push them separately")
        names[path.name] = path
    if len(names) > MAX_FILES:
        raise UserError(f"{len(names)} files: a system has at most {MAX_FILES}")
    return list(names.values()), sbom


def file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return "sha256:" + digest.hexdigest(), size


class BlobUploader:
    """Uploads blobs the repository lacks (by HEAD), noting which went up in `result`."""

    def __init__(
        self, client: RegistryClient, dest: ImageReference, progress: Progress, result: PushedSystem
    ) -> None:
        self.client = client
        self.dest = dest
        self.progress = progress
        self.result = result

    def blob(self, blob: Descriptor, path: Path) -> None:
        if self.client.blob_exists(self.dest, blob.digest):
            self.result.present.append(blob.digest)
            return
        upload_blob(self.client, self.dest, blob, path, progress=self.progress)
        self.result.uploaded.append(blob.digest)

    def data(self, blob: Descriptor, data: bytes) -> None:
        if self.client.blob_exists(self.dest, blob.digest):
            self.result.present.append(blob.digest)
            return
        with tempfile.TemporaryDirectory(prefix="osbuilder-push-") as scratch:
            path = Path(scratch) / "blob"
            path.write_bytes(data)
            upload_blob(self.client, self.dest, blob, path, progress=self.progress)
        self.result.uploaded.append(blob.digest)


def push_system(
    client: RegistryClient,
    dest: ImageReference,
    systems: Sequence[SystemFiles],
    progress: Progress | None = None,
) -> PushedSystem:
    """Push `systems` (one per architecture) to `dest` as one artifact."""
    if not systems:
        raise UserError("nothing to push: name a system's output files")
    architectures = [s.record.architecture for s in systems]
    if len(set(architectures)) != len(architectures):
        raise UserError(f"two systems for one architecture ({', '.join(architectures)})")
    result = PushedSystem(dest, "", mediatypes.OCI_MANIFEST, 0)
    uploader = BlobUploader(client, dest, progress or NullProgress(), result)
    reference = dest.digest or dest.tag or "latest"
    manifests: list[Descriptor] = []
    for system in systems:
        layers = []
        for path in system.files:
            digest, size = file_digest(path)
            layer = file_descriptor(digest, size, path.name)
            uploader.blob(layer, path)
            layers.append(layer)
        record = system.record.as_bytes()
        config = Descriptor(SYSTEM_TYPE, sha256_digest(record), len(record))
        uploader.data(config, record)
        manifest = manifest_bytes(config, layers)
        descriptor = Descriptor(
            mediatypes.OCI_MANIFEST,
            sha256_digest(manifest),
            len(manifest),
            platform=Platform(architecture=system.record.architecture, os=system.record.os),
            extra={"artifactType": SYSTEM_TYPE},
        )
        single = len(systems) == 1
        client.put_manifest(
            dest, reference if single else descriptor.digest, manifest, mediatypes.OCI_MANIFEST
        )
        manifests.append(descriptor)
        result.manifests[system.record.architecture] = descriptor.replace(platform=None)
    if len(manifests) == 1:
        result.digest, result.size = manifests[0].digest, manifests[0].size
    else:
        index = index_bytes(manifests)
        client.put_manifest(dest, reference, index, mediatypes.OCI_INDEX)
        result.digest, result.size = sha256_digest(index), len(index)
        result.media_type = mediatypes.OCI_INDEX
    if dest.digest is not None and dest.digest != result.digest:
        raise UserError(f"{dest}: the system's digest is {result.digest}, not {dest.digest}")
    return result


def guess_formats(files: Sequence[Path]) -> list[str]:
    """The formats output files were written in, by their names' endings (best effort:
    a record of `push registry`, where no build is at hand)."""
    found: list[str] = []
    for path in files:
        name = path.name
        for ending, fmt in _ENDINGS:
            if name.endswith(ending):
                found.append(fmt)
                break
    return list(dict.fromkeys(found))


_ENDINGS = (
    ("-kernel", "kernel+initrd"),
    ("-initrd.img", "kernel+initrd"),
    ("-cmdline", "kernel+initrd"),
    ("-initrd.tar", "tar-kernel-initrd"),
    ("-efi-initrd.iso", "iso-efi-initrd"),
    ("-efi.iso", "iso-efi"),
    (".iso", "iso-bios"),
    ("-efi.qcow2", "qcow2-efi"),
    (".qcow2", "qcow2-bios"),
    ("-efi.img", "raw-efi"),
    ("-bios.img", "raw-bios"),
    (".img.tar.gz", "gcp"),
    (".vhd", "vhd"),
    (".vmdk", "vmdk"),
    (".tar", "tar"),
)


def split_arch(text: str) -> tuple[str | None, str]:
    """`amd64=output/redis` -> ("amd64", "output/redis"); a plain path has no architecture."""
    arch, sep, path = text.partition("=")
    if sep and arch and "/" not in arch and not os.path.exists(text):
        return arch, path
    return None, text
