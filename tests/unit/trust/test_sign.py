"""Signing without gpg: payloads as cosign and containers/image write them, sigstore
signatures osbuilder's verifier accepts, and the `.sig` manifest cosign pushes."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from osbuilder import __version__
from osbuilder.errors import UserError
from osbuilder.oci.mediatypes import DOCKER_CONFIG, DOCKER_MANIFEST, OCI_CONFIG, OCI_MANIFEST
from osbuilder.trust.keys import generate_key_pair, load_private_key
from osbuilder.trust.payload import (
    COSIGN_TYPE,
    SIMPLE_SIGNING_TYPE,
    InvalidSignature,
    parse_payload,
)
from osbuilder.trust.sign import (
    MAX_SIGNATURE_LAYERS,
    InvalidSignatureManifest,
    SignatureManifest,
    append_sigstore_signature,
    go_json,
    payload_bytes,
    sign_sigstore,
    sigstore_signature_manifest,
)
from osbuilder.trust.sigstore import (
    PAYLOAD_MEDIA_TYPE,
    SIGNATURE_ANNOTATION,
    SigstoreKey,
    load_public_key_file,
    verify_sigstore,
)

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "trust" / "containers-image"
# The image containers/image's cosign fixtures sign (see test_sigstore.py).
FIXTURE_DIGEST = "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00"
FIXTURE_REFERENCE = "192.168.64.2:5000/cosign-signed-single-sample"

REFERENCE = "registry.example/osbuilder/redis:7"
DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fixture_payload(name: str) -> bytes:
    _, _, body = (FIXTURES / name).read_bytes().partition(b"\n")
    return base64.b64decode(json.loads(body)["payload"])


def test_a_cosign_payload_is_the_bytes_cosign_wrote() -> None:
    made = payload_bytes(FIXTURE_REFERENCE, FIXTURE_DIGEST, COSIGN_TYPE)
    assert made == fixture_payload("dir-img-cosign-valid/signature-1")
    assert made == (
        b'{"critical":{"identity":{"docker-reference":"192.168.64.2:5000/cosign-signed-single-'
        b'sample"},"image":{"docker-manifest-digest":"' + FIXTURE_DIGEST.encode() + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )


def test_a_cosign_payload_is_the_same_every_time() -> None:
    first = payload_bytes(REFERENCE, DIGEST, COSIGN_TYPE)
    time.sleep(1.1)  # no timestamp in it: a second later, the same bytes
    assert payload_bytes(REFERENCE, DIGEST, COSIGN_TYPE) == first
    parsed = parse_payload(first, signature_type=COSIGN_TYPE)
    assert (parsed.docker_reference, parsed.manifest_digest) == (REFERENCE, DIGEST)
    assert (parsed.creator, parsed.timestamp) == (None, None)


def test_a_simple_payload_is_what_containers_image_writes() -> None:
    made = payload_bytes(REFERENCE, DIGEST, SIMPLE_SIGNING_TYPE, timestamp=1_700_000_000)
    # containers/image's untrustedSignature.MarshalJSON: Go maps, keys sorted, compact.
    assert made == (
        b'{"critical":{"identity":{"docker-reference":"' + REFERENCE.encode() + b'"},'
        b'"image":{"docker-manifest-digest":"' + DIGEST.encode() + b'"},'
        b'"type":"atomic container signature"},'
        b'"optional":{"creator":"osbuilder ' + __version__.encode() + b'","timestamp":1700000000}}'
    )


def test_a_simple_payload_says_who_and_when_by_default() -> None:
    before = int(time.time())
    parsed = parse_payload(payload_bytes(REFERENCE, DIGEST, SIMPLE_SIGNING_TYPE))
    assert parsed.creator == f"osbuilder {__version__}"
    assert parsed.timestamp is not None and before <= parsed.timestamp <= time.time()
    parsed = parse_payload(
        payload_bytes(REFERENCE, DIGEST, SIMPLE_SIGNING_TYPE, creator="ci", timestamp=5)
    )
    assert (parsed.creator, parsed.timestamp) == ("ci", 5)


def test_a_cosign_payload_takes_an_optional_creator_and_time() -> None:
    made = payload_bytes(REFERENCE, DIGEST, COSIGN_TYPE, creator="ci", timestamp=7)
    assert made.endswith(b'"optional":{"creator":"ci","timestamp":7}}')
    assert parse_payload(made, signature_type=COSIGN_TYPE).timestamp == 7


@pytest.mark.parametrize(
    ("reference", "manifest_digest", "message"),
    [
        ("", DIGEST, "the image name (docker-reference) is empty"),
        (REFERENCE, "sha256:ABC", "cannot sign 'sha256:ABC': expected a manifest digest"),
        (REFERENCE, "latest", "expected a manifest digest sha256:<64 hex digits>"),
    ],
)
def test_what_cannot_be_signed_is_one_line(
    reference: str, manifest_digest: str, message: str
) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        payload_bytes(reference, manifest_digest, COSIGN_TYPE)


def test_an_unknown_signature_type_is_a_bug() -> None:
    with pytest.raises(ValueError, match="unknown signature type"):
        payload_bytes(REFERENCE, DIGEST, "atomic")


def test_json_as_go_writes_it() -> None:
    assert go_json({"b": "<&>", "a": ["é", "\u2028"], "n": None}) == (
        '{"b":"\\u003c\\u0026\\u003e","a":["é","\\u2028"],"n":null}'.encode()
    )


def test_a_sigstore_signature_verifies_with_the_generated_public_key(tmp_path: Path) -> None:
    files = generate_key_pair(tmp_path / "signer", b"pw")
    payload = payload_bytes(REFERENCE, DIGEST, COSIGN_TYPE)
    signature = sign_sigstore(payload, load_private_key(files.private, b"pw"))
    assert base64.b64encode(base64.b64decode(signature)) == signature.encode()
    public = load_public_key_file(files.public)
    verified, by = verify_sigstore(payload, signature, [public], DIGEST)
    assert verified.docker_reference == REFERENCE
    assert by is public
    with pytest.raises(InvalidSignature, match="is for manifest"):
        verify_sigstore(payload, signature, [public], OTHER_DIGEST)
    stranger = load_public_key_file(generate_key_pair(tmp_path / "stranger", b"").public)
    with pytest.raises(InvalidSignature, match="does not verify"):
        verify_sigstore(payload, signature, [stranger], DIGEST)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ec.generate_private_key(ec.SECP384R1()),
        lambda: rsa.generate_private_key(65537, 2048),
        ed25519.Ed25519PrivateKey.generate,
    ],
)
def test_every_key_type_the_verifier_takes_signs(make: Any) -> None:
    key = make()
    payload = payload_bytes(REFERENCE, DIGEST, COSIGN_TYPE)
    trusted = SigstoreKey(key.public_key(), "test key")
    verify_sigstore(payload, sign_sigstore(payload, key), [trusted], DIGEST)


def signed(key: ec.EllipticCurvePrivateKey, manifest_digest: str = DIGEST) -> tuple[bytes, str]:
    payload = payload_bytes(REFERENCE, manifest_digest, COSIGN_TYPE)
    return payload, sign_sigstore(payload, key)


def test_the_signature_manifest_is_the_one_cosign_pushes() -> None:
    payload, signature = signed(ec.generate_private_key(ec.SECP256R1()))
    image = sigstore_signature_manifest([(payload, signature)])
    # go-containerregistry's empty image with one layer appended, as cosign builds it.
    assert image.config == (
        b'{"architecture":"","created":"0001-01-01T00:00:00Z",'
        b'"history":[{"created":"0001-01-01T00:00:00Z"}],"os":"",'
        b'"rootfs":{"type":"layers","diff_ids":["' + digest(payload).encode() + b'"]},'
        b'"config":{}}'
    )
    assert image.manifest == go_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "size": len(image.config),
                "digest": digest(image.config),
            },
            "layers": [
                {
                    "mediaType": PAYLOAD_MEDIA_TYPE,
                    "size": len(payload),
                    "digest": digest(payload),
                    "annotations": {SIGNATURE_ANNOTATION: signature},
                }
            ],
        }
    )
    assert image.layers == [payload]
    assert image.digest == digest(image.manifest)


def verify_every_layer(image: SignatureManifest, blobs: dict[str, bytes], key: Any) -> int:
    """What a verifier does with a `.sig` manifest: each layer's blob and annotation."""
    manifest = json.loads(image.manifest)
    assert manifest["config"]["digest"] == digest(image.config)
    config = json.loads(image.config)
    layers = manifest["layers"]
    assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in layers]
    assert len(config["history"]) == len(layers)
    for layer in layers:
        payload = blobs[layer["digest"]]
        assert layer["size"] == len(payload)
        parsed = parse_payload(payload, signature_type=COSIGN_TYPE)
        verify_sigstore(
            payload,
            layer["annotations"][SIGNATURE_ANNOTATION],
            [SigstoreKey(key.public_key(), "key")],
            parsed.manifest_digest,
        )
    return len(layers)


