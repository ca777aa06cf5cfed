"""The spec's `trust:` at build time: images it names must be signed, the policy must say
so, and signatures made in the store by `pkg build --sign-key` verify with no registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from osbuilder.oci.reference import parse_reference
from osbuilder.oci.store import ContentStore
from osbuilder.trust.stored import sigstore_name
from tests.conftest import REPO, TRUST_OPTIONS, Packages
from tests.integration.helpers import osbuilder, store_image
from tests.integration.test_build import store_copy

pytestmark = pytest.mark.integration

REDIS = REPO / "examples/redis.yml"


def build(store: Path, out: Path, spec: Path, *options: str) -> tuple[int, str]:
    result = osbuilder(
        "build", "--offline", "--cache", str(store), "-f", "tar", "-o", str(out), *options,
        str(spec),
    )  # fmt: skip
    return result.returncode, result.stderr


def line_of(spec: Path, text: str) -> int:
    return next(n for n, line in enumerate(spec.read_text().splitlines(), 1) if text in line)


def test_trust_needs_a_policy_that_requires_a_signature(packages: Packages, tmp_path: Path) -> None:
    accept = tmp_path / "accept.json"
    accept.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    code, stderr = build(packages.store.root, tmp_path / "out", REDIS, "--policy", str(accept))
    assert code == 1
    # the first image the build takes, at its line of the spec
    kernel = packages["osbuilder/kernel"]
    assert stderr == (
        f"osbuilder: {REDIS}:{line_of(REDIS, 'kernels/cloud')}:10: kernel.image: trust requires "
        f"a signature for {parse_reference(kernel).name}, but the policy ({accept}) accepts "
        "anything there: add a signedBy or sigstoreSigned requirement\n"
    )
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_packages_signed_in_the_store_verify_offline(packages: Packages, tmp_path: Path) -> None:
    store = store_copy(packages, tmp_path / "store")  # no acceptance recorded: verified afresh
    code, stderr = build(store, tmp_path / "out", REDIS, *TRUST_OPTIONS)
    assert code == 0, stderr
    assert (tmp_path / "out/redis.tar").is_file()
    assert list((store / "trust/accepted").iterdir())  # recorded: the next build is quick


def test_an_unsigned_image_under_trust_fails_the_build(packages: Packages, tmp_path: Path) -> None:
    store = ContentStore(store_copy(packages, tmp_path / "store"))
    store_image(store, "osbuilder/unsigned:1", {"etc/unsigned": b"no one vouches for me\n"})
    spec = tmp_path / "spec.yml"
    spec.write_text(
        f"init:\n  - {packages['osbuilder/init']}\n  - osbuilder/unsigned:1\n"
        "trust:\n  org: [osbuilder]\n"
    )
    code, stderr = build(store.root, tmp_path / "out", spec, *TRUST_OPTIONS)
    assert code == 1
    assert stderr.startswith(f"osbuilder: {spec}:3:5: init[1]: osbuilder/unsigned:1: no sigstore ")
    assert "--pull looks in the registry too" in stderr
    assert stderr.count("\n") == 1


def test_a_signature_by_another_key_fails_the_build(packages: Packages, tmp_path: Path) -> None:
    store = ContentStore(store_copy(packages, tmp_path / "store"))
    generated = osbuilder(
        "key", "generate", str(tmp_path / "other"), env={"OSBUILDER_KEY_PASSWORD": ""}
    )
    assert generated.returncode == 0, generated.stderr
    policy = tmp_path / "policy.json"
    requirement = {"type": "sigstoreSigned", "keyPath": str(tmp_path / "other.pub")}
    policy.write_text(json.dumps({"default": [requirement]}))
    code, stderr = build(store.root, tmp_path / "out", REDIS, "--policy", str(policy))
    assert code == 1
    assert "does not verify with the trusted keys" in stderr and str(tmp_path / "other.pub") in (
        stderr
    )
    # the package's signature is there, attached as cosign attaches it
    kernel = parse_reference(packages["osbuilder/kernel"])
    descriptor = store.lookup(str(kernel))
    assert descriptor is not None and store.lookup(sigstore_name(kernel, descriptor.digest))


def test_pkg_build_signs_with_a_cosign_key(tmp_path: Path) -> None:
    """`pkg build --sign-key` on a tiny recipe: signed once, not again when up to date."""
    recipe = REPO / "tests/data/pkg/tiny"
    env = {"OSBUILDER_KEY_PASSWORD": "secret"}
    key = osbuilder("key", "generate", str(tmp_path / "k"), env=env)
    assert key.returncode == 0, key.stderr
    store = tmp_path / "store"
    command = ("pkg", "build", "--cache", str(store), "--sign-key", str(tmp_path / "k.key"))
    first = osbuilder(*command, str(recipe), env=env)
    assert first.returncode == 0, first.stderr
    assert "signed" in first.stdout
    again = osbuilder(*command, str(recipe), env=env)
    assert again.returncode == 0 and "signed" not in again.stdout
    wrong = osbuilder(*command, str(recipe), env={"OSBUILDER_KEY_PASSWORD": "wrong"})
    assert wrong.returncode == 1 and "wrong password" in wrong.stderr
    assert "secret" not in wrong.stderr and "PRIVATE" not in wrong.stderr
