"""Signing images: the payloads, sigstore (cosign) signatures with the `.sig` manifest that
carries them, and OpenPGP simple signatures made by gpg.

What is written is what cosign and containers/image write, byte for byte where the bytes
are theirs to choose (JSON as Go's encoding/json writes it), so that cosign, skopeo and
podman verify osbuilder's signatures, and osbuilder's verifier (sigstore.py, simplesign.py)
is tested against signatures it did not make itself as well as its own.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from osbuilder import __version__, runner
from osbuilder.errors import ExternalError, UserError
from osbuilder.oci.mediatypes import DOCKER_CONFIG, DOCKER_MANIFEST, OCI_CONFIG, OCI_MANIFEST
from osbuilder.oci.store import MAX_DOCUMENT_SIZE
from osbuilder.trust.keys import PrivateKey
from osbuilder.trust.payload import (
    COSIGN_TYPE,
    MAX_PAYLOAD_SIZE,
    SIMPLE_SIGNING_TYPE,
    InvalidSignature,
    is_manifest_digest,
    parse_payload,
)
from osbuilder.trust.sigstore import (
    PAYLOAD_MEDIA_TYPE,
    SIGNATURE_ANNOTATION,
    PublicKey,
    SigstoreKey,
    verify_sigstore_signature,
)
from osbuilder.trust.simplesign import MAX_SIGNATURE_SIZE as MAX_SIMPLE_SIGNATURE_SIZE
from osbuilder.trust.strictjson import InvalidJSON, load_strict

CREATOR = (
    f"osbuilder {__version__}"  # optional.creator of a simple signature ("atomic X" in skopeo's)
)

# Go's zero time.Time, which go-containerregistry writes as `created` in the config of a
# `.sig` image and of each of its history entries (cosign records no creation time).
ZERO_TIME = "0001-01-01T00:00:00Z"
# cosign refuses to read a signature manifest of more layers than this.
MAX_SIGNATURE_LAYERS = 1000
# gpg may wait for the user to type a passphrase in pinentry.
GPG_SIGN_TIMEOUT = 300.0

# go-containerregistry's ConfigFile fields, in the order it writes them.
_CONFIG_ORDER = (
    "architecture", "author", "container", "created", "docker_version", "history", "os",
    "rootfs", "config", "os.version", "variant", "os.features",
)  # fmt: skip

# gpg's INV_SGNR reason codes (doc/DETAILS in GnuPG) that a user can act on.
_INVALID_SIGNER = {
    "1": "gpg knows no such key",
    "3": "the key cannot sign",
    "4": "the key is revoked",
    "5": "the key expired",
    "9": "gpg has no secret key for it (the key is missing, or only its public part is there)",
    "13": "the key is disabled",
}


class InvalidSignatureManifest(UserError):
    """A `.sig` manifest or its config that a signature cannot be added to."""


def go_json(value: Any) -> bytes:
    """`value` as Go's encoding/json writes it: compact, UTF-8 (not \\u escapes), with <, >, &
    and U+2028, U+2029 escaped. Dict order is kept: give keys in Go's order (struct fields
    as declared, map keys sorted)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    for character, escaped in (
        ("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
        ("\u2028", "\\u2028"), ("\u2029", "\\u2029"),
    ):  # fmt: skip
        text = text.replace(character, escaped)  # only inside strings: JSON has them nowhere else
    return text.encode()


def payload_bytes(
    docker_reference: str,
    manifest_digest: str,
    signature_type: str,
    *,
    creator: str | None = None,
    timestamp: int | None = None,
) -> bytes:
    """The payload a signature signs: `manifest_digest` under the name `docker_reference`.

    A cosign payload (COSIGN_TYPE) is what cosign writes: "optional" is null unless a
    creator or timestamp is given, so the same name and digest always give the same bytes.
    A simple-signing payload (SIMPLE_SIGNING_TYPE) is what containers/image writes, with
    "optional" {"creator": "osbuilder VERSION", "timestamp": now} unless given otherwise.
    """
    if signature_type not in (COSIGN_TYPE, SIMPLE_SIGNING_TYPE):
        raise ValueError(f"unknown signature type {signature_type!r}")
    if not docker_reference:
        raise UserError("cannot sign: the image name (docker-reference) is empty")
    if not is_manifest_digest(manifest_digest):
        raise UserError(
            f"cannot sign {manifest_digest!r}: expected a manifest digest sha256:<64 hex digits>"
        )
    if timestamp is not None and (isinstance(timestamp, bool) or not isinstance(timestamp, int)):
        raise ValueError(f"timestamp: expected an integer, found {timestamp!r}")
    if signature_type == SIMPLE_SIGNING_TYPE:
        creator = CREATOR if creator is None else creator
        timestamp = int(time.time()) if timestamp is None else timestamp
    optional: dict[str, Any] | None = None
    if creator is not None or timestamp is not None:
        optional = {}  # a Go map: keys sorted, which these already are
        if creator is not None:
            optional["creator"] = creator
        if timestamp is not None:
            optional["timestamp"] = timestamp
    document = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": manifest_digest},
            "type": signature_type,
        },
        "optional": optional,
    }
    data = go_json(document)
    parse_payload(data, signature_type=signature_type)  # what is signed must verify as signed
    return data


