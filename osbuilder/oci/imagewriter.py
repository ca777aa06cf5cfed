"""Writing images into the content store: deterministic layers, config, manifest.

A layer is a PAX tar, gzip-compressed with a fixed header (no name, mtime
0), streamed straight into the store: the uncompressed bytes are hashed for
the config's diff_id and the compressed ones for the layer's digest on the
way, so memory stays flat whatever the layer's size. Entries are written in
the order given; callers give a deterministic order and clamp mtimes to
SOURCE_DATE_EPOCH, so the same inputs give the same digests.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import tarfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import IO, Any

from msgspec import Struct, field

from osbuilder.epoch import DEFAULT_EPOCH
from osbuilder.jsonfields import given
from osbuilder.oci import mediatypes
from osbuilder.oci.model import Descriptor
from osbuilder.oci.store import BlobWriter, ContentStore

_GZIP_LEVEL = 6


class _DiffIdHasher:
    """The file object tarfile writes to: hashes the uncompressed stream, then gzips it."""

    def __init__(self, compressed: IO[bytes]) -> None:
        self.hash = hashlib.sha256()
        self.gzip = gzip.GzipFile(
            fileobj=compressed, mode="wb", mtime=0, filename="", compresslevel=_GZIP_LEVEL
        )

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return self.gzip.write(data)

    def close(self) -> None:
        self.gzip.close()


class Layer(Struct, frozen=True):
    descriptor: Descriptor
    diff_id: str


class LayerWriter:
    """Entries go in with `add`; the finished layer is `result` after `new_layer`'s block."""

    def __init__(self, blob: BlobWriter) -> None:
        self._hasher = _DiffIdHasher(blob)  # type: ignore[arg-type]
        # Opened and closed explicitly: the stream must be finished before the blob is.
        self._tar = tarfile.open(  # type: ignore[call-overload]  # noqa: SIM115
            fileobj=self._hasher,
            mode="w|",
            format=tarfile.PAX_FORMAT,
        )
        self.result: Layer | None = None

    def add(self, info: tarfile.TarInfo, data: IO[bytes] | None = None) -> None:
        self._tar.addfile(info, data)

    def _finish(self) -> str:
        self._tar.close()
        self._hasher.close()
        return "sha256:" + self._hasher.hash.hexdigest()


@contextlib.contextmanager
def new_layer(store: ContentStore) -> Iterator[LayerWriter]:
    """Write a layer into the store; it is committed only if the block ends without error."""
    with store.writer() as blob:
        writer = LayerWriter(blob)
        yield writer
        diff_id = writer._finish()
    assert blob.digest is not None
    descriptor = Descriptor(
        media_type=mediatypes.OCI_LAYER_GZIP, digest=blob.digest, size=blob.size
    )
    writer.result = Layer(descriptor, diff_id)


class ImageSpec(Struct):
    """What goes into an image's config besides its layers."""

    architecture: str = "amd64"
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] | None = None
    working_dir: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    created: int = DEFAULT_EPOCH


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def write_image(store: ContentStore, layers: list[Layer], spec: ImageSpec) -> Descriptor:
    """Write config and manifest for `layers`; returns the manifest's descriptor."""
    runtime = given(
        Entrypoint=spec.entrypoint,
        Cmd=spec.cmd,
        Env=spec.env,
        WorkingDir=spec.working_dir,
        Labels=dict(spec.labels) or None,  # (no labels: none written)
    )
    created = datetime.fromtimestamp(spec.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = canonical_json(
        {
            "architecture": spec.architecture,
            "os": "linux",
            "created": created,
            "config": runtime,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [{"created": created, "created_by": "osbuilder"} for _ in layers],
        }
    )
    config_descriptor = Descriptor(
        media_type=mediatypes.OCI_CONFIG, digest=store.put_bytes(config), size=len(config)
    )
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "config": config_descriptor.as_json(),
            "layers": [layer.descriptor.as_json() for layer in layers],
        }
    )
    return Descriptor(
        media_type=mediatypes.OCI_MANIFEST, digest=store.put_bytes(manifest), size=len(manifest)
    )


def write_index(store: ContentStore, manifests: list[Descriptor]) -> Descriptor:
    """Write an image index of `manifests` (each with its platform); returns its descriptor.

    Entries are sorted by platform, so the index is the same whatever order its images
    were built in.
    """
    entries = sorted(
        (Descriptor(m.media_type, m.digest, m.size, platform=m.platform) for m in manifests),
        key=lambda entry: str(entry.platform),
    )
    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_INDEX,
            "manifests": [entry.as_json() for entry in entries],
        }
    )
    return Descriptor(
        media_type=mediatypes.OCI_INDEX, digest=store.put_bytes(index), size=len(index)
    )


def file_info(name: str, size: int, mode: int, mtime: int) -> tarfile.TarInfo:
    """A root-owned regular file entry."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def dir_info(name: str, mode: int, mtime: int) -> tarfile.TarInfo:
    info = file_info(name, 0, mode, mtime)
    info.type = tarfile.DIRTYPE
    return info