def test_a_signature_is_appended_as_cosign_appends() -> None:
    first_key, second_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    payload, signature = signed(first_key)
    image = sigstore_signature_manifest([(payload, signature)])
    blobs = {digest(payload): payload}
    other_payload, other_signature = signed(first_key, OTHER_DIGEST)
    appended = append_sigstore_signature(
        image.manifest, image.config, other_payload, other_signature
    )
    assert appended is not None
    assert appended.layers == [other_payload]  # the first is in the registry already
    blobs[digest(other_payload)] = other_payload
    assert verify_every_layer(appended, blobs, first_key) == 2
    # What two signatures at once make is what appending them one at a time makes.
    both = sigstore_signature_manifest([(payload, signature), (other_payload, other_signature)])
    assert (both.manifest, both.config) == (appended.manifest, appended.config)
    # Another key's signature of the same payload is another signature.
    again = sign_sigstore(payload, second_key)
    third = append_sigstore_signature(appended.manifest, appended.config, payload, again)
    assert third is not None
    assert [layer["digest"] for layer in json.loads(third.manifest)["layers"]] == [
        digest(payload),
        digest(other_payload),
        digest(payload),
    ]


def test_a_signature_already_there_is_not_added_twice() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    payload, signature = signed(key)
    image = sigstore_signature_manifest([(payload, signature)])
    assert append_sigstore_signature(image.manifest, image.config, payload, signature) is None
    # ECDSA signs differently each time: cosign tells the same signer by verifying.
    resigned = sign_sigstore(payload, key)
    assert resigned != signature
    assert (
        append_sigstore_signature(
            image.manifest, image.config, payload, resigned, key=key.public_key()
        )
        is None
    )
    assert append_sigstore_signature(image.manifest, image.config, payload, resigned) is not None