def sign_sigstore(payload: bytes, private_key: PrivateKey) -> str:
    """The base64 signature of `payload` that the `.sig` layer's annotation carries, as
    sigstore signs with a key: ECDSA over SHA-256 (ASN.1 DER), RSA PKCS#1 v1.5 with SHA-256,
    Ed25519 over the payload itself. sigstore.verify_sigstore verifies it."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        signature = private_key.sign(payload, ec.ECDSA(hashes.SHA256()))
    elif isinstance(private_key, rsa.RSAPrivateKey):
        signature = private_key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
    else:
        signature = private_key.sign(payload)
    return base64.b64encode(signature).decode()


class SignatureManifest(NamedTuple):
    """A `.sig` image to push as the tag sigstore.sigstore_tag names.

    `layers` are the blobs to upload besides the config: every layer of a new manifest,
    only the added one when a signature is appended (the others are in the registry).
    """

    manifest: bytes
    config: bytes
    layers: list[bytes]

    @property
    def digest(self) -> str:
        return _digest(self.manifest)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sigstore_signature_manifest(layers: Sequence[tuple[bytes, str]]) -> SignatureManifest:
    """The `.sig` image cosign pushes for signatures (payload, base64 signature): an OCI
    manifest whose config is go-containerregistry's empty image config, each payload a layer
    of type PAYLOAD_MEDIA_TYPE with its signature in the SIGNATURE_ANNOTATION annotation."""
    if not layers:
        raise ValueError("a signature manifest needs at least one signature")
    config: dict[str, Any] = {
        "architecture": "",
        "created": ZERO_TIME,
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": None},
        "config": {},
    }
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": 0, "digest": ""},
        "layers": [],
    }
    for payload, signature in layers:
        _append(manifest, config, payload, signature)
    return _serialized(manifest, config, [payload for payload, _ in layers])


def append_sigstore_signature(
    manifest: bytes,
    config: bytes,
    payload: bytes,
    signature: str,
    *,
    key: PublicKey | None = None,
) -> SignatureManifest | None:
    """An existing `.sig` image (its manifest and config) with one more signature, as cosign
    appends; None when it holds that signature already, which is then not added twice.

    Already there: a layer of the same payload whose annotation is `signature`, or, given
    the signer's public `key`, whose signature verifies with it (as cosign judges: an ECDSA
    signature differs each time the same payload is signed).
    """
    document = _load_document(manifest, "signature manifest")
    config_type = _check_manifest(document, config)
    layers = document["layers"]
    digest = _digest(payload)
    for layer in layers:
        if layer.get("digest") != digest or layer.get("mediaType") != PAYLOAD_MEDIA_TYPE:
            continue
        annotations = layer.get("annotations")
        existing = annotations.get(SIGNATURE_ANNOTATION) if isinstance(annotations, dict) else None
        if not isinstance(existing, str):
            continue
        if existing == signature or (key is not None and _verifies(payload, existing, key)):
            return None
    if len(layers) >= MAX_SIGNATURE_LAYERS:
        raise InvalidSignatureManifest(
            f"signature manifest: it holds {len(layers)} signatures already, the most cosign reads"
        )
    if config_type in (OCI_CONFIG, DOCKER_CONFIG):
        # An image config: go-containerregistry records each layer added in it too.
        config_document = _load_document(config, "signature manifest's config")
        _append(document, config_document, payload, signature)
        return _serialized(document, config_document, [payload])
    _append(document, None, payload, signature)  # another config is kept as it is
    document["config"]["size"], document["config"]["digest"] = len(config), _digest(config)
    return SignatureManifest(go_json(document), config, [payload])


def _verifies(payload: bytes, signature: str, key: PublicKey) -> bool:
    try:
        verify_sigstore_signature(payload, signature, [SigstoreKey(key, "the signer's key")])
    except InvalidSignature:
        return False
    return True


def _load_document(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_DOCUMENT_SIZE:
        raise InvalidSignatureManifest(
            f"{what}: expected at most {MAX_DOCUMENT_SIZE} bytes, found {len(data)}"
        )
    try:
        document = load_strict(data)
    except InvalidJSON as exc:
        raise InvalidSignatureManifest(f"{what}: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidSignatureManifest(f"{what}: expected a JSON object")
    return document


def _check_manifest(document: dict[str, Any], config: bytes) -> str:
    """The config's media type, once `document` is an image manifest whose config is
    `config` and whose layers are descriptors."""
    media_type = document.get("mediaType", OCI_MANIFEST)
    if document.get("schemaVersion") != 2 or media_type not in (OCI_MANIFEST, DOCKER_MANIFEST):
        raise InvalidSignatureManifest(
            f"signature manifest: expected an OCI or Docker image manifest, found {media_type!r}"
        )
    descriptor = document.get("config")
    if not isinstance(descriptor, dict) or not isinstance(descriptor.get("mediaType"), str):
        raise InvalidSignatureManifest("signature manifest: its config descriptor is malformed")
    if descriptor.get("digest") != _digest(config):
        raise InvalidSignatureManifest(
            f"signature manifest: its config is {descriptor.get('digest')!r}, the config given "
            f"is {_digest(config)}"
        )
    layers = document.get("layers")
    if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
        raise InvalidSignatureManifest("signature manifest: its layers are not descriptors")
    media: str = descriptor["mediaType"]
    return media


def _append(
    manifest: dict[str, Any], config: dict[str, Any] | None, payload: bytes, signature: str
) -> None:
    """Add the layer to `manifest`, and record it in `config` (if an image config) as
    go-containerregistry's mutate.Append does: a diff ID and an empty history entry."""
    digest = _digest(payload)
    manifest["layers"].append(
        {
            "mediaType": PAYLOAD_MEDIA_TYPE,
            "size": len(payload),
            "digest": digest,  # the layer is the payload itself: its diff ID is this too
            "annotations": {SIGNATURE_ANNOTATION: signature},
        }
    )
    if config is None:
        return
    if not isinstance(config.get("rootfs", {}), dict) or not isinstance(
        config.get("history") or [], list
    ):
        raise InvalidSignatureManifest("signature manifest's config: malformed rootfs or history")
    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": None})
    if not isinstance(rootfs.get("diff_ids") or [], list):
        raise InvalidSignatureManifest("signature manifest's config: malformed rootfs.diff_ids")
    rootfs["diff_ids"] = [*(rootfs.get("diff_ids") or []), digest]
    config["history"] = [*(config.get("history") or []), {"created": ZERO_TIME}]


