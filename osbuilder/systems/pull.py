"""Pulling a built system: its artifact into the content store, its files into a directory.

The manifest (through an index, for the target architecture) must be a system's
(artifact.py); every title is checked before anything is fetched, and the signature
policy is applied before the files are. Blobs land in the content store, digest-checked
and resumable (download.py), and the store names the system by its reference, so a
second pull downloads nothing. The files appear in the directory together, or none does
(formats/outputfile.py), each under its title, never outside it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from msgspec import Struct

from osbuilder.errors import UserError, cannot_write
from osbuilder.formats.outputfile import output_directory
from osbuilder.oci.model import Descriptor, is_index
from osbuilder.oci.platform import select_manifest
from osbuilder.oci.pull import StorePuller
from osbuilder.oci.reference import ImageReference
from osbuilder.oci.store import ContentStore
from osbuilder.systems.artifact import (
    EMPTY_TYPE,
    TITLE,
    BuildRecord,
    SystemManifest,
    describes_system,
    not_a_system,
    parse_document,
    parse_record,
    parse_system_manifest,
    untyped_index,
)


class PulledSystem(Struct, frozen=True):
    reference: ImageReference
    descriptor: Descriptor  # what the reference names: the manifest, or an index
    manifest_digest: str
    record: BuildRecord
    files: list[Descriptor]
    transferred: int

    def names(self) -> list[str]:
        return [(f.annotations or {})[TITLE] for f in self.files]


class SystemPuller(StorePuller):
    """Pulls systems for one architecture into one store."""

    def pull(self, ref: ImageReference) -> PulledSystem:
        with self.store.using():
            top = self._top(ref)
            data = self.store.read_blob(top.digest)
            name = ref.familiar()
            document = parse_document(data, name)
            if not describes_system(document) and not untyped_index(document):
                raise not_a_system(name, document)
            manifest_digest = top.digest
            if is_index(top.media_type):
                entry = select_manifest(self.store.index(top.digest), self.target, name)
                manifest_digest = entry.digest
                self._manifest(ref, manifest_digest)
            system = parse_system_manifest(self.store.read_blob(manifest_digest), name)
            if self.check is not None:  # before the files: a refused system costs nothing
                self.check(ref, top.digest, manifest_digest)
            transferred = self._blobs(ref, system)
            record = (
                BuildRecord("unknown", self.target.architecture, self.target.os)
                if system.config.media_type == EMPTY_TYPE  # (pushed by another tool)
                else parse_record(self.store.read_blob(system.config.digest), name)
            )
            if record.architecture != self.target.architecture:
                raise UserError(
                    f"{name} is a system for {record.architecture}, not {self.target.architecture}"
                )
            self.store.tag(str(ref), top)
            return PulledSystem(ref, top, manifest_digest, record, system.files, transferred)

    def _top(self, ref: ImageReference) -> Descriptor:
        """What `ref` names, in the store: from the registry unless the store has it (by
        digest, or by a tag the registry still gives that digest)."""
        known = self.store.lookup(str(ref))
        if ref.digest is not None and (pinned := self._stored(ref.digest)) is not None:
            return pinned
        if self.client is None:
            if known is None:
                raise UserError(
                    f"{ref.familiar()} is not in the content store; pull it (without --offline)"
                )
            return known
        if known is not None and self.client.head_manifest(ref) == known.digest:
            return known
        fetched = self.client.get_manifest(ref)
        self.store.put_bytes(fetched.data, fetched.digest)
        return fetched.descriptor

    def _manifest(self, ref: ImageReference, digest: str) -> None:
        if self.store.has_blob(digest):
            return
        if self.client is None:
            raise UserError(f"{ref.familiar()}: manifest {digest[:19]} is not in the store")
        fetched = self.client.get_manifest(ref, digest)
        self.store.put_bytes(fetched.data, digest)

    def _blobs(self, ref: ImageReference, system: SystemManifest) -> int:
        missing = [b for b in (system.config, *system.files) if not self.store.has_blob(b.digest)]
        if not missing:
            return 0
        if self.client is None:
            raise UserError(f"{ref.familiar()}: its files are not all in the store; pull it")
        endpoints = self.client.pull_endpoints(ref.registry)
        return self._fetch_blobs(self.client, endpoints, ref, missing)


def write_files(store: ContentStore, system: PulledSystem, directory: Path) -> list[Path]:
    """The system's files in `directory`, under their titles (checked when pulled), all
    at once or none."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot_write(directory, exc) from None
    written: list[Path] = []
    with output_directory(directory, digests=False) as outputs:
        for blob in system.files:
            name = (blob.annotations or {})[TITLE]
            with store.open_blob(blob.digest) as source, outputs.create(name) as out:
                shutil.copyfileobj(source, out, 1 << 20)
            written.append(directory / name)
    return written


def materialised(store: ContentStore, system: PulledSystem) -> Path:
    """The system's files in the store's systems/ directory, keyed by the manifest's
    digest (written once; later runs find them there)."""
    directory = store.systems / system.manifest_digest.removeprefix("sha256:")
    complete = all(
        (directory / name).is_file() and (directory / name).stat().st_size == blob.size
        for name, blob in zip(system.names(), system.files, strict=True)
    )
    if not complete:
        write_files(store, system, directory)
    return directory


def boot_path(directory: Path, names: list[str]) -> Path:
    """What `osbuilder run` boots of a system's files: the kernel+initrd prefix, else the
    first image."""
    for name in names:
        if name.endswith("-kernel"):
            return directory / name.removesuffix("-kernel")
    for suffix in (".iso", ".qcow2", ".img", ".vhd", ".vmdk", ".img.tar.gz"):
        for name in names:
            if name.endswith(suffix):
                return directory / name
    raise UserError(f"{directory}: the system has no file osbuilder run can boot")
