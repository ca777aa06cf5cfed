"""containers-policy.json(5): loading as strictly as containers/image, and scope lookup."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from osbuilder.oci.reference import parse_reference
from osbuilder.trust.identity import ExactRepository, MatchRepoDigestOrExact, RemapIdentity
from osbuilder.trust.policy import (
    InsecureAcceptAnything,
    Policy,
    Reject,
    SignedBy,
    SigstoreSigned,
    docker_scopes,
    load_policy,
    parse_policy,
    requirements_for,
)
from osbuilder.trust.policyfile import SYSTEM_POLICY, PolicyError, accepts_anything

DIGEST = "sha256:" + "ab" * 32
SOURCE = Path("policy.json")
REJECT: dict[str, Any] = {"type": "reject"}
ACCEPT: dict[str, Any] = {"type": "insecureAcceptAnything"}


def parsed(data: Any) -> Policy:
    return parse_policy(json.dumps(data), SOURCE)


def error_of(data: Any) -> str:
    raw = data if isinstance(data, str) else json.dumps(data)
    with pytest.raises(PolicyError) as caught:
        parse_policy(raw, SOURCE)
    return str(caught.value)


def signed_by(**fields: Any) -> dict[str, Any]:
    return {"type": "signedBy", "keyType": "GPGKeys", **fields}


# --- loading ---------------------------------------------------------------------------


def test_the_man_pages_requirements_parse() -> None:
    key = base64.b64encode(b"keyring").decode()
    policy = parsed(
        {
            "default": [REJECT],
            "transports": {
                "docker": {
                    "docker.io/openshift": [ACCEPT],
                    "hostname:5000/myns/official": [signed_by(keyPath="/k.gpg")],
                    "hostname:5000/vendor/product": [
                        signed_by(
                            keyPaths=["/a.gpg", "/b.gpg"],
                            signedIdentity={
                                "type": "exactRepository",
                                "dockerRepository": "vendor-hostname/product/repository",
                            },
                        )
                    ],
                    "private-mirror:5000/vendor-mirror": [
                        signed_by(
                            keyData=key,
                            signedIdentity={
                                "type": "remapIdentity",
                                "prefix": "private-mirror:5000/vendor-mirror",
                                "signedPrefix": "vendor.example.com",
                            },
                        )
                    ],
                    "hostname:5000/myns/sigstore": [
                        {
                            "type": "sigstoreSigned",
                            "keyPath": "/cosign.pub",
                            "signedIdentity": {"type": "matchRepository"},
                        }
                    ],
                    "hostname:5000/myns/two-keys": [{"type": "sigstoreSigned", "keyDatas": [key]}],
                },
                "dir": {"": [ACCEPT]},
            },
        }
    )
    assert policy.default == [Reject()]
    docker = policy.transports["docker"]
    assert docker["docker.io/openshift"] == [InsecureAcceptAnything()]
    official = docker["hostname:5000/myns/official"][0]
    assert isinstance(official, SignedBy)
    assert official.key_path == "/k.gpg"
    assert official.signed_identity == MatchRepoDigestOrExact()  # the default
    vendor = docker["hostname:5000/vendor/product"][0]
    assert isinstance(vendor, SignedBy)
    assert vendor.key_paths == ["/a.gpg", "/b.gpg"]
    assert vendor.signed_identity == ExactRepository.model_validate(
        {"dockerRepository": "vendor-hostname/product/repository"}
    )
    mirror = docker["private-mirror:5000/vendor-mirror"][0]
    assert isinstance(mirror, SignedBy)
    assert mirror.key_data == b"keyring"
    assert isinstance(mirror.signed_identity, RemapIdentity)
    assert mirror.signed_identity.signed_prefix == "vendor.example.com"
    sigstore = docker["hostname:5000/myns/two-keys"][0]
    assert isinstance(sigstore, SigstoreSigned)
    assert sigstore.key_datas == [b"keyring"]
    assert policy.source == SOURCE


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"transports": {}}, "policy.json: default: missing"),
        ({"default": []}, "policy.json: default: must not be empty"),
        ({"default": [REJECT], "extra": 1}, "policy.json: extra: unknown field"),
        ({"default": {}}, "policy.json: default: expected a list of requirements, got an object"),
        ([], "policy.json: (top level): the policy must be a JSON object, got a list"),
        (
            {"default": [REJECT], "transports": {"docker": {"x": []}}},
            'policy.json: transports.docker["x"]: must not be empty',
        ),
        (
            {"default": [REJECT], "transports": {"docker": {"x": [signed_by(keyPath=1)]}}},
            'policy.json: transports.docker["x"][0].keyPath: expected a string, got a number',
        ),
        (
            {"default": [{"type": "signedby"}]},
            "policy.json: default[0].type: unknown requirement type 'signedby'",
        ),
        ({"default": [{"type": "reject", "x": 1}]}, "policy.json: default[0].x: unknown field"),
        (
            {"default": [signed_by()]},
            "policy.json: default[0]: exactly one of keyPath, keyPaths, keyData is required "
            "(found none)",
        ),
        (
            {"default": [signed_by(keyPath="/a", keyData="")]},
            "exactly one of keyPath, keyPaths, keyData is required (found keyPath, keyData)",
        ),
        ({"default": [signed_by(keyPaths=[])]}, "default[0].keyPaths: must name at least one"),
        ({"default": [signed_by(keyData="*not base64*")]}, "default[0].keyData: not valid base64"),
        (
            {"default": [{"type": "signedBy", "keyType": "signedByX509CAs", "keyPath": "/a"}]},
            "default[0].keyType: must be 'GPGKeys', got 'signedByX509CAs'",
        ),
        ({"default": [{"type": "signedBy", "keyPath": "/a"}]}, "default[0].keyType: missing"),
        (
            {"default": [{"type": "sigstoreSigned", "keyPath": "/a", "keyData": ""}]},
            "exactly one of keyPath, keyPaths, keyData, keyDatas is required",
        ),
        (
            {"default": [signed_by(keyPath="/a", signedIdentity={"type": "matchAnything"})]},
            "default[0].signedIdentity.type: unknown identity type 'matchAnything'",
        ),
        (
            {
                "default": [
                    signed_by(
                        keyPath="/a",
                        signedIdentity={"type": "exactReference", "dockerReference": "busybox"},
                    )
                ]
            },
            "default[0].signedIdentity.dockerReference: 'busybox' has neither a tag nor a digest",
        ),
        (
            {
                "default": [
                    signed_by(
                        keyPath="/a",
                        signedIdentity={"type": "exactRepository", "dockerRepository": "x/Bad"},
                    )
                ]
            },
            "default[0].signedIdentity.dockerRepository: image reference 'x/Bad'",
        ),
        (
            {
                "default": [
                    signed_by(
                        keyPath="/a",
                        signedIdentity={
                            "type": "remapIdentity",
                            "prefix": "example.com/ns",
                            "signedPrefix": "example.com/ns:tag",
                        },
                    )
                ]
            },
            "default[0].signedIdentity.signedPrefix: 'example.com/ns:tag' is not a registry",
        ),
        (
            {
                "default": [
                    signed_by(
                        keyPath="/a",
                        signedIdentity={"type": "remapIdentity", "prefix": "example.com"},
                    )
                ]
            },
            "default[0].signedIdentity.signedPrefix: missing",
        ),
    ],
)
def test_invalid_policies_are_one_line_naming_the_place(data: Any, message: str) -> None:
    error = error_of(data)
    assert message in error
    assert "\n" not in error
    assert error.startswith("policy.json: ")


@pytest.mark.parametrize(
    "field", ["fulcio", "pki", "rekorPublicKeyPath", "rekorPublicKeyPaths", "rekorPublicKeyData"]
)
def test_keyless_sigstore_fields_are_refused_by_name(field: str) -> None:
    requirement = {"type": "sigstoreSigned", "keyPath": "/a.pub", field: "x"}
    policy = {"default": [REJECT], "transports": {"docker": {"ghcr.io": [requirement]}}}
    error = error_of(policy)
    assert error.startswith(f'policy.json: transports.docker["ghcr.io"][0].{field}: ')
    assert "not supported by osbuilder" in error


def test_duplicate_keys_are_refused() -> None:
    text = '{"default": [{"type": "reject"}], "transports": {"docker": {"a": [], "a": []}}}'
    assert error_of(text) == "policy.json: duplicate key 'a' in a JSON object"


def test_invalid_json_is_one_line() -> None:
    assert error_of("{").startswith("policy.json: not valid JSON: ")


def test_load_policy_prefers_the_given_file(tmp_path: Path) -> None:
    given = tmp_path / "given.json"
    given.write_text(json.dumps({"default": [ACCEPT]}))
    user = tmp_path / "home/.config/containers/policy.json"
    user.parent.mkdir(parents=True)
    user.write_text(json.dumps({"default": [REJECT]}))
    assert load_policy(given, home=tmp_path / "home").default == [InsecureAcceptAnything()]
    assert load_policy(None, home=tmp_path / "home").default == [Reject()]
    assert load_policy(None, home=tmp_path / "home").source == user


def test_load_policy_falls_back_to_the_system_file(tmp_path: Path) -> None:
    if SYSTEM_POLICY.exists():
        assert load_policy(None, home=tmp_path).source == SYSTEM_POLICY
    else:
        with pytest.raises(PolicyError, match="no signature policy"):
            load_policy(None, home=tmp_path)


def test_an_unreadable_policy_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"missing\.json: cannot read the policy"):
        load_policy(tmp_path / "missing.json")


def test_an_invalid_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"default": []}')
    with pytest.raises(PolicyError, match=rf"^{path}: default: must not be empty"):
        load_policy(path)


# --- scope lookup ----------------------------------------------------------------------


def test_docker_scopes_from_the_most_specific() -> None:
    assert docker_scopes(parse_reference("a.b.example.com:5000/ns/sub/repo:1")) == [
        "a.b.example.com:5000/ns/sub/repo:1",
        "a.b.example.com:5000/ns/sub/repo",
        "a.b.example.com:5000/ns/sub",
        "a.b.example.com:5000/ns",
        "a.b.example.com:5000",
        "*.b.example.com",
        "*.example.com",
        "*.com",
    ]
    assert docker_scopes(parse_reference("busybox")) == [
        "docker.io/library/busybox:latest",
        "docker.io/library/busybox",
        "docker.io/library",
        "docker.io",
        "*.io",
    ]
    assert docker_scopes(parse_reference(f"busybox:1@{DIGEST}"))[0] == (
        f"docker.io/library/busybox@{DIGEST}"
    )
    assert docker_scopes(parse_reference("localhost:5000/app")) == [
        "localhost:5000/app:latest",
        "localhost:5000/app",
        "localhost:5000",
    ]


SCOPED_POLICY: dict[str, Any] = {
    "default": [{"type": "reject"}],
    "transports": {
        "docker": {
            "": [signed_by(keyPath="/transport-default")],
            "docker.io": [signed_by(keyPath="/docker.io")],
            "docker.io/library": [signed_by(keyPath="/library")],
            "docker.io/library/busybox": [signed_by(keyPath="/busybox")],
            "docker.io/library/busybox:stable": [signed_by(keyPath="/busybox-stable")],
            f"docker.io/library/busybox@{DIGEST}": [signed_by(keyPath="/busybox-digest")],
            "example.com:5000": [signed_by(keyPath="/example-5000")],
            "*.example.com": [signed_by(keyPath="/wildcard-example")],
            "*.temporary.example.com": [signed_by(keyPath="/wildcard-temporary")],
            "quay.io/ns/repo": [signed_by(keyPath="/quay-repo")],
        },
        "dir": {"": [{"type": "insecureAcceptAnything"}]},
    },
}


@pytest.mark.parametrize(
    ("image", "key_path"),
    [
        ("busybox:stable", "/busybox-stable"),  # the exact tag
        (f"busybox@{DIGEST}", "/busybox-digest"),  # the exact digest
        (f"busybox:stable@{DIGEST}", "/busybox-digest"),  # the digest is what is pulled
        ("busybox:latest", "/busybox"),  # the repository
        ("docker.io/library/busybox:1", "/busybox"),
        ("alpine", "/library"),  # a namespace
        ("someone/app", "/docker.io"),  # the registry host
        ("example.com:5000/x", "/example-5000"),  # host:port
        ("example.com/x", "/transport-default"),  # *.example.com is not example.com itself
        ("registry.example.com/x", "/wildcard-example"),  # a subdomain
        ("registry.example.com:5000/x", "/wildcard-example"),  # wildcards ignore the port
        ("a.temporary.example.com/x", "/wildcard-temporary"),  # the longest wildcard
        ("a.b.temporary.example.com/x", "/wildcard-temporary"),
        ("quay.io/ns/repo:v1", "/quay-repo"),
        ("quay.io/ns/repository", "/transport-default"),  # not a prefix at a '/' boundary
        ("quay.io/ns", "/transport-default"),
        ("ghcr.io/x/y", "/transport-default"),  # the transport's ""
    ],
)
def test_requirements_for_takes_the_most_specific_scope(image: str, key_path: str) -> None:
    (requirement,) = requirements_for(parsed(SCOPED_POLICY), parse_reference(image))
    assert isinstance(requirement, SignedBy)
    assert requirement.key_path == key_path


def test_without_a_docker_section_the_global_default_applies() -> None:
    policy = parsed({"default": [REJECT], "transports": {"dir": {"": [ACCEPT]}}})
    assert requirements_for(policy, parse_reference("busybox")) == [Reject()]
    policy = parsed({"default": [REJECT], "transports": {"docker": {"quay.io": [ACCEPT]}}})
    assert requirements_for(policy, parse_reference("busybox")) == [Reject()]
    assert requirements_for(policy, parse_reference("quay.io/a/b")) == [InsecureAcceptAnything()]


def test_all_requirements_of_the_scope_are_returned_in_order() -> None:
    both = [signed_by(keyPath="/vendor"), signed_by(keyPath="/reviewer")]
    policy = parsed({"default": [REJECT], "transports": {"docker": {"quay.io/v": both}}})
    requirements = requirements_for(policy, parse_reference("quay.io/v/p"))
    assert [r.key_path for r in requirements if isinstance(r, SignedBy)] == [
        "/vendor",
        "/reviewer",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"default": [{"type": "insecureAcceptAnything"}]}', True),
        (
            '{"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": '
            '{"a.example": [{"type": "insecureAcceptAnything"}]}, "oci": {}}}',
            True,
        ),
        ('{"default": [{"type": "reject"}]}', False),
        ('{"default": []}', False),  # invalid: policy.py says why
        ('{"default": [{"type": "insecureAcceptAnything", "x": 1}]}', False),
        ('{"default": [{"type": "insecureAcceptAnything"}], "extra": 1}', False),
        ('{"transports": {}}', False),
        (
            '{"default": [{"type": "insecureAcceptAnything"}], "default": [{"type": "reject"}]}',
            False,
        ),
        (
            '{"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": '
            '{"a.example": [{"type": "signedBy"}]}}}',
            False,
        ),
    ],
)
def test_only_a_valid_accept_everything_policy_skips_the_validator(
    text: str, expected: bool
) -> None:
    assert accepts_anything(text.encode()) is expected
    if expected:  # and the validator agrees it is valid
        policy = parse_policy(text, SOURCE)
        assert all(isinstance(r, InsecureAcceptAnything) for r in policy.default)
