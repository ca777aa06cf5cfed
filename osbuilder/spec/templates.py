"""Image templates (LinuxKit's): `@pkg:PATH` stands for the reference the package recipe
at PATH builds, what `osbuilder pkg show-tag PATH` prints.

A spec can then name the packages beside it and follow their changes without anyone
editing tags. PATH is relative to the spec file's directory (an absolute one stays as it
is); a spec read from standard input or fetched from a URL has no directory and cannot
use them. Templates are
expanded where images are named (kernel.image, init, the containers' and volumes' image)
before validation, so the resulting reference is what is checked, built, and written by
`metadata` files.

What a recipe builds is the pkg package's to say, and pkg is built on spec: the caller
passes a `PackageResolver` in (see pkg/tag.py's `template_reference`), and spec imports
nothing of pkg.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from osbuilder.errors import UserError
from osbuilder.spec.model import CONTAINER_SECTIONS
from osbuilder.spec.remote import is_url
from osbuilder.spec.source import DataPath, Diagnostic, Document

PKG = "@pkg:"
SECTIONS = (*CONTAINER_SECTIONS, "volumes")  # the sections whose entries name an image

#: The reference the package recipe in a directory builds; a one-line UserError when the
#: directory holds no valid recipe.
PackageResolver = Callable[[Path], str]


def expand_templates(
    document: Document, stdin_name: str, packages: PackageResolver | None
) -> list[Diagnostic]:
    """Replace each template in `document` (read from the file its origin names, or from
    standard input when that is `stdin_name`) by its reference, which `packages` gives
    (None: templates are not expanded); one error per template that cannot be expanded
    (the value is then left as it was)."""
    data = document.data
    if not isinstance(data, dict):
        return []
    spec_file = document.origin.file
    resolved: dict[Path, str] = {}  # a recipe named twice is hashed once
    diagnostics = []
    for path in _image_paths(data):
        holder, key = _holder(data, path)
        value = holder[key]
        if not (isinstance(value, str) and value.startswith("@")):
            continue
        try:
            holder[key] = _expand(value, spec_file, spec_file == stdin_name, packages, resolved)
        except UserError as exc:
            diagnostics.append(Diagnostic(document.value_location(path), path, str(exc)))
    return diagnostics


def _expand(
    value: str,
    spec_file: str,
    stdin: bool,
    packages: PackageResolver | None,
    resolved: dict[Path, str],
) -> str:
    if not value.startswith(PKG):
        kind = value.partition(":")[0]
        raise UserError(f"unknown template {kind!r} in {value!r}; the one there is: {PKG}PATH")
    if stdin or is_url(spec_file):
        whence = "read from standard input" if stdin else "fetched from a URL"
        raise UserError(
            f"{value}: a {PKG} path is relative to its spec file, and this spec was "
            f"{whence}; give the file itself"
        )
    if packages is None:
        raise UserError(f"{value}: {PKG} templates are not expanded here")
    directory = (Path(spec_file).parent / value.removeprefix(PKG)).resolve()
    if directory not in resolved:
        try:
            resolved[directory] = packages(directory)
        except UserError as exc:
            raise UserError(f"{value}: {exc}") from None
    return resolved[directory]


def _image_paths(data: dict[str, Any]) -> list[DataPath]:
    """Where a spec names images: those of its values that are there."""
    paths: list[DataPath] = []
    if isinstance(data.get("kernel"), dict) and "image" in data["kernel"]:
        paths.append(("kernel", "image"))
    if isinstance(data.get("init"), list):
        paths += [("init", index) for index in range(len(data["init"]))]
    for section in SECTIONS:
        entries = data.get(section)
        if isinstance(entries, list):
            paths += [
                (section, index, "image")
                for index, entry in enumerate(entries)
                if isinstance(entry, dict) and "image" in entry
            ]
    return paths


def _holder(data: dict[str, Any], path: DataPath) -> tuple[Any, str | int]:
    """The list or mapping that holds the value at `path`, and its key there."""
    holder: Any = data
    for part in path[:-1]:
        holder = holder[part]
    return holder, path[-1]
