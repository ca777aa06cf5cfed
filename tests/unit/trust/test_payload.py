"""The simple-signing payload: parsed as containers/image parses it, strictly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from osbuilder.errors import UserError
from osbuilder.trust.payload import (
    COSIGN_TYPE,
    MAX_PAYLOAD_SIZE,
    SIMPLE_SIGNING_TYPE,
    InvalidSignature,
    SignedPayload,
    check_digest,
    parse_payload,
)

DIGEST = "sha256:" + "ab" * 32
REFERENCE = "registry.example/osbuilder/redis:7"


def document(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "critical": {
            "identity": {"docker-reference": REFERENCE},
            "image": {"docker-manifest-digest": DIGEST},
            "type": SIMPLE_SIGNING_TYPE,
        },
        "optional": {"creator": "atomic 2.0.0", "timestamp": 1700000000},
    }
    doc.update(changes)
    return doc


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def test_a_simple_signing_payload_is_parsed() -> None:
    assert parse_payload(encode(document())) == SignedPayload(
        REFERENCE, DIGEST, "atomic 2.0.0", 1700000000
    )


def test_a_cosign_payload_with_null_optional_is_parsed() -> None:
    doc = document(optional=None)
    doc["critical"]["type"] = COSIGN_TYPE
    parsed = parse_payload(encode(doc), signature_type=COSIGN_TYPE)
    assert parsed == SignedPayload(REFERENCE, DIGEST)


def test_optional_may_hold_anything_else() -> None:
    parsed = parse_payload(encode(document(optional={"sig": {"x": [1]}, "timestamp": 1.7e9})))
    assert parsed.timestamp == 1700000000 and parsed.creator is None


def test_the_error_is_a_user_error() -> None:
    assert issubclass(InvalidSignature, UserError)


def critical(**changes: Any) -> bytes:
    doc = document()
    doc["critical"].update(changes)
    return encode(doc)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "expected JSON"),
        (b"\xff\xfe", "expected UTF-8 JSON"),
        (b"[]", "top level: expected an object, found an array"),
        (encode({"critical": {}}), "top level: missing key 'optional'"),
        (encode(document(extra=1)), "top level: unknown key 'extra'"),
        (critical(type="cosign container image signature"), "critical.type: expected "),
        (critical(type=None), "critical.type: expected 'atomic container signature', found null"),
        (critical(extra={}), "critical: unknown key 'extra'"),
        (critical(image={"docker-manifest-digest": DIGEST, "size": 1}), "unknown key 'size'"),
        (critical(image={}), "critical.image: missing key 'docker-manifest-digest'"),
        (critical(image=[DIGEST]), "critical.image: expected an object, found an array"),
        (
            critical(image={"docker-manifest-digest": "sha256:ABC"}),
            "docker-manifest-digest: expected sha256:<64 hex digits> (or sha384, sha512), "
            'found "sha256:ABC"',
        ),
        (
            critical(image={"docker-manifest-digest": "md5:" + "0" * 32}),
            "docker-manifest-digest: expected sha256",
        ),
        (
            critical(identity={"docker-reference": 7}),
            "docker-reference: expected a non-empty string",
        ),
        (critical(identity={"docker-reference": ""}), "docker-reference: expected a non-empty"),
        (critical(identity={"docker-reference": REFERENCE, "x": 1}), "unknown key 'x'"),
        (encode(document(optional=None)), "optional: expected an object, found null"),
        (encode(document(optional={"timestamp": 1.5})), "optional.timestamp: expected an integer"),
        (encode(document(optional={"timestamp": True})), "optional.timestamp: expected an integer"),
        (encode(document(optional={"creator": 3})), "optional.creator: expected a string"),
        (encode(document(optional={"timestamp": float("nan")})), "expected JSON"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_malformed_payloads_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(InvalidSignature) as error:
        parse_payload(data)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "text",
    [
        # at the top level, in critical, in image, in optional: anywhere
        '{"critical": {}, "critical": {}, "optional": {}}',
        '{"critical": {"type": "atomic container signature", "type": "x",'
        ' "image": {}, "identity": {}}, "optional": {}}',
        '{"critical": {"type": "atomic container signature",'
        ' "image": {"docker-manifest-digest": "a", "docker-manifest-digest": "b"},'
        ' "identity": {}}, "optional": {}}',
        '{"critical": {}, "optional": {"creator": "a", "creator": "b"}}',
    ],
)
def test_duplicate_keys_are_refused(text: str) -> None:
    with pytest.raises(InvalidSignature, match="duplicate key"):
        parse_payload(text.encode())


def test_an_oversized_payload_is_refused_before_parsing() -> None:
    data = encode(document(optional={"pad": "x" * MAX_PAYLOAD_SIZE}))
    with pytest.raises(InvalidSignature, match=f"expected at most {MAX_PAYLOAD_SIZE} bytes"):
        parse_payload(data)


def test_check_digest_says_which_digest_is_signed() -> None:
    payload = parse_payload(encode(document()))
    assert check_digest(payload, DIGEST) is payload
    other = "sha256:" + "cd" * 32
    with pytest.raises(InvalidSignature) as error:
        check_digest(payload, other)
    assert str(error.value) == f"the signature is for manifest {DIGEST}, expected {other}"
