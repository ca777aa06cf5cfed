"""The spec's `trust:` names: which images they make a signature mandatory for, as
LinuxKit's `image:` and `org:` lists meant it (an image by name, with or without its tag
or digest; every image of a namespace)."""

from __future__ import annotations

from pathlib import Path

import pytest

from osbuilder.oci.reference import parse_reference
from osbuilder.spec import SpecInvalid, load_spec
from osbuilder.trust.verify import TrustedNames, org_prefix, trusted_image

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("entry", "normalised"),
    [
        ("redis", "docker.io/library/redis"),
        ("redis:7", "docker.io/library/redis:7"),
        (f"redis@{DIGEST}", f"docker.io/library/redis@{DIGEST}"),
        ("linuxkit/init", "docker.io/linuxkit/init"),
        ("ghcr.io/acme/app:1", "ghcr.io/acme/app:1"),
    ],
)
def test_image_entries_are_normalised(entry: str, normalised: str) -> None:
    assert trusted_image(entry) == normalised


@pytest.mark.parametrize(
    ("entry", "normalised"),
    [
        ("linuxkit", "docker.io/linuxkit"),
        ("library", "docker.io/library"),
        ("ghcr.io/acme", "ghcr.io/acme"),
        ("ghcr.io", "ghcr.io"),
        ("localhost:5000", "localhost:5000"),
        ("localhost:5000/team", "localhost:5000/team"),
    ],
)
def test_org_entries_are_normalised(entry: str, normalised: str) -> None:
    assert org_prefix(entry) == normalised


NAMES = TrustedNames.of(["redis", "ghcr.io/acme/app:1", f"alpine@{DIGEST}"], ["linuxkit"])


@pytest.mark.parametrize(
    ("reference", "covered"),
    [
        ("redis", True),  # the repository named: every tag and digest of it
        ("redis:7", True),
        (f"docker.io/library/redis@{DIGEST}", True),
        ("redisx", False),
        ("ghcr.io/acme/app:1", True),  # one tag named: that tag only
        (f"ghcr.io/acme/app:1@{DIGEST}", True),  # (pinned by a lock)
        ("ghcr.io/acme/app:2", False),
        (f"alpine@{DIGEST}", True),  # one digest named
        ("alpine:3", False),
        ("linuxkit/init:v1", True),  # the org's images
        ("docker.io/linuxkit/sub/image:1", True),
        ("linuxkitx/init", False),
        ("ghcr.io/linuxkit/init", False),  # another registry's namespace of the same name
    ],
)
def test_which_images_trust_covers(reference: str, covered: bool) -> None:
    assert NAMES.covers(parse_reference(reference)) is covered


@pytest.mark.parametrize("org", ["linuxkit/", "linuxkit/x:1", "Bad Org", "x@sha256:00"])
def test_an_org_that_is_no_namespace_is_a_spec_error(tmp_path: Path, org: str) -> None:
    spec = tmp_path / "s.yml"
    spec.write_text(f"init: [busybox]\ntrust:\n  org:\n    - {org!r}\n")
    with pytest.raises(SpecInvalid) as raised:
        load_spec([spec])
    assert f"{spec}:4:" in str(raised.value) and "trust.org[0]" in str(raised.value)
