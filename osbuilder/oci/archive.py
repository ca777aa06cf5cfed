"""OCI archives: an image layout in a tar file, for moving images without a registry.

Export writes `oci-layout`, `index.json` naming the image and what is attached to
it (its signatures: see ContentStore.attachments), and the blobs they reach; the
result reads with `skopeo inspect oci-archive:FILE` (`oci-archive:FILE:REF` when
attachments are named too). Import accepts only those members, verifies every blob
against its name while copying it into the store, and then adds the names of
index.json.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

from msgspec import Struct

from osbuilder.atomicfile import atomic_output
from osbuilder.errors import UserError, cannot_write
from osbuilder.oci import mediatypes
from osbuilder.oci.model import Index, parse_json
from osbuilder.oci.reference import InvalidReference, parse_reference
from osbuilder.oci.store import ContentStore, DigestMismatch

_BLOB_MEMBER = re.compile(r"(?:\./)?blobs/sha256/([0-9a-f]{64})")
_CHUNK = 1024 * 1024


class Exported(Struct, frozen=True):
    blobs: int
    attachments: list[str]  # the names of what is attached to the image, exported with it


def export_archive(store: ContentStore, name: str, output: Path) -> Exported:
    """Write the image `name`, and what is attached to it, as an OCI archive at `output`."""
    ref = parse_reference(name)
    with store.using():
        descriptor = store.lookup(str(ref))
        if descriptor is None:
            raise UserError(f"{ref.familiar()} is not in the content store")
        attachments = store.attachments(str(ref), store.manifest_digests(descriptor))
        named = [(str(ref), descriptor), *((a.name, a.descriptor) for a in attachments)]
        blobs = {d.digest: d for _, top in named for d in store.reachable(top)}
        index = {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_INDEX,
            "manifests": [
                top.replace(annotations={mediatypes.REF_NAME_ANNOTATION: label}).as_json()
                for label, top in named
            ],
        }
        if output.is_dir():
            raise UserError(f"{output} is a directory: name the archive, e.g. {output}/image.tar")
        try:
            with (
                atomic_output(output) as stream,
                tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar,
            ):
                _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
                _add_bytes(tar, "index.json", json.dumps(index, indent=2).encode())
                for digest in sorted(blobs):
                    path = store.blob_path(digest)
                    size = path.stat().st_size
                    info = _info(f"blobs/sha256/{digest.removeprefix('sha256:')}", size)
                    with path.open("rb") as blob:
                        tar.addfile(info, blob)
        except OSError as exc:  # the store's blobs were just listed: writing is what fails
            raise cannot_write(output, exc) from None
        return Exported(len(blobs), [a.name for a in attachments])


def import_archive(store: ContentStore, archive: Path) -> list[str]:
    """Copy an OCI archive's blobs into the store and name its images; returns the names."""
    try:
        # Opened outside the `with` below so that a bad file is one clean error.
        tar = tarfile.open(archive, mode="r:*")  # noqa: SIM115
    except OSError as exc:
        raise UserError(f"{archive}: cannot read: {exc.strerror or exc}") from None
    except tarfile.TarError:
        raise UserError(
            f"{archive}: not a tar archive (make one with osbuilder cache export)"
        ) from None
    index_data: bytes | None = None
    with tar, store.using():
        for member in tar:
            name = member.name
            if member.isdir() or name in ("oci-layout", "./oci-layout"):
                continue
            if name in ("index.json", "./index.json") and member.isfile():
                index_data = _read_member(tar, member, archive)
                continue
            match = _BLOB_MEMBER.fullmatch(name)
            if match is None or not member.isfile():
                raise UserError(f"{archive}: unexpected member {name!r}; not an OCI archive")
            digest = "sha256:" + match.group(1)
            with store.blob_lock(digest):
                if store.has_blob(digest):
                    continue
                partial = store.partial(digest, member.size)
                partial.open()
                partial.restart()
                source = tar.extractfile(member)
                assert source is not None
                try:
                    while chunk := source.read(_CHUNK):
                        partial.write(chunk)
                    partial.commit()
                except DigestMismatch:
                    raise UserError(f"{archive}: {name} does not match its digest") from None
                except BaseException:  # the archive is here to read again: nothing to resume
                    partial.discard()
                    raise
                finally:
                    partial.close()
        if index_data is None:
            raise UserError(f"{archive}: no index.json; not an OCI archive")
        index = parse_json(Index, index_data, f"{archive}: index.json")
        names = []
        for entry in index.manifests:
            if not store.has_blob(entry.digest):
                raise UserError(f"{archive}: index.json names {entry.digest}, which it lacks")
            ref_name = (entry.annotations or {}).get(mediatypes.REF_NAME_ANNOTATION)
            if not ref_name:
                continue
            try:
                canonical = str(parse_reference(ref_name))
            except InvalidReference:
                raise UserError(
                    f"{archive}: image name {ref_name!r} is not a full reference"
                ) from None
            store.tag(canonical, entry.replace(annotations=None))
            names.append(canonical)
        return names


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uname = info.gname = ""
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, len(data)), io.BytesIO(data))


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, archive: Path) -> bytes:
    if member.size > 8 * 1024 * 1024:
        raise UserError(f"{archive}: {member.name} is too large")
    source = tar.extractfile(member)
    assert source is not None
    return source.read()
