"""Sigstore (cosign) signatures: cosign's own, from containers/image's fixtures, and
signatures the tests make with each key type cosign supports."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, x25519

from osbuilder.trust.payload import COSIGN_TYPE, InvalidSignature
from osbuilder.trust.sigstore import (
    MAX_SIGNATURE_SIZE,
    SIGNATURE_ANNOTATION,
    InvalidKey,
    SigstoreKey,
    load_public_key,
    load_public_key_file,
    sigstore_tag,
    verify_sigstore,
    verify_sigstore_signature,
)

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "trust" / "containers-image"
SIGNED_DIGEST = "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00"
SIGNED_REFERENCE = "192.168.64.2:5000/cosign-signed-single-sample"


def fixture_layer(name: str) -> tuple[bytes, str]:
    """The payload and signature annotation of a `.sig` layer, from containers/image's
    storage format: b"\\0sigstore-json\\n" then {"mimeType", "payload", "annotations"}."""
    header, _, body = (FIXTURES / name).read_bytes().partition(b"\n")
    assert header == b"\0sigstore-json"
    layer = json.loads(body)
    return base64.b64decode(layer["payload"]), layer["annotations"][SIGNATURE_ANNOTATION]


def key(name: str) -> SigstoreKey:
    return load_public_key_file(FIXTURES / name)


def test_the_fixture_manifest_is_the_signed_one() -> None:
    manifest = (FIXTURES / "dir-img-cosign-valid" / "manifest.json").read_bytes()
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == SIGNED_DIGEST


@pytest.mark.parametrize(
    "name", ["dir-img-cosign-valid/signature-1", "dir-img-cosign-valid-2/signature-2"]
)
def test_cosign_signatures_verify_with_cosign_pub(name: str) -> None:
    payload, signature = fixture_layer(name)
    trusted = key("cosign.pub")
    verified, by = verify_sigstore(payload, signature, [key("cosign2.pub"), trusted], SIGNED_DIGEST)
    assert verified.docker_reference == SIGNED_REFERENCE
    assert verified.manifest_digest == SIGNED_DIGEST
    assert by.origin == trusted.origin


def test_another_key_refuses_them() -> None:
    payload, signature = fixture_layer("dir-img-cosign-valid/signature-1")
    with pytest.raises(
        InvalidSignature, match=r"does not verify with the trusted keys .*cosign2\.pub"
    ):
        verify_sigstore(
            payload, signature, [key("cosign2.pub"), key("some-rsa-key.pub")], SIGNED_DIGEST
        )


def test_a_signature_by_an_unknown_key_is_refused() -> None:
    payload, signature = fixture_layer("unknown-cosign-key.signature")
    with pytest.raises(InvalidSignature, match="does not verify"):
        verify_sigstore(payload, signature, [key("cosign.pub"), key("cosign2.pub")], SIGNED_DIGEST)


def test_a_modified_payload_is_refused() -> None:
    payload, signature = fixture_layer("dir-img-cosign-valid/signature-1")
    modified = payload.replace(b"single-sample", b"single-sampla")
    assert modified != payload
    with pytest.raises(InvalidSignature, match="does not verify"):
        verify_sigstore(modified, signature, [key("cosign.pub")], SIGNED_DIGEST)
    # Even a change JSON ignores: the signature is over the bytes.
    with pytest.raises(InvalidSignature, match="does not verify"):
        verify_sigstore(payload + b" ", signature, [key("cosign.pub")], SIGNED_DIGEST)


def test_a_signature_for_another_manifest_says_so() -> None:
    manifest = (FIXTURES / "dir-img-cosign-modified-manifest" / "manifest.json").read_bytes()
    other = "sha256:" + hashlib.sha256(manifest).hexdigest()
    payload, signature = fixture_layer("dir-img-cosign-valid/signature-1")
    with pytest.raises(InvalidSignature) as error:
        verify_sigstore(payload, signature, [key("cosign.pub")], other)
    assert str(error.value) == f"the signature is for manifest {SIGNED_DIGEST}, expected {other}"


def test_an_attachment_that_is_no_signature_is_refused() -> None:
    # A valid signature's annotation on a payload it does not sign.
    payload, signature = fixture_layer("dir-img-cosign-other-attachment/signature-1")
    with pytest.raises(InvalidSignature, match="does not verify"):
        verify_sigstore(payload, signature, [key("cosign.pub")], SIGNED_DIGEST)


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        ("not base64!", "expected base64"),
        ("QUJD=", "expected base64"),
        ("A" * (MAX_SIGNATURE_SIZE + 4), f"expected at most {MAX_SIGNATURE_SIZE} characters"),
        ("", "does not verify"),
    ],
)
def test_malformed_signatures_are_refused(signature: str, message: str) -> None:
    payload, _ = fixture_layer("dir-img-cosign-valid/signature-1")
    with pytest.raises(InvalidSignature, match=message):
        verify_sigstore(payload, signature, [key("cosign.pub")], SIGNED_DIGEST)


def test_no_keys_is_an_error_not_an_accept() -> None:
    payload, signature = fixture_layer("dir-img-cosign-valid/signature-1")
    with pytest.raises(InvalidSignature, match="no public key"):
        verify_sigstore_signature(payload, signature, [])


# --- each key type, with signatures made as cosign makes them --------------------------------

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


def cosign_payload(digest: str) -> bytes:
    critical = {
        "identity": {"docker-reference": "registry.example/osbuilder/redis"},
        "image": {"docker-manifest-digest": digest},
        "type": COSIGN_TYPE,
    }
    return json.dumps({"critical": critical, "optional": None}, separators=(",", ":")).encode()


def sign(private: PrivateKey, data: bytes) -> str:
    if isinstance(private, ec.EllipticCurvePrivateKey):
        raw = private.sign(data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(private, rsa.RSAPrivateKey):
        raw = private.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        raw = private.sign(data)
    return base64.b64encode(raw).decode()


def public_pem(private: PrivateKey) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: ec.generate_private_key(ec.SECP256R1()),
        lambda: ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate,
        lambda: rsa.generate_private_key(65537, 2048),
    ],
    ids=["p256", "p384", "ed25519", "rsa"],
)
def test_each_key_type_verifies_its_signatures(make: Callable[[], PrivateKey]) -> None:
    private = make()
    digest = "sha256:" + "12" * 32
    payload = cosign_payload(digest)
    trusted = load_public_key(public_pem(private), "keyData")
    verified, by = verify_sigstore(payload, sign(private, payload), [trusted], digest)
    assert verified.manifest_digest == digest and by is trusted
    stranger = load_public_key(public_pem(ec.generate_private_key(ec.SECP256R1())), "other")
    with pytest.raises(InvalidSignature, match=r"trusted keys \(other\)"):
        verify_sigstore(payload, sign(private, payload), [stranger], digest)


def test_a_verified_payload_of_the_wrong_type_is_refused() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    payload = cosign_payload("sha256:" + "12" * 32).replace(
        COSIGN_TYPE.encode(), b"atomic container signature"
    )
    trusted = load_public_key(public_pem(private), "keyData")
    with pytest.raises(InvalidSignature, match=r"critical\.type: expected 'cosign container image"):
        verify_sigstore_signature(payload, sign(private, payload), [trusted])


def x25519_pem() -> bytes:
    return (
        x25519.X25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        (b"garbage", "keyData: expected a PEM public key"),
        (public_pem(ec.generate_private_key(ec.SECP256K1())), "found curve secp256k1"),
        (public_pem(rsa.generate_private_key(65537, 1024)), "at least 2048 bits, found 1024"),
        (x25519_pem(), "found X25519PublicKey"),
        (b"x" * (65 * 1024), "expected a PEM public key, found 66560 bytes"),
    ],
)
def test_unusable_keys_are_refused(pem: bytes, message: str) -> None:
    with pytest.raises(InvalidKey, match=message):
        load_public_key(pem, "keyData")


def test_an_unreadable_key_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidKey, match="cannot read the public key: No such file"):
        load_public_key_file(tmp_path / "missing.pub")


def test_sigstore_tag() -> None:
    assert sigstore_tag(SIGNED_DIGEST) == f"sha256-{SIGNED_DIGEST[7:]}.sig"
    with pytest.raises(ValueError, match="malformed manifest digest"):
        sigstore_tag("latest")
