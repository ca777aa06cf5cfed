"""containers-policy.json(5): which signatures an image needs, by where it comes from.

`load_policy` reads the file skopeo, podman and CRI-O read (`--policy FILE`, else
`$HOME/.config/containers/policy.json`, else `/etc/containers/policy.json`) as
strictly as containers/image does: unknown or duplicate keys, an empty requirement
list or a missing `default` refuse the whole file. `requirements_for` picks the
requirements of the most specific `docker` scope for an image.

Requirements osbuilder cannot check (sigstore's Fulcio/PKI certificates and Rekor
keys, keyless signing) are refused with the field's name: accepting them would
accept images nobody checked.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from osbuilder.oci.reference import ImageReference
from osbuilder.trust.identity import (
    IDENTITY_TYPES,
    MatchRepoDigestOrExact,
    PolicyModel,
    SignedIdentity,
    policy_form,
)
from osbuilder.trust.policyfile import (
    SYSTEM_POLICY,
    USER_POLICY,
    PolicyError,
    default_policy_path,
    read_policy_file,
)
from osbuilder.trust.strictjson import InvalidJSON, load_strict

DOCKER_TRANSPORT = "docker"

# sigstoreSigned fields of keyless and certificate-based signing, which osbuilder does
# not verify; with what each one is.
_UNSUPPORTED_SIGSTORE_FIELDS = {
    "fulcio": "Fulcio certificates (keyless signing)",
    "pki": "X.509 certificates of a private PKI",
    "rekorPublicKeyPath": "Rekor transparency-log keys",
    "rekorPublicKeyPaths": "Rekor transparency-log keys",
    "rekorPublicKeyData": "Rekor transparency-log keys",
    "rekorPublicKeyDatas": "Rekor transparency-log keys",
}


class InsecureAcceptAnything(PolicyModel):
    type: Literal["insecureAcceptAnything"] = "insecureAcceptAnything"


class Reject(PolicyModel):
    type: Literal["reject"] = "reject"


class _KeyedRequirement(PolicyModel):
    """A requirement with keys from exactly one source, and the identity signatures claim."""

    key_path: str | None = Field(default=None, alias="keyPath")
    key_paths: list[str] | None = Field(default=None, alias="keyPaths")
    key_data: bytes | None = Field(default=None, alias="keyData")
    signed_identity: SignedIdentity = Field(
        default_factory=MatchRepoDigestOrExact, alias="signedIdentity"
    )

    @field_validator("key_data", mode="before")
    @classmethod
    def _base64(cls, value: object) -> object:
        # JSON has no bytes: keyData is base64, as Go's encoding/json writes []byte.
        if not isinstance(value, str):
            raise ValueError("expected a base64 string")
        return _decode_base64(value)

    @field_validator("key_paths")
    @classmethod
    def _not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("must name at least one key file")
        return value

    @model_validator(mode="before")
    @classmethod
    def _one_key_source(cls, data: Any) -> Any:
        if isinstance(data, dict):
            present = [key for key in cls._key_fields() if key in data]
            if len(present) != 1:
                found = ", ".join(present) if present else "none"
                raise ValueError(
                    f"exactly one of {', '.join(cls._key_fields())} is required (found {found})"
                )
        return data

    @classmethod
    def _key_fields(cls) -> tuple[str, ...]:
        return ("keyPath", "keyPaths", "keyData")


class SignedBy(_KeyedRequirement):
    """Simple signing: an OpenPGP signature by a key of the given keyrings."""

    type: Literal["signedBy"] = "signedBy"
    key_type: Literal["GPGKeys"] = Field(alias="keyType")


class SigstoreSigned(_KeyedRequirement):
    """A sigstore (cosign) signature by one of the given public keys."""

    type: Literal["sigstoreSigned"] = "sigstoreSigned"
    key_datas: list[bytes] | None = Field(default=None, alias="keyDatas")

    @field_validator("key_datas", mode="before")
    @classmethod
    def _base64_list(cls, value: object) -> object:
        if not isinstance(value, list):
            raise ValueError("expected a list of base64 strings")
        if not value:
            raise ValueError("must hold at least one key")
        if not all(isinstance(item, str) for item in value):
            raise ValueError("expected a list of base64 strings")
        return [_decode_base64(item) for item in value]

    @classmethod
    def _key_fields(cls) -> tuple[str, ...]:
        return ("keyPath", "keyPaths", "keyData", "keyDatas")


Requirement = InsecureAcceptAnything | Reject | SignedBy | SigstoreSigned

_REQUIREMENT_TYPES: dict[str, type[PolicyModel]] = {
    "insecureAcceptAnything": InsecureAcceptAnything,
    "reject": Reject,
    "signedBy": SignedBy,
    "sigstoreSigned": SigstoreSigned,
}


class Policy(PolicyModel):
    """A policy: the global default and, by transport, requirements by scope."""

    default: list[Requirement]
    transports: dict[str, dict[str, list[Requirement]]] = Field(default_factory=dict)
    source: Path | None = None  # the file it was read from, for messages


def load_policy(path: Path | None = None, *, home: Path | None = None) -> Policy:
    """The policy at `path` (`--policy FILE`), else at the default location."""
    if path is None:
        path = default_policy_path(home)
        if not path.exists():
            raise PolicyError(
                f"no signature policy: neither {(home or Path('~')) / USER_POLICY} nor "
                f"{SYSTEM_POLICY} exists (give one with --policy FILE)"
            )
    return parse_policy(read_policy_file(path), path)


def parse_policy(raw: bytes | str, source: Path) -> Policy:
    """The policy in `raw`, read from `source`; PolicyError naming the first problem."""
    try:
        data = load_strict(raw)
    except InvalidJSON as exc:
        raise PolicyError(f"{source}: {exc}") from None
    try:
        return _policy_from_data(data, source)
    except _Invalid as exc:
        raise PolicyError(f"{source}: {exc.path or '(top level)'}: {exc.message}") from None


def requirements_for(policy: Policy, reference: ImageReference) -> list[Requirement]:
    """The requirements for pulling `reference` from a registry: those of the most specific
    `docker` scope that exists (see `docker_scopes`), else the transport's `""`, else
    the global default. Only the most specific match applies, as in containers/image."""
    scopes = policy.transports.get(DOCKER_TRANSPORT, {})
    for scope in [*docker_scopes(reference), ""]:
        if scope in scopes:
            return scopes[scope]
    return policy.default


def docker_scopes(reference: ImageReference) -> list[str]:
    """The docker scopes that can apply to `reference`, most specific first:
    `host/ns/repo:tag` (or `@digest`), `host/ns/repo`, `host/ns`, `host[:port]`, then
    `*.sub.domain`, `*.domain`... of the host without its port."""
    reference = policy_form(reference)
    scopes = [str(reference)]
    name = reference.name
    while True:  # the repository, its namespaces, and last the registry host[:port]
        scopes.append(name)
        if "/" not in name:
            break
        name = name.rsplit("/", 1)[0]
    host = name.split(":", 1)[0]  # (a wildcard never has a port: example.com:5000 → *.com)
    while "." in host:
        host = host.split(".", 1)[1]
        scopes.append(f"*.{host}")
    return scopes


# --- reading the JSON -------------------------------------------------------------------


class _Invalid(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path, self.message = path, message


def _policy_from_data(data: Any, source: Path) -> Policy:
    _expect_object(data, "", "the policy")
    for key in data:
        if key not in ("default", "transports"):
            raise _Invalid(key, "unknown field (expected 'default' and 'transports')")
    if "default" not in data:
        raise _Invalid("default", "missing: the global default requirements are mandatory")
    default = _requirements(data["default"], "default")
    transports: dict[str, dict[str, list[Requirement]]] = {}
    raw_transports = data.get("transports", {})
    _expect_object(raw_transports, "transports", "transports")
    for transport, raw_scopes in raw_transports.items():
        transport_path = f"transports.{transport}"
        _expect_object(raw_scopes, transport_path, "scopes")
        transports[transport] = {
            scope: _requirements(requirements, f"{transport_path}[{json.dumps(scope)}]")
            for scope, requirements in raw_scopes.items()
        }
    return Policy(default=default, transports=transports, source=source)


def _expect_object(value: Any, path: str, what: str) -> None:
    if not isinstance(value, dict):
        raise _Invalid(path, f"{what} must be a JSON object, got {_json_kind(value)}")


def _requirements(value: Any, path: str) -> list[Requirement]:
    if not isinstance(value, list):
        raise _Invalid(path, f"expected a list of requirements, got {_json_kind(value)}")
    if not value:
        # containers/image: an empty list would accept anything by accident.
        raise _Invalid(path, 'must not be empty (use [{"type": "insecureAcceptAnything"}])')
    return [_requirement(item, f"{path}[{index}]") for index, item in enumerate(value)]


def _requirement(value: Any, path: str) -> Requirement:
    model = _model_for(value, path, _REQUIREMENT_TYPES, "requirement")
    if model is SigstoreSigned:
        for key in value:
            if key in _UNSUPPORTED_SIGSTORE_FIELDS:
                raise _Invalid(
                    f"{path}.{key}",
                    f"not supported by osbuilder ({_UNSUPPORTED_SIGSTORE_FIELDS[key]}); "
                    "use keyPath, keyPaths, keyData or keyDatas with a public key",
                )
    if "signedIdentity" in value:
        _model_for(value["signedIdentity"], f"{path}.signedIdentity", IDENTITY_TYPES, "identity")
    try:
        requirement = cast(Requirement, model.model_validate(value))
    except ValidationError as exc:
        error = exc.errors()[0]
        raise _Invalid(path + _location(error["loc"]), _message(error)) from None
    return requirement


def _location(loc: tuple[int | str, ...]) -> str:
    """pydantic's location in the JSON's words: `.keyPaths[0]`, `.signedIdentity.prefix`."""
    text = ""
    for index, step in enumerate(loc):
        if index > 0 and loc[index - 1] == "signedIdentity" and step in IDENTITY_TYPES:
            continue  # the discriminated union's tag, not a key of the JSON
        text += f"[{step}]" if isinstance(step, int) else f".{step}"
    return text


#: What a type error expected, by pydantic's error type.
_EXPECTED = {
    "string_type": "a string",
    "list_type": "a list",
    "bool_type": "a boolean",
    "model_type": "an object",
    "dict_type": "an object",
}


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_json_kind(error['input'])}"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "missing required field"
    if kind == "literal_error":
        return f"must be {error['ctx']['expected']}, got {error['input']!r}"
    return error["msg"].removeprefix("Value error, ")


def _model_for(
    value: Any, path: str, types: dict[str, type[PolicyModel]], what: str
) -> type[PolicyModel]:
    _expect_object(value, path, f"a {what}")
    kind = value.get("type")
    if kind not in types:
        raise _Invalid(
            f"{path}.type",
            f"unknown {what} type {kind!r} (expected one of {', '.join(types)})",
        )
    return types[kind]


def _decode_base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None


def _json_kind(value: Any) -> str:
    kinds: Sequence[tuple[type | tuple[type, ...], str]] = (
        (bool, "a boolean"),
        (dict, "an object"),
        (list, "a list"),
        (str, "a string"),
        ((int, float), "a number"),
    )
    if value is None:
        return "null"
    for python_type, name in kinds:
        if isinstance(value, python_type):
            return name
    return type(value).__name__
