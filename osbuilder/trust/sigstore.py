"""Verifying sigstore (cosign) signatures made with a public key.

cosign attaches a signature to the manifest `sha256:HEX` as the tag `sha256-HEX.sig` of
the same repository: a manifest whose every layer is a payload (see payload.py, type
"cosign container image signature") with the base64 signature in the layer's annotation
`dev.cosignproject.cosign/signature`. The signature is over the payload's bytes exactly
as stored, by sigstore's conventions for a key and SHA-256 (sigstore/sigstore's
LoadVerifier, as containers/image calls it): ECDSA over SHA-256 with an ASN.1 DER
signature, RSA PKCS#1 v1.5 with SHA-256, Ed25519 over the payload itself.

Keyless signatures (Fulcio certificates, Rekor bundles) are not verified here.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from cryptography.exceptions import InvalidSignature as _BadSignature
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from osbuilder.errors import UserError
from osbuilder.trust.bounded import read_bounded
from osbuilder.trust.payload import (
    COSIGN_TYPE,
    MAX_PAYLOAD_SIZE,
    InvalidSignature,
    SignedPayload,
    check_digest,
    parse_payload,
    refuse_oversized,
)

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PAYLOAD_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"

# An RSA-16384 signature is 2 KiB, 2.7 KiB in base64: anything far larger is not one.
MAX_SIGNATURE_SIZE = 16 * 1024
MAX_KEY_FILE_SIZE = 64 * 1024

_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_MIN_RSA_BITS = 2048

PublicKey: TypeAlias = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey

_DIGEST = re.compile(r"(sha256|sha384|sha512):([0-9a-f]+)")


@dataclass(frozen=True)
class SigstoreKey:
    """A public key a policy trusts, with where it came from for messages."""

    key: PublicKey
    origin: str


class InvalidKey(UserError):
    """A public key file or value that is not a usable sigstore key."""


def sigstore_tag(manifest_digest: str) -> str:
    """The tag cosign attaches the signatures of `manifest_digest` under: sha256-HEX.sig."""
    match = _DIGEST.fullmatch(manifest_digest)
    if match is None:
        raise ValueError(f"malformed manifest digest {manifest_digest!r}")
    return f"{match[1]}-{match[2]}.sig"


def load_public_key(pem: bytes, origin: str) -> SigstoreKey:
    """Parse a PEM public key as `cosign generate-key-pair` (or openssl) writes it.

    `origin` (a path, "keyData") names the key in errors.
    """
    if len(pem) > MAX_KEY_FILE_SIZE:
        raise InvalidKey(f"{origin}: expected a PEM public key, found {len(pem)} bytes")
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidKey(f"{origin}: expected a PEM public key: {exc}") from None
    problem = key_kind_problem(key, "public")
    if problem is not None:
        raise InvalidKey(f"{origin}: {problem}")
    assert isinstance(key, PublicKey)  # (what key_kind_problem accepts)
    return SigstoreKey(key, origin)


def key_kind_problem(key: object, which: str) -> str | None:
    """Why `key` (`which`: "public" or "private") is not one sigstore signs or verifies
    with, or None: ECDSA on P-256/384/521, RSA of 2048 bits or more, Ed25519."""
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, _CURVES):
            return f"expected an ECDSA key on P-256, P-384 or P-521, found curve {key.curve.name}"
    elif isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        if key.key_size < _MIN_RSA_BITS:
            return f"expected an RSA key of at least {_MIN_RSA_BITS} bits, found {key.key_size}"
    elif not isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return f"expected an ECDSA, Ed25519 or RSA {which} key, found {type(key).__name__}"
    return None


def load_public_key_file(path: Path) -> SigstoreKey:
    """load_public_key of a file, read with a bound."""
    pem = read_bounded(path, MAX_KEY_FILE_SIZE, "the public key", InvalidKey)
    return load_public_key(pem, str(path))


def _verifies(key: PublicKey, signature: bytes, payload: bytes) -> bool:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            # SHA-256 whatever the curve: sigstore's verifier is loaded with a fixed hash.
            key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(signature, payload)
    except _BadSignature:
        return False
    return True


def verify_sigstore_signature(
    payload: bytes, signature: str, keys: Sequence[SigstoreKey]
) -> tuple[SignedPayload, SigstoreKey]:
    """Check `signature` (the layer's base64 annotation) over `payload` (the layer's
    bytes) with each of `keys`; on the first that verifies, parse the payload.

    Returns the payload and the key that verified it; InvalidSignature otherwise. The
    payload's digest is not checked here: see verify_sigstore.
    """
    if not keys:
        raise InvalidSignature("no public key to verify the sigstore signature with")
    refuse_oversized("sigstore payload", len(payload), MAX_PAYLOAD_SIZE)
    refuse_oversized(SIGNATURE_ANNOTATION, len(signature), MAX_SIGNATURE_SIZE, "characters")
    try:
        raw = base64.b64decode(signature, validate=True)
        # Python ignores excess padding, Go's StdEncoding does not: one reading only.
        if base64.b64encode(raw).decode() != signature:
            raise ValueError("not canonical")
    except (binascii.Error, ValueError):
        raise InvalidSignature(
            f"{SIGNATURE_ANNOTATION}: expected base64, found {signature[:40]!r}"
        ) from None
    for key in keys:
        if _verifies(key.key, raw, payload):
            # Parsed only once verified: until then it is anyone's JSON.
            return parse_payload(payload, signature_type=COSIGN_TYPE), key
    tried = ", ".join(key.origin for key in keys)
    raise InvalidSignature(
        f"the sigstore signature does not verify with the trusted keys ({tried})"
    )


def verify_sigstore(
    payload: bytes, signature: str, keys: Sequence[SigstoreKey], expected_digest: str
) -> tuple[SignedPayload, SigstoreKey]:
    """verify_sigstore_signature, then the payload must sign `expected_digest`.

    The identity (docker-reference) is the policy's to judge (signedIdentity).
    """
    verified, key = verify_sigstore_signature(payload, signature, keys)
    return check_digest(verified, expected_digest), key
