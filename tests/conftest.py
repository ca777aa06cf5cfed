"""Fixtures shared by the integration and boot tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from osbuilder.oci.platform import host_target
from osbuilder.oci.store import ContentStore
from osbuilder.pkg.build import build_package
from osbuilder.pkg.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Packages:
    """The repository's packages and kernel, built into one store for the tests."""

    store: ContentStore
    references: dict[str, str]  # "osbuilder/redis" -> "docker.io/osbuilder/redis:TAG"

    def __getitem__(self, name: str) -> str:
        return self.references[name]


@pytest.fixture(scope="session")
def packages() -> Packages:
    """Build pkg/* and kernels/* once. The store persists in .cache/test-store (or
    $OSBUILDER_TEST_STORE) so that later runs only rebuild what changed."""
    return build_packages(host_target().architecture, RECIPES)


# What examples/redis.yml is made of: the packages the other architecture's boot test needs.
REDIS_OS_RECIPES = ("kernels/cloud", "pkg/init", "pkg/crun", "pkg/dhcpcd", "pkg/getty", "pkg/redis")


@pytest.fixture(scope="session")
def arm64_packages(packages: Packages) -> Packages:
    """The Redis OS's packages for arm64 too (after the host's: one store, and each
    name then an index of both)."""
    return build_packages("arm64", [REPO / r for r in REDIS_OS_RECIPES])


RECIPES = sorted([*REPO.glob("kernels/*/"), *REPO.glob("pkg/*/")])


def build_packages(architecture: str, recipes: list[Path]) -> Packages:
    root = Path(os.environ.get("OSBUILDER_TEST_STORE", REPO / ".cache/test-store"))
    store = ContentStore(root)
    references = {}
    for directory in recipes:
        loaded = load_recipe(directory)
        built = build_package(store, loaded, architecture=architecture)
        references[loaded.recipe.image] = built.reference
    return Packages(store, references)
