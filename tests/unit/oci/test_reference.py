"""Image references parse and normalise as Docker's do."""

from __future__ import annotations

import pytest

from osbuilder.oci.reference import ImageReference, InvalidReference, parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("redis", "docker.io", "library/redis", "latest", None),
        ("redis:7.2", "docker.io", "library/redis", "7.2", None),
        ("linuxkit/init:abc", "docker.io", "linuxkit/init", "abc", None),
        ("docker.io/redis", "docker.io", "library/redis", "latest", None),
        ("index.docker.io/library/redis:7", "docker.io", "library/redis", "7", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/a/b/c:v1", "localhost:5000", "a/b/c", "v1", None),
        ("127.0.0.1:5000/osbuilder/init:x", "127.0.0.1:5000", "osbuilder/init", "x", None),
        ("ghcr.io/org/img", "ghcr.io", "org/img", "latest", None),
        (f"redis@{DIGEST}", "docker.io", "library/redis", None, DIGEST),
        (f"redis:7@{DIGEST}", "docker.io", "library/redis", "7", DIGEST),
        (
            "my-reg.example.com:443/x__y/z.w-v:tag_1.0-rc",
            "my-reg.example.com:443",
            "x__y/z.w-v",
            "tag_1.0-rc",
            None,
        ),
    ],
)
def test_parse_and_normalise(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert ref == ImageReference(registry, repository, tag, digest)


def test_string_forms() -> None:
    ref = parse_reference("redis:7")
    assert str(ref) == "docker.io/library/redis:7"
    assert ref.familiar() == "redis:7"
    pinned = parse_reference(f"localhost:5000/a:1@{DIGEST}")
    assert str(pinned) == f"localhost:5000/a:1@{DIGEST}"
    assert pinned.pinned and not ref.pinned
    assert str(ref.with_digest(DIGEST)) == f"docker.io/library/redis:7@{DIGEST}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty image reference"),
        ("Redis", "invalid repository component 'Redis'"),
        ("redis:", "invalid tag ''"),
        ("redis:.x", "invalid tag '.x'"),
        ("redis@sha256:abc", "invalid digest 'sha256:abc'"),
        ("redis@sha256:" + "A" * 64, "a sha256 digest is 64 lowercase hex digits"),
        ("a//b", "invalid repository component ''"),
        ("a/b--c_", "invalid repository component 'b--c_'"),
        (" redis", "contains whitespace"),
        ("localhost:5000/", "has no repository name"),
        ("-bad.host:5000/x", "invalid registry '-bad.host:5000'"),
        ("a/" * 130 + "b", "longer than 255 characters"),
        ("redis:" + "t" * 129, "invalid tag"),
    ],
)
def test_malformed_references_say_why(text: str, message: str) -> None:
    with pytest.raises(InvalidReference, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_reference(text)