def test_a_docker_media_type_manifest_gets_the_signature_too() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    payload, signature = signed(key)
    image = sigstore_signature_manifest([(payload, signature)])
    manifest = json.loads(image.manifest)
    manifest["mediaType"], manifest["config"]["mediaType"] = DOCKER_MANIFEST, DOCKER_CONFIG
    other_payload, other_signature = signed(key, OTHER_DIGEST)
    appended = append_sigstore_signature(
        go_json(manifest), image.config, other_payload, other_signature
    )
    assert appended is not None
    assert json.loads(appended.manifest)["mediaType"] == DOCKER_MANIFEST
    blobs = {digest(payload): payload, digest(other_payload): other_payload}
    assert verify_every_layer(appended, blobs, key) == 2


def test_a_config_that_is_not_an_image_config_is_kept() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    payload, signature = signed(key)
    config = b"{}"
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "size": 2,
            "digest": digest(config),
        },
        "layers": [],
    }
    appended = append_sigstore_signature(go_json(manifest), config, payload, signature)
    assert appended is not None and appended.config == config
    document = json.loads(appended.manifest)
    assert document["config"]["digest"] == digest(config)
    assert len(document["layers"]) == 1


def test_unknown_config_fields_are_kept_in_gos_order() -> None:
    payload, signature = signed(ec.generate_private_key(ec.SECP256R1()))
    image = sigstore_signature_manifest([(payload, signature)])
    config = json.loads(image.config)
    config = {"x-extra": 1, **config, "created": "2023-02-17T09:25:33Z"}  # --record-creation
    config_bytes = go_json(config)
    manifest = json.loads(image.manifest)
    manifest["config"].update(size=len(config_bytes), digest=digest(config_bytes))
    other_payload, other_signature = signed(ec.generate_private_key(ec.SECP256R1()), OTHER_DIGEST)
    appended = append_sigstore_signature(
        go_json(manifest), config_bytes, other_payload, other_signature
    )
    assert appended is not None
    result = json.loads(appended.config)
    assert list(result) == [
        "architecture", "created", "history", "os", "rootfs", "config", "x-extra",
    ]  # fmt: skip
    assert result["created"] == "2023-02-17T09:25:33Z"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m, c: (b"[]", c), "expected a JSON object"),
        (lambda m, c: (b"{", c), "not valid JSON"),
        (lambda m, c: (m, b'{"other":1}'), "its config is 'sha256:"),
        (
            lambda m, c: (m.replace(b'"schemaVersion":2', b'"schemaVersion":1'), c),
            "expected an OCI or Docker image manifest",
        ),
        (
            lambda m, c: (m.replace(OCI_MANIFEST.encode(), b"application/vnd.oci.image.index"), c),
            "expected an OCI or Docker image manifest, found 'application/vnd.oci.image.index'",
        ),
        (lambda m, c: (m.replace(b'"layers":[', b'"layers":[1,'), c), "not descriptors"),
        (
            lambda m, c: (m.replace(b'{"schemaVersion":2', b'{"schemaVersion":2,"layers":[]'), c),
            "duplicate key 'layers'",
        ),
    ],
)
def test_a_malformed_signature_manifest_is_one_line(change: Any, message: str) -> None:
    payload, signature = signed(ec.generate_private_key(ec.SECP256R1()))
    image = sigstore_signature_manifest([(payload, signature)])
    manifest, config = change(image.manifest, image.config)
    other_payload, _ = signed(ec.generate_private_key(ec.SECP256R1()), OTHER_DIGEST)
    with pytest.raises(InvalidSignatureManifest, match=message) as error:
        append_sigstore_signature(manifest, config, other_payload, "c2ln")
    assert "\n" not in str(error.value)


def test_no_more_signatures_than_cosign_reads() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    payload, signature = signed(key)
    image = sigstore_signature_manifest([(payload, signature)] * MAX_SIGNATURE_LAYERS)
    other_payload, other_signature = signed(key, OTHER_DIGEST)
    with pytest.raises(InvalidSignatureManifest, match="holds 1000 signatures already"):
        append_sigstore_signature(image.manifest, image.config, other_payload, other_signature)
    # Still, one already there is found, and nothing needs adding.
    assert append_sigstore_signature(image.manifest, image.config, payload, signature) is None


def test_an_empty_signature_manifest_is_a_bug() -> None:
    with pytest.raises(ValueError, match="at least one"):
        sigstore_signature_manifest([])
