"""The payload both signature formats sign: containers/image's "simple signing" JSON.

    {"critical": {"identity": {"docker-reference": REF},
                  "image": {"docker-manifest-digest": DIGEST},
                  "type": TYPE},
     "optional": {...}}

TYPE is "atomic container signature" in an OpenPGP (simple) signature and "cosign
container image signature" in a sigstore one. Parsed as containers/image parses it
(signature/simple.go, signature/internal/sigstore_payload.go): every object in
`critical` must have exactly its known keys, since a field we do not know there could
restrict what the signer meant to approve; `optional` may hold anything. Duplicate keys
are refused anywhere: two parsers picking different duplicates would see different
documents. The payload is untrusted input until its signature is verified, and parsed
only after.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from osbuilder.errors import UserError
from osbuilder.trust.strictjson import DuplicateKey, refuse_duplicate_keys

SIMPLE_SIGNING_TYPE = "atomic container signature"
COSIGN_TYPE = "cosign container image signature"

# A real payload is a few hundred bytes; the bound keeps a hostile one from costing memory.
MAX_PAYLOAD_SIZE = 4 * 1024 * 1024

# go-digest's canonical algorithms, hex in lower case as it requires.
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128}")


class InvalidSignature(UserError):
    """A signature or its payload is malformed, or does not verify."""


def refuse_oversized(what: str, size: int, limit: int, unit: str = "bytes") -> None:
    """InvalidSignature when `what` (`size` `unit`) is over `limit`: anything signature
    related is anyone's data until verified, and is measured before it is read."""
    if size > limit:
        raise InvalidSignature(f"{what}: expected at most {limit} {unit}, found {size}")


@dataclass(frozen=True)
class SignedPayload:
    """What a verified signature vouches for: this manifest digest under this name."""

    docker_reference: str
    manifest_digest: str
    creator: str | None = None
    timestamp: int | None = None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python accepts NaN and Infinity, Go does not


def _load_json(data: bytes) -> Any:
    refuse_oversized("signature payload", len(data), MAX_PAYLOAD_SIZE)
    try:
        text = data.decode("utf-8")
        return json.loads(
            text, object_pairs_hook=refuse_duplicate_keys, parse_constant=_refuse_constant
        )
    except DuplicateKey as exc:
        raise InvalidSignature(f"signature payload: duplicate key {exc.key!r}") from None
    except UnicodeDecodeError:
        raise InvalidSignature(
            "signature payload: expected UTF-8 JSON, found other bytes"
        ) from None
    except RecursionError:
        raise InvalidSignature("signature payload: JSON nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise InvalidSignature(f"signature payload: expected JSON, found an error: {exc}") from None


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _exact_object(value: Any, where: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """`value` as an object with exactly `keys`, as containers/image's ExactFields parse."""
    if not isinstance(value, dict):
        raise InvalidSignature(
            f"signature payload: {where}: expected an object, found {_describe(value)}"
        )
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise InvalidSignature(
            f"signature payload: {where}: unknown key {unknown[0]!r} (expected only "
            + ", ".join(repr(key) for key in keys)
            + ")"
        )
    missing = [key for key in keys if key not in value]
    if missing:
        raise InvalidSignature(f"signature payload: {where}: missing key {missing[0]!r}")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidSignature(
            f"signature payload: {where}: expected a non-empty string, found {_describe(value)}"
        )
    return value


def parse_payload(data: bytes, *, signature_type: str = SIMPLE_SIGNING_TYPE) -> SignedPayload:
    """Parse a signed payload whose `critical.type` must be `signature_type`.

    Raises InvalidSignature naming the field and what was expected versus found.
    """
    document = _exact_object(_load_json(data), "top level", ("critical", "optional"))
    critical = _exact_object(document["critical"], "critical", ("type", "image", "identity"))
    found_type = critical["type"]
    if found_type != signature_type:
        raise InvalidSignature(
            f"signature payload: critical.type: expected {signature_type!r}, "
            f"found {_describe(found_type)}"
        )
    image = _exact_object(critical["image"], "critical.image", ("docker-manifest-digest",))
    digest = _string(image["docker-manifest-digest"], "critical.image.docker-manifest-digest")
    if not _DIGEST.fullmatch(digest):
        raise InvalidSignature(
            "signature payload: critical.image.docker-manifest-digest: expected "
            f"sha256:<64 hex digits> (or sha384, sha512), found {_describe(digest)}"
        )
    identity = _exact_object(critical["identity"], "critical.identity", ("docker-reference",))
    reference = _string(identity["docker-reference"], "critical.identity.docker-reference")

    creator, timestamp = _optional(document["optional"], signature_type)
    return SignedPayload(reference, digest, creator, timestamp)


def _optional(value: Any, signature_type: str) -> tuple[str | None, int | None]:
    """`optional`'s creator and timestamp; its other keys are ignored, as they carry
    nothing the verification depends on (cosign puts `-a` annotations there)."""
    if value is None and signature_type == COSIGN_TYPE:
        return None, None  # cosign writes "optional": null; containers/image accepts it there
    if not isinstance(value, dict):
        raise InvalidSignature(
            f"signature payload: optional: expected an object, found {_describe(value)}"
        )
    creator = value.get("creator")
    if creator is not None and not isinstance(creator, str):
        raise InvalidSignature(
            f"signature payload: optional.creator: expected a string, found {_describe(creator)}"
        )
    timestamp = value.get("timestamp")
    if timestamp is not None:
        # JSON has only numbers: 1.7e9 is an integer, 1.5 is not (containers/image's rule).
        whole = isinstance(timestamp, int) or (
            isinstance(timestamp, float) and timestamp.is_integer()
        )
        if isinstance(timestamp, bool) or not whole:
            raise InvalidSignature(
                "signature payload: optional.timestamp: expected an integer, "
                f"found {_describe(timestamp)}"
            )
        timestamp = int(timestamp)
    return creator, timestamp


def is_manifest_digest(value: str) -> bool:
    """Whether `value` is a digest a payload can sign: sha256, sha384 or sha512, lower-case hex."""
    return _DIGEST.fullmatch(value) is not None


def check_digest(payload: SignedPayload, expected_digest: str) -> SignedPayload:
    """`payload` if it signs `expected_digest`, else InvalidSignature saying which it signs."""
    if payload.manifest_digest != expected_digest:
        raise InvalidSignature(
            f"the signature is for manifest {payload.manifest_digest}, expected {expected_digest}"
        )
    return payload
