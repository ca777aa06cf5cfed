"""signedIdentity matching, table-driven from containers-policy.json(5) and containers/image's
policy_reference_match.go semantics."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from osbuilder.oci.reference import parse_reference
from osbuilder.trust.identity import SignedIdentity, matches, policy_form

D1 = "sha256:" + "11" * 32
D2 = "sha256:" + "22" * 32

MATCH_EXACT = {"type": "matchExact"}
REPO_DIGEST_OR_EXACT = {"type": "matchRepoDigestOrExact"}
MATCH_REPOSITORY = {"type": "matchRepository"}
EXACT_REFERENCE = {"type": "exactReference", "dockerReference": "docker.io/vendor/x:1"}
EXACT_REPOSITORY = {
    "type": "exactRepository",
    "dockerRepository": "vendor-hostname/product/repository",
}
MIRROR = {
    "type": "remapIdentity",
    "prefix": "private-mirror:5000/vendor-mirror",
    "signedPrefix": "vendor.example.com",
}
TO_DOCKER_IO = {"type": "remapIdentity", "prefix": "example.com/ns", "signedPrefix": "docker.io"}
HOST_ONLY = {"type": "remapIdentity", "prefix": "example.com", "signedPrefix": "mirror.example"}

_IDENTITY = TypeAdapter[SignedIdentity](SignedIdentity)


def identity(data: dict[str, Any]) -> SignedIdentity:
    return _IDENTITY.validate_python(data)


CASES: list[tuple[dict[str, Any], str, str, bool]] = [
    # matchExact: the claim names exactly the image's tag or digest
    (MATCH_EXACT, "busybox:latest", "docker.io/library/busybox:latest", True),
    (MATCH_EXACT, "busybox:latest", "busybox:latest", True),  # claims are normalised
    (MATCH_EXACT, "busybox:latest", "busybox", False),  # no implicit :latest for a claim
    (MATCH_EXACT, "busybox:latest", "busybox:1", False),
    (MATCH_EXACT, "busybox:latest", "docker.io/other/busybox:latest", False),
    (MATCH_EXACT, f"busybox@{D1}", f"busybox@{D1}", True),
    (MATCH_EXACT, f"busybox@{D1}", f"busybox@{D2}", False),
    (MATCH_EXACT, f"busybox@{D1}", "busybox:latest", False),  # the man page's caveat
    (MATCH_EXACT, f"busybox:latest@{D1}", f"busybox@{D1}", True),  # the digest is pulled
    (MATCH_EXACT, "busybox:latest", f"busybox:latest@{D1}", False),
    (MATCH_EXACT, "busybox:latest", "", False),  # an unparseable claim matches nothing
    (MATCH_EXACT, "busybox:latest", "Busybox:latest/x", False),
    # matchRepoDigestOrExact: exact for a tag, the repository for a digest
    (REPO_DIGEST_OR_EXACT, "busybox:latest", "busybox:latest", True),
    (REPO_DIGEST_OR_EXACT, "busybox:latest", "busybox:1", False),
    (REPO_DIGEST_OR_EXACT, "busybox:latest", "busybox", False),
    (REPO_DIGEST_OR_EXACT, "busybox:latest", f"busybox@{D1}", False),
    (REPO_DIGEST_OR_EXACT, f"busybox@{D1}", "busybox:1", True),
    (REPO_DIGEST_OR_EXACT, f"busybox@{D1}", f"busybox@{D2}", True),  # digest checked elsewhere
    (REPO_DIGEST_OR_EXACT, f"busybox@{D1}", "busybox", False),  # still not name-only
    (REPO_DIGEST_OR_EXACT, f"busybox@{D1}", "alpine:1", False),
    (REPO_DIGEST_OR_EXACT, f"quay.io/a/b:1@{D1}", "quay.io/a/b:2", True),
    # matchRepository: the same repository, any tag (or none)
    (MATCH_REPOSITORY, "busybox:latest", "busybox:1.36", True),
    (MATCH_REPOSITORY, "busybox:latest", "busybox", True),
    (MATCH_REPOSITORY, f"busybox@{D1}", f"docker.io/library/busybox@{D2}", True),
    (MATCH_REPOSITORY, "busybox:latest", "docker.io/library/busybox2:latest", False),
    (MATCH_REPOSITORY, "localhost:5000/app:1", "localhost/app:1", False),  # the port counts
    # exactReference: the policy's reference, whatever the image
    (EXACT_REFERENCE, "quay.io/mirror/x:7", "vendor/x:1", True),
    (EXACT_REFERENCE, "quay.io/mirror/x:7", "docker.io/vendor/x:1", True),
    (EXACT_REFERENCE, "quay.io/mirror/x:7", "vendor/x:2", False),
    (EXACT_REFERENCE, "quay.io/mirror/x:7", "vendor/x", False),
    (EXACT_REFERENCE, "quay.io/mirror/x:7", "quay.io/mirror/x:7", False),
    # exactRepository: the policy's repository, any tag
    (EXACT_REPOSITORY, "busybox:latest", "vendor-hostname/product/repository:any", True),
    (EXACT_REPOSITORY, "busybox:latest", "vendor-hostname/product/repository", True),
    (EXACT_REPOSITORY, "busybox:latest", f"vendor-hostname/product/repository@{D2}", True),
    (EXACT_REPOSITORY, "busybox:latest", "vendor-hostname/product/other:any", False),
    (EXACT_REPOSITORY, "busybox:latest", "busybox:latest", False),
    # remapIdentity: the man page's mirror
    (
        MIRROR,
        "private-mirror:5000/vendor-mirror/producta/image1:latest",
        "vendor.example.com/producta/image1:latest",
        True,
    ),
    (
        MIRROR,
        "private-mirror:5000/vendor-mirror/producta/image1:latest",
        "vendor.example.com/producta/image1:v2",
        False,
    ),
    (
        MIRROR,
        "private-mirror:5000/vendor-mirror/producta/image1:latest",
        "private-mirror:5000/vendor-mirror/producta/image1:latest",
        False,
    ),
    (  # by digest: the remapped repository, any tag
        MIRROR,
        f"private-mirror:5000/vendor-mirror/producta/image1@{D1}",
        "vendor.example.com/producta/image1:v2",
        True,
    ),
    (MIRROR, "private-mirror:5000/vendor-mirror:1", "vendor.example.com:1", False),
    (  # outside the prefix: no remapping, then matchRepoDigestOrExact
        MIRROR,
        "quay.io/other/image:1",
        "quay.io/other/image:1",
        True,
    ),
    (  # the prefix matches at a '/' only
        MIRROR,
        "private-mirror:5000/vendor-mirrorx/a:1",
        "private-mirror:5000/vendor-mirrorx/a:1",
        True,
    ),
    (MIRROR, "private-mirror:5000/vendor-mirrorx/a:1", "vendor.example.comx/a:1", False),
    # a remapped name that is not in the fully expanded form matches nothing
    (TO_DOCKER_IO, "example.com/ns/busybox:1", "docker.io/library/busybox:1", False),
    (TO_DOCKER_IO, "example.com/ns/library/busybox:1", "docker.io/library/busybox:1", True),
    # a host prefix is exact: example.com is not example.com:5000
    (HOST_ONLY, "example.com/a/b:1", "mirror.example/a/b:1", True),
    (HOST_ONLY, "example.com:5000/a/b:1", "mirror.example/a/b:1", False),
    (HOST_ONLY, "example.com:5000/a/b:1", "example.com:5000/a/b:1", True),
]


@pytest.mark.parametrize(
    ("identity_data", "image", "claim", "expected"),
    CASES,
    ids=[f"{c[0]['type']}-{c[1]}-{c[2]}" for c in CASES],
)
def test_matches(identity_data: dict[str, Any], image: str, claim: str, expected: bool) -> None:
    assert matches(identity(identity_data), parse_reference(image), claim) is expected


def test_the_default_identity_is_match_repo_digest_or_exact() -> None:
    assert identity({"type": "matchRepoDigestOrExact"}) == identity(REPO_DIGEST_OR_EXACT)


@pytest.mark.parametrize(
    "data",
    [
        {"type": "exactReference", "dockerReference": "busybox"},
        {"type": "exactReference"},
        {"type": "exactRepository", "dockerRepository": "Not A Reference"},
        {"type": "remapIdentity", "prefix": "", "signedPrefix": "x.example"},
        {"type": "remapIdentity", "prefix": "a.example/ns@sha256", "signedPrefix": "x.example"},
        {"type": "matchExact", "extra": 1},
        {"type": "matchSomething"},
    ],
)
def test_invalid_identities_are_refused(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        identity(data)


def test_policy_form_drops_the_tag_of_a_digest_reference() -> None:
    assert str(policy_form(parse_reference(f"busybox:1@{D1}"))) == f"docker.io/library/busybox@{D1}"
    assert str(policy_form(parse_reference("busybox:1"))) == "docker.io/library/busybox:1"