def _serialized(
    manifest: dict[str, Any], config: dict[str, Any], layers: list[bytes]
) -> SignatureManifest:
    ordered = {key: config[key] for key in _CONFIG_ORDER if key in config}
    ordered.update((key, value) for key, value in config.items() if key not in ordered)
    config_bytes = go_json(ordered)
    manifest["config"]["size"], manifest["config"]["digest"] = (
        len(config_bytes),
        _digest(config_bytes),
    )
    return SignatureManifest(go_json(manifest), config_bytes, layers)


def sign_simple(payload: bytes, fingerprint: str, *, gnupg_home: Path | None = None) -> bytes:
    """A simple signature of `payload`: the binary OpenPGP signed message that
    `skopeo standalone-sign` writes, made by `gpg --sign` with the key `fingerprint` (its
    signing subkey, if it has one) from `gnupg_home`, else from $GNUPGHOME or ~/.gnupg.

    UserError in one line when gpg cannot sign with that key, with gpg's reason.
    """
    wanted = _fingerprint(fingerprint)
    if len(payload) > MAX_PAYLOAD_SIZE:
        raise UserError(
            f"cannot sign: the payload is {len(payload)} bytes, at most {MAX_PAYLOAD_SIZE} verify"
        )
    environment = {"LC_ALL": "C"}  # gpg's messages in English, as osbuilder's are
    if gnupg_home is not None:
        environment["GNUPGHOME"] = str(gnupg_home)
    command = [
        "gpg", "--batch", "--no-armor",  # binary whatever gpg.conf says: the format is binary
        "--status-fd", "2", "--local-user", wanted, "--output", "-", "--sign",
    ]  # fmt: skip
    result = runner.run(
        command, input=payload, env=environment, timeout=GPG_SIGN_TIMEOUT, check=False
    )
    stderr = result.stderr.decode(errors="replace")
    status = [line.split()[1:] for line in stderr.splitlines() if line.startswith("[GNUPG:] ")]
    said = [line[5:] for line in stderr.splitlines() if line.startswith("gpg: ")]
    home = str(gnupg_home) if gnupg_home is not None else os.environ.get("GNUPGHOME", "~/.gnupg")
    for line in status:
        if line[:1] == ["INV_SGNR"]:
            code = line[1] if len(line) > 1 else "0"
            reason = _INVALID_SIGNER.get(code, "gpg cannot use it")
            raise UserError(
                f"cannot sign with OpenPGP key {wanted} from {home}: {reason}"
                + (f' (gpg: "{said[-1]}")' if said else "")
            )
    created = [line for line in status if line[:1] == ["SIG_CREATED"]]
    signature = result.stdout
    if result.returncode != 0 or len(created) != 1 or not signature:
        detail = " | ".join(said[-2:]) or "no error message"
        raise ExternalError(
            f"gpg failed to sign with key {wanted} from {home} (exit {result.returncode}): {detail}"
        )
    if len(signature) > MAX_SIMPLE_SIGNATURE_SIZE or not signature[0] & 0x80:
        raise ExternalError("gpg wrote something other than a binary OpenPGP signed message")
    return signature


def _fingerprint(value: str) -> str:
    """A full OpenPGP fingerprint (40 or 64 hex digits, spaces and 0x allowed), upper case.

    Short key IDs are refused: anyone can make a key with a given 64-bit ID, and signing
    with a key other than the one meant would make signatures no policy accepts.
    """
    text = value.replace(" ", "").upper().removeprefix("0X")
    if len(text) not in (40, 64) or any(c not in "0123456789ABCDEF" for c in text):
        raise UserError(
            f"{value!r}: expected a full OpenPGP fingerprint (40 hex digits), as "
            "`gpg --list-secret-keys --with-colons` shows on its fpr lines"
        )
    return text
