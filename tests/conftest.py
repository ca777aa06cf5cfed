"""Fixtures shared by the integration and boot tests."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from osbuilder.oci.platform import host_target
from osbuilder.oci.store import ContentStore
from osbuilder.pkg.build import Sources, build_package
from osbuilder.pkg.recipe import load_recipe
from osbuilder.pkg.tag import package_reference, template_reference
from osbuilder.spec import load_spec
from osbuilder.spec.images import image_references
from osbuilder.trust.attach import Signer, sign_stored
from osbuilder.trust.keys import generate_key_pair, key_files, load_private_key

REPO = Path(__file__).resolve().parents[1]
TEST_STORE = Path(os.environ.get("OSBUILDER_TEST_STORE", REPO / ".cache/test-store"))


def signing_directory(store: Path) -> Path:
    """Where the key that signs a store's packages is kept: beside the store."""
    return store.parent / f"{store.name}-signer"


def trust_options(store: Path) -> tuple[str, str]:
    """The options of a build that verifies the packages' signatures (see `Packages`)."""
    return ("--policy", str(signing_directory(store) / "policy.json"))


TRUST_OPTIONS = trust_options(TEST_STORE)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, and SIGKILL if it has not ended within `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Packages:
    """The repository's packages and kernel, built into one store for the tests, each
    signed by the tests' key, as `make demo` signs them: `policy` requires that key for
    docker.io/osbuilder, as examples/redis.yml's `trust:` wants."""

    store: ContentStore
    references: dict[str, str]  # "osbuilder/redis" -> "docker.io/osbuilder/redis:TAG"
    policy: Path  # (TRUST_OPTIONS name it)

    def __getitem__(self, name: str) -> str:
        return self.references[name]


@pytest.fixture(scope="session")
def packages() -> Packages:
    """Build pkg/* and kernels/* once. The store persists in .cache/test-store (or
    $OSBUILDER_TEST_STORE) so that later runs only rebuild what changed."""
    return build_packages(host_target().architecture, RECIPES)


@pytest.fixture(scope="session")
def arm64_packages(packages: Packages) -> Packages:
    """The packages examples/redis.yml names, for arm64 too (after the host's: one store,
    and each name then an index of both)."""
    spec = load_spec([REPO / "examples/redis.yml"], template_reference).spec
    names = {reference.rsplit(":", 1)[0] for reference, _ in image_references(spec)}
    return build_packages("arm64", [d for d in RECIPES if load_recipe(d).recipe.image in names])


RECIPES = sorted([*REPO.glob("kernels/*/"), *REPO.glob("pkg/*/")])


def with_tags(spec: Path) -> str:
    """The text of `spec` with each `@pkg:PATH` template written as the reference it stands
    for (`osbuilder pkg show-tag PATH`): a copy that may live elsewhere, or come on
    standard input, and still name the same images."""

    def reference(match: re.Match[str]) -> str:
        return package_reference(load_recipe((spec.parent / match.group(1)).resolve()))

    return re.sub(r'"@pkg:([^"]+)"', reference, spec.read_text())


def build_packages(architecture: str, recipes: list[Path]) -> Packages:
    store = ContentStore(TEST_STORE)
    key, policy = package_signer(TEST_STORE)
    signer = Signer(load_private_key(key, b""))
    references = {}
    for directory in recipes:
        loaded = load_recipe(directory)
        # As `make packages`: locked versions Debian's mirror dropped are locked anew.
        built = build_package(
            store, loaded, architecture=architecture, sources=Sources(refresh_missing=True)
        )
        sign_stored(store, built.reference, signer)  # (a second time adds nothing)
        references[loaded.recipe.image] = built.reference
    return Packages(store, references, policy)


def package_signer(store: Path) -> tuple[Path, Path]:
    """The private key (no password) that signs the packages of `store`, made once and kept
    beside it, and a policy requiring it for osbuilder's images (trust_options names it)."""
    directory = signing_directory(store)
    directory.mkdir(parents=True, exist_ok=True)
    files = key_files(directory / "tests")
    if not files.private.exists():
        generate_key_pair(directory / "tests", b"")
    policy = directory / "policy.json"
    requirement = {"type": "sigstoreSigned", "keyPath": str(files.public)}
    document = {
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {"docker": {"docker.io/osbuilder": [requirement]}},
    }
    policy.write_text(json.dumps(document))
    return files.private, policy
