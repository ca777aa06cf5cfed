"""The system artifact: what a built system looks like in a registry.

One OCI image manifest per architecture:

- ``artifactType``: SYSTEM_TYPE;
- ``config``: the build's record (BuildRecord as JSON), with mediaType SYSTEM_TYPE.
  The image-spec's artifact guidance says an artifact with no config data uses the
  empty descriptor, and one with config data gives the config its own mediaType; the
  record is data a reader wants (which spec, which images, which formats), so it is the
  config, typed;
- one layer per output file, mediaType ``application/octet-stream``, annotated with
  ``org.opencontainers.image.title`` = the file's name (what ``oras pull`` writes).

Several architectures of one system: an image index of those manifests, each entry
with its platform, the index with the same artifactType.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from msgspec import Struct, field

from osbuilder.errors import UserError
from osbuilder.oci import mediatypes
from osbuilder.oci.model import Descriptor, InvalidDocument

SYSTEM_TYPE = "application/vnd.osbuilder.system.v1+json"
FILE_TYPE = "application/octet-stream"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"  # the image-spec's empty descriptor
TITLE = "org.opencontainers.image.title"
CREATED = "org.opencontainers.image.created"
MAX_CONFIG_SIZE = 1024 * 1024  # a build record is a few KiB; refuse anything near this
MAX_FILES = 1000


class BuildRecord(Struct, frozen=True, omit_defaults=True, rename="camel"):
    """What a system was built from: the artifact's config."""

    osbuilder_version: str
    architecture: str
    os: str = "linux"
    formats: list[str] = field(default_factory=list)
    spec_digest: str | None = None  # sha256 of the merged spec, as canonical JSON
    lock_digest: str | None = None  # sha256 of the spec's lock file, when it had one
    images: dict[str, str] = field(default_factory=dict)  # spec reference -> digest

    def as_bytes(self) -> bytes:
        return msgspec.json.encode(self, order="sorted")


def check_title(title: str | None, where: str) -> str:
    """A layer's title as a file name in the output directory: refused when missing,
    empty, or naming anything but a plain file there."""
    if title is None:
        raise UserError(f"{where}: a layer has no {TITLE} annotation (no file name)")
    if (
        not title
        or "/" in title
        or "\\" in title
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in title)  # (NUL, newlines included)
        or title in (".", "..")
        or title.startswith(".")
        or len(title.encode("utf-8", "surrogateescape")) > 255
    ):
        raise UserError(
            f"{where}: refusing the file name {title[:80]!r} in a layer's title "
            "(a system's file names are plain names: no '/', not '..', not hidden, not "
            "empty, no control characters)"
        )
    return title


def file_descriptor(digest: str, size: int, name: str) -> Descriptor:
    return Descriptor(FILE_TYPE, digest, size, annotations={TITLE: name})


def manifest_bytes(
    config: Descriptor,
    files: list[Descriptor],
    *,
    annotations: dict[str, str] | None = None,
) -> bytes:
    """The system's image manifest (canonical JSON: the same inputs, the same digest)."""
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "artifactType": SYSTEM_TYPE,
        "config": config.as_json(),
        "layers": [f.as_json() for f in files],
    }
    if annotations:
        document["annotations"] = annotations
    return _canonical(document)


def index_bytes(manifests: list[Descriptor]) -> bytes:
    """An index of one system's architectures."""
    document = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_INDEX,
        "artifactType": SYSTEM_TYPE,
        "manifests": [m.as_json() for m in manifests],
    }
    return _canonical(document)


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


class SystemManifest(Struct, frozen=True):
    """A system's manifest as read back: its record's descriptor and its files."""

    config: Descriptor
    files: list[Descriptor]  # each with a checked title


def parse_document(data: bytes, where: str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{where}: not a JSON document") from None
    if not isinstance(document, dict):
        raise UserError(f"{where}: not a JSON object")
    return document


def artifact_type(document: dict[str, Any]) -> str | None:
    """The artifactType of a manifest or index (a manifest without one: its config's type)."""
    value = document.get("artifactType")
    if isinstance(value, str):
        return value
    config = document.get("config")
    if isinstance(config, dict) and isinstance(config.get("mediaType"), str):
        return str(config["mediaType"])
    return None


def is_system(document: dict[str, Any]) -> bool:
    return artifact_type(document) == SYSTEM_TYPE


def describes_system(document: dict[str, Any]) -> bool:
    """A system's manifest, or an index of them (typed itself, or with every entry typed:
    an index made by another tool may type only its entries)."""
    if is_system(document):
        return True
    entries = document.get("manifests")
    return (
        isinstance(entries, list)
        and bool(entries)
        and all(isinstance(e, dict) and e.get("artifactType") == SYSTEM_TYPE for e in entries)
    )


def untyped_index(document: dict[str, Any]) -> bool:
    """An index that types neither itself nor any entry. Tools that predate artifactType
    leave a system's index so when they rewrite it (skopeo 1.9's `copy --all` drops the
    field from the index and its entries; the manifests it copies as they are): what
    such an index holds is told by the manifest chosen from it, which must be a
    system's (parse_system_manifest)."""
    entries = document.get("manifests")
    return (
        "artifactType" not in document
        and isinstance(entries, list)
        and bool(entries)
        and all(isinstance(e, dict) and "artifactType" not in e for e in entries)
    )


def not_a_system(name: str, document: dict[str, Any]) -> UserError:
    kind = artifact_type(document)
    what = (
        "an ordinary container image"
        if kind in (mediatypes.OCI_CONFIG, mediatypes.DOCKER_CONFIG)
        else "an index of container images"
        if kind is None and "manifests" in document
        else f"an artifact of type {kind}"
        if kind
        else "not a system"
    )
    return UserError(f"{name} is not an osbuilder system ({what})")


def parse_system_manifest(data: bytes, where: str) -> SystemManifest:
    """The system manifest `data`; UserError when it is not one, or names a file badly."""
    document = parse_document(data, where)
    if not is_system(document) or "layers" not in document:
        raise not_a_system(where, document)
    try:
        config = Descriptor.from_json(document.get("config"), f"{where} config")
        layers = document.get("layers")
        if not isinstance(layers, list):
            raise InvalidDocument(f"{where}: layers is not a list")
        files = [
            Descriptor.from_json(layer, f"{where} layer {i}") for i, layer in enumerate(layers)
        ]
    except InvalidDocument as exc:
        raise UserError(f"{where}: {exc}") from None
    if config.size > MAX_CONFIG_SIZE:
        raise UserError(
            f"{where}: its config is {config.size} bytes; a system's record is at most "
            f"{MAX_CONFIG_SIZE} (refusing to read it)"
        )
    if len(files) > MAX_FILES:
        raise UserError(f"{where}: {len(files)} files; a system has at most {MAX_FILES}")
    seen: set[str] = set()
    for file in files:
        title = check_title((file.annotations or {}).get(TITLE), where)
        if title in seen:
            raise UserError(f"{where}: two layers are titled {title!r}")
        seen.add(title)
    return SystemManifest(config, files)


def parse_record(data: bytes, where: str) -> BuildRecord:
    try:
        return msgspec.json.decode(data, type=BuildRecord)
    except msgspec.DecodeError as exc:
        raise UserError(f"{where}: its config is not an osbuilder build record ({exc})") from None
