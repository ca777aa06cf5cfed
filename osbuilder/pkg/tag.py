"""Package tags derived from content, so specs pin exact versions.

The tag hashes every file of the recipe directory and of each `files`
source it reaches outside it (the init package ships osbuilder/guest/):
paths, executable bits and contents, plus the version of the builder's
output format. The same recipe always has the same tag; any change gives
a new one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from osbuilder.errors import UserError
from osbuilder.pkg.recipe import RECIPE_FILE, LoadedRecipe, load_recipe

#: Bump when a change of osbuilder changes what a recipe builds into.
FORMAT_VERSION = "3"
TAG_LENGTH = 20
_IGNORED = ("__pycache__", ".pytest_cache", ".mypy_cache")


def package_tag(loaded: LoadedRecipe) -> str:
    digest = hashlib.sha256(f"osbuilder-pkg-format {FORMAT_VERSION}\n".encode())
    roots = [loaded.directory.resolve()]
    for entry in loaded.recipe.files:
        if entry.source is None:
            continue  # symlinks and contents are in build.yml, which is hashed
        source = (loaded.directory / entry.source).resolve()
        if not any(source.is_relative_to(root) for root in roots):
            roots.append(source)
    base = loaded.directory.resolve()
    for root in roots:
        for path in _files(root):
            name = os.path.relpath(path, base)
            executable = "x" if os.access(path, os.X_OK) and path.is_file() else "-"
            digest.update(f"{name}\0{executable}\0".encode())
            if path.is_symlink():
                digest.update(b"link\0" + os.readlink(path).encode())
            else:
                with path.open("rb") as stream:
                    while chunk := stream.read(1024 * 1024):
                        digest.update(chunk)
            digest.update(b"\0")
    return digest.hexdigest()[:TAG_LENGTH]


def package_reference(loaded: LoadedRecipe, image: str | None = None) -> str:
    return f"{image or loaded.recipe.image}:{package_tag(loaded)}"


def template_reference(directory: Path) -> str:
    """What an `@pkg:` template naming `directory` stands for: the spec loader's
    PackageResolver (spec/templates.py), with its one-line errors."""
    if not (directory / RECIPE_FILE).is_file():
        raise UserError(f"{directory} holds no package recipe ({RECIPE_FILE})")
    try:
        loaded = load_recipe(directory)
    except UserError as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"its recipe is invalid: {first}") from None
    return package_reference(loaded)


def _files(root: Path) -> Iterator[Path]:
    if root.is_file() or root.is_symlink():
        yield root
        return
    for current, directories, files in os.walk(root):
        directories[:] = sorted(d for d in directories if d not in _IGNORED)
        for name in sorted(files):
            if not name.endswith(".pyc"):
                yield Path(current) / name
