"""Where `pkg build --cache-from REGISTRY/NAMESPACE` looks for a recipe's image."""

from __future__ import annotations

import pytest

from osbuilder.errors import UserError
from osbuilder.pkg.share import parse_namespace, shared_reference


@pytest.mark.parametrize(
    ("given", "namespace"),
    [
        ("127.0.0.1:5000/pkgs", "127.0.0.1:5000/pkgs"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("ghcr.io/acme/osbuilder/", "ghcr.io/acme/osbuilder"),
        ("ghcr.io/box", "ghcr.io/box"),
        ("acme", "docker.io/acme"),
        ("localhost:5000/a/b", "localhost:5000/a/b"),
    ],
)
def test_namespaces(given: str, namespace: str) -> None:
    assert parse_namespace(given) == namespace


@pytest.mark.parametrize("given", ["", "/", "Bad Name", "ghcr.io/acme@sha256:00", "a/b:tag"])
def test_bad_namespaces_are_user_errors(given: str) -> None:
    with pytest.raises(UserError, match="--cache-from"):
        parse_namespace(given)


def test_the_shared_name_keeps_the_last_component_and_the_tag() -> None:
    shared = shared_reference("127.0.0.1:5000/pkgs", "docker.io/osbuilder/redis:0123abcd")
    assert str(shared) == "127.0.0.1:5000/pkgs/redis:0123abcd"
    shared = shared_reference("ghcr.io/acme", "localhost:5000/x/y/tiny:t1")
    assert str(shared) == "ghcr.io/acme/tiny:t1"
