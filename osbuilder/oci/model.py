"""OCI image JSON documents: descriptors, manifests, indexes, image configs.

Registry JSON is untrusted input. These are plain frozen records with a strict
`from_json` each: a wrong type or a malformed digest is an error naming the
field, and a descriptor keeps the fields it does not know, for round trips
(which msgspec's typed decoding would drop or refuse). Manifests are never
re-serialised: their digest is of the bytes the registry sent.

The records are msgspec Structs, not pydantic models: they hold machine-written JSON
decoded on a hot path (every descriptor of every pull and build), where a Struct is
built several times faster. Users' files (specs, recipes) are validated by pydantic
only (spec/validation.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, TypeVar

import msgspec
from msgspec import Struct, field

from osbuilder.errors import ExternalError
from osbuilder.oci import mediatypes

DIGEST_PATTERN = re.compile(r"sha256:[0-9a-f]{64}")

T = TypeVar("T")


class InvalidDocument(ValueError):
    """A JSON document that does not have the shape its type requires."""


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    """Only sha256 digests in canonical form are accepted (they name files in the store)."""
    if not DIGEST_PATTERN.fullmatch(digest):
        raise ValueError(f"unsupported or malformed digest {digest!r} (expected sha256:<64 hex>)")
    return digest


# --- typed access to untrusted JSON -----------------------------------------------------------


def _get(obj: dict[str, Any], key: str, kind: type[T], where: str, required: bool = False) -> T:
    value = obj.get(key)
    if value is None:
        if required:
            raise InvalidDocument(f"{where}: missing {key!r}")
        return value  # type: ignore[return-value]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidDocument(
            f"{where}.{key}: expected {kind.__name__}, got {type(value).__name__}"
        )
    return value


def _strings(obj: dict[str, Any], key: str, where: str) -> list[str] | None:
    value = _get(obj, key, list, where)
    if value is not None and not all(isinstance(v, str) for v in value):
        raise InvalidDocument(f"{where}.{key}: expected a list of strings")
    return value


def _string_map(obj: dict[str, Any], key: str, where: str) -> dict[str, str] | None:
    value = _get(obj, key, dict, where)
    if value is not None and not all(isinstance(v, str) for v in value.values()):
        raise InvalidDocument(f"{where}.{key}: expected a map of strings")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidDocument(f"{where}: expected an object")
    return value


def _schema_2(obj: Any, where: str) -> dict[str, Any]:
    """`obj` as a manifest or an index: an object of the one schemaVersion OCI defines."""
    document = _object(obj, where)
    if _get(document, "schemaVersion", int, where, required=True) != 2:
        raise InvalidDocument(f"{where}: only schemaVersion 2 is supported")
    return document


def _descriptors(obj: dict[str, Any], key: str, where: str) -> list[Descriptor]:
    """The required list of descriptors under `key` (a manifest's layers, an index's
    manifests)."""
    entries = _get(obj, key, list, where, required=True)
    return [Descriptor.from_json(e, f"{where}.{key}[{i}]") for i, e in enumerate(entries)]


# --- the documents -------------------------------------------------------------------------------


class Platform(Struct, frozen=True):
    architecture: str
    os: str
    variant: str | None = None
    os_version: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Platform:
        obj = _object(obj, where)
        return cls(
            architecture=_get(obj, "architecture", str, where, required=True),
            os=_get(obj, "os", str, where, required=True),
            variant=_get(obj, "variant", str, where),
            os_version=_get(obj, "os.version", str, where),
        )

    def as_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        return out


class Descriptor(Struct, frozen=True):
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] | None = None
    platform: Platform | None = None
    urls: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # kept on round trips

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Descriptor:
        obj = _object(obj, where)
        digest = _get(obj, "digest", str, where, required=True)
        try:
            check_digest(digest)
        except ValueError as exc:
            raise InvalidDocument(f"{where}.digest: {exc}") from None
        size = _get(obj, "size", int, where, required=True)
        if size < 0:
            raise InvalidDocument(f"{where}.size: negative")
        platform = obj.get("platform")
        known = {"mediaType", "digest", "size", "annotations", "platform", "urls"}
        return cls(
            media_type=_get(obj, "mediaType", str, where, required=True),
            digest=digest,
            size=size,
            annotations=_string_map(obj, "annotations", where),
            platform=Platform.from_json(platform, f"{where}.platform") if platform else None,
            urls=_strings(obj, "urls", where),
            extra={k: v for k, v in obj.items() if k not in known},
        )

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = self.annotations
        if self.platform is not None:
            out["platform"] = self.platform.as_json()
        if self.urls:
            out["urls"] = self.urls
        return {**self.extra, **out}

    def replace(self, **changes: Any) -> Descriptor:
        return msgspec.structs.replace(self, **changes)


class Manifest(Struct, frozen=True):
    media_type: str | None
    config: Descriptor
    layers: list[Descriptor]
    annotations: dict[str, str] | None = None

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Manifest:
        obj = _schema_2(obj, where)
        return cls(
            media_type=_get(obj, "mediaType", str, where),
            config=Descriptor.from_json(obj.get("config"), f"{where}.config"),
            layers=_descriptors(obj, "layers", where),
            annotations=_string_map(obj, "annotations", where),
        )


class Index(Struct, frozen=True):
    media_type: str | None
    manifests: list[Descriptor]
    annotations: dict[str, str] | None = None

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Index:
        obj = _schema_2(obj, where)
        return cls(
            media_type=_get(obj, "mediaType", str, where),
            manifests=_descriptors(obj, "manifests", where),
            annotations=_string_map(obj, "annotations", where),
        )


class RuntimeConfig(Struct, frozen=True):
    """The `config` part of an image config: how to run the image."""

    user: str | None = None
    env: list[str] | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    working_dir: str | None = None
    labels: dict[str, str] | None = None

    @classmethod
    def from_json(cls, obj: Any, where: str) -> RuntimeConfig:
        obj = _object(obj, where)
        return cls(
            user=_get(obj, "User", str, where),
            env=_strings(obj, "Env", where),
            entrypoint=_strings(obj, "Entrypoint", where),
            cmd=_strings(obj, "Cmd", where),
            working_dir=_get(obj, "WorkingDir", str, where),
            labels=_string_map(obj, "Labels", where),
        )


class ImageConfig(Struct, frozen=True):
    architecture: str
    os: str
    diff_ids: list[str]
    variant: str | None = None
    config: RuntimeConfig = field(default_factory=RuntimeConfig)

    @classmethod
    def from_json(cls, obj: Any, where: str) -> ImageConfig:
        obj = _object(obj, where)
        rootfs = _object(obj.get("rootfs"), f"{where}.rootfs")
        diff_ids = _strings(rootfs, "diff_ids", f"{where}.rootfs") or []
        runtime = obj.get("config")
        return cls(
            architecture=_get(obj, "architecture", str, where, required=True),
            os=_get(obj, "os", str, where, required=True),
            diff_ids=diff_ids,
            variant=_get(obj, "variant", str, where),
            config=RuntimeConfig.from_json(runtime, f"{where}.config")
            if runtime
            else RuntimeConfig(),
        )


def parse_json(model: type[T], data: bytes, what: str) -> T:
    """Parse registry or store JSON as `model`; a malformed document is an ExternalError."""
    try:
        document = json.loads(data)
        return model.from_json(document, what)  # type: ignore[attr-defined,no-any-return]
    except (ValueError, RecursionError) as exc:
        raise ExternalError(f"{what} is not a valid {model.__name__.lower()}: {exc}") from None


def is_index(media_type: str | None) -> bool:
    return media_type in mediatypes.INDEXES


def detect_media_type(data: bytes, declared: str | None) -> str:
    """A manifest's media type: as declared, else its `mediaType` field, else by its shape."""
    if declared is not None and declared in mediatypes.INDEXES | mediatypes.MANIFESTS:
        return declared
    try:
        document = json.loads(data)
    except ValueError:
        raise ExternalError("manifest is not JSON") from None
    if not isinstance(document, dict):
        raise ExternalError("manifest is not a JSON object")
    inner = document.get("mediaType")
    if inner in mediatypes.INDEXES | mediatypes.MANIFESTS:
        return str(inner)
    if document.get("schemaVersion") == 1:
        raise ExternalError("Docker schema 1 manifests are not supported; re-push the image")
    return mediatypes.OCI_INDEX if "manifests" in document else mediatypes.OCI_MANIFEST
