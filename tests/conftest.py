"""Fixtures shared by the integration and boot tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

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
    root = Path(os.environ.get("OSBUILDER_TEST_STORE", REPO / ".cache/test-store"))
    store = ContentStore(root)
    references = {}
    for directory in sorted([*REPO.glob("kernels/*/"), *REPO.glob("pkg/*/")]):
        loaded = load_recipe(directory)
        references[loaded.recipe.image] = build_package(store, loaded).reference
    return Packages(store, references)
