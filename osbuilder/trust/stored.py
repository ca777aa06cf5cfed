"""Signatures kept in the content store beside the images they sign.

Both kinds are OCI manifests named in the store's index.json, so that they are
exported, imported, pushed and garbage-collected with their image:

- sigstore signatures exactly as cosign attaches them in a registry: the manifest
  named `REPO:sha256-HEX.sig`, one payload layer per signature;
- simple (OpenPGP) signatures, which registries do not hold (they live in a lookaside
  store), as an osbuilder artifact named `REPO:sha256-HEX.simplesig`, one layer per
  signature, in the order of the lookaside's `signature-N`.

Signatures here are data, not verdicts: every use verifies them again. What a
policy accepted is recorded apart (`Acceptances`), keyed by the policy's
requirements, so that a stricter policy checks again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from msgspec import Struct

from osbuilder.atomicfile import atomic_output
from osbuilder.errors import cannot_write
from osbuilder.oci import mediatypes
from osbuilder.oci.model import Descriptor, Manifest, sha256_digest
from osbuilder.oci.reference import ImageReference
from osbuilder.oci.store import ContentStore
from osbuilder.trust.payload import MAX_PAYLOAD_SIZE, InvalidSignature, refuse_oversized
from osbuilder.trust.sigstore import (
    MAX_SIGNATURE_SIZE,
    PAYLOAD_MEDIA_TYPE,
    SIGNATURE_ANNOTATION,
    sigstore_tag,
)
from osbuilder.trust.simplesign import MAX_SIGNATURE_SIZE as MAX_SIMPLE_SIGNATURE_SIZE

SIMPLE_SIGNATURES_ARTIFACT = "application/vnd.osbuilder.simple-signatures.v1"
SIMPLE_SIGNATURE_MEDIA_TYPE = "application/vnd.osbuilder.simple-signature.v1+pgp"
EMPTY_CONFIG = b"{}"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
#: More signatures than this on one image is not a signing practice but an attack.
MAX_SIGNATURES = 64
_LIMITS = {
    PAYLOAD_MEDIA_TYPE: MAX_PAYLOAD_SIZE,
    SIMPLE_SIGNATURE_MEDIA_TYPE: MAX_SIMPLE_SIGNATURE_SIZE,
}


class SigstoreSignature(Struct, frozen=True):
    """One layer of a cosign signature manifest: the payload and its base64 signature."""

    payload: bytes
    signature: str


def attachment_name(ref: ImageReference, manifest_digest: str, suffix: str) -> str:
    """The store name of what is attached to `manifest_digest` in `ref`'s repository."""
    tag = sigstore_tag(manifest_digest).removesuffix(".sig") + suffix
    return f"{ref.registry}/{ref.repository}:{tag}"


def sigstore_name(ref: ImageReference, manifest_digest: str) -> str:
    return attachment_name(ref, manifest_digest, ".sig")


def simple_name(ref: ImageReference, manifest_digest: str) -> str:
    return attachment_name(ref, manifest_digest, ".simplesig")


def check_signature_manifest(manifest: Manifest, where: str) -> None:
    """Bounds on a signature manifest before any of its layers is fetched or read."""
    refuse_oversized(where, len(manifest.layers), MAX_SIGNATURES, "signatures")
    for layer in manifest.layers:
        limit = _LIMITS.get(layer.media_type, MAX_SIGNATURE_SIZE)
        if layer.size > limit:
            raise InvalidSignature(
                f"{where}: a signature layer of {layer.size} bytes (at most {limit} expected)"
            )


def sigstore_signatures(
    store: ContentStore, ref: ImageReference, manifest_digest: str
) -> list[SigstoreSignature]:
    """The cosign signatures of `manifest_digest` the store holds for `ref`'s repository."""
    manifest = _attached(store, sigstore_name(ref, manifest_digest))
    if manifest is None:
        return []
    signatures = []
    for layer in manifest.layers:
        if layer.media_type != PAYLOAD_MEDIA_TYPE or not store.has_blob(layer.digest):
            continue  # (cosign attaches other things too; a missing one was never fetched)
        signature = (layer.annotations or {}).get(SIGNATURE_ANNOTATION, "")
        signatures.append(SigstoreSignature(store.read_blob(layer.digest), signature))
    return signatures


def simple_signatures(
    store: ContentStore, ref: ImageReference, manifest_digest: str
) -> list[bytes]:
    """The simple signatures of `manifest_digest` the store holds for `ref`'s repository."""
    manifest = _attached(store, simple_name(ref, manifest_digest))
    return [] if manifest is None else [store.read_blob(layer.digest) for layer in manifest.layers]


def _attached(store: ContentStore, name: str) -> Manifest | None:
    """The signature manifest the store names `name`, checked for its bounds."""
    descriptor = store.lookup(name)
    if descriptor is None:
        return None
    manifest = store.manifest(descriptor.digest)
    check_signature_manifest(manifest, name)
    return manifest


def add_simple_signatures(
    store: ContentStore, ref: ImageReference, manifest_digest: str, signatures: Sequence[bytes]
) -> int:
    """Keep `signatures` of `manifest_digest` with those already held; returns how many
    were new."""
    held = simple_signatures(store, ref, manifest_digest)
    new = [s for s in dict.fromkeys(signatures) if s not in held]
    if not new:
        return 0
    layers = [
        Descriptor(SIMPLE_SIGNATURE_MEDIA_TYPE, store.put_bytes(data), len(data))
        for data in [*held, *new]
    ]
    store.put_bytes(EMPTY_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "artifactType": SIMPLE_SIGNATURES_ARTIFACT,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "digest": sha256_digest(EMPTY_CONFIG),
            "size": len(EMPTY_CONFIG),
        },
        "layers": [layer.as_json() for layer in layers],
    }
    data = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
    digest = store.put_bytes(data)
    store.tag(
        simple_name(ref, manifest_digest), Descriptor(mediatypes.OCI_MANIFEST, digest, len(data))
    )
    return len(new)


# --- what a policy accepted ----------------------------------------------------------------


class Acceptance(Struct, frozen=True):
    manifest: str  # the platform's manifest, taken from the image (the digest itself if none)
    identity: str  # the reference as the policy judged it
    requirements: str  # the fingerprint of the requirements that were satisfied


class Acceptances:
    """Records, per digest an image resolved to, of which platform manifest and identity
    were accepted under which requirements: an offline build of verified images needs
    neither signatures fetched again nor gpgv run again. A record only ever matches the
    exact same requirements (and keys), so a changed policy checks again."""

    def __init__(self, store: ContentStore) -> None:
        self.directory = store.root / "trust" / "accepted"

    def _path(self, digest: str) -> Path:
        return self.directory / digest.replace(":", "-")

    def _read(self, digest: str) -> list[Acceptance]:
        try:
            data = json.loads(self._path(digest).read_bytes())
            return [
                Acceptance(item["manifest"], item["identity"], item["requirements"])
                for item in data
            ]
        except (OSError, ValueError, KeyError, TypeError):
            return []  # none, or damaged: verify again (and rewrite it)

    def accepted(self, digest: str, entry: Acceptance) -> bool:
        return entry in self._read(digest)

    def record(self, digest: str, entry: Acceptance) -> None:
        records = self._read(digest)
        if entry in records:
            return
        records.append(entry)
        text = json.dumps(
            [
                {"manifest": r.manifest, "identity": r.identity, "requirements": r.requirements}
                for r in records
            ]
        )
        path = self._path(digest)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with atomic_output(path) as stream:
                stream.write(text.encode())
        except OSError as exc:
            raise cannot_write(path, exc) from None
