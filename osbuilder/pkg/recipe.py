"""Package recipes: DIR/build.yml, validated with located errors like specs.

image: osbuilder/redis            # the image name; the tag is derived from content
debian:                           # a root filesystem from Debian packages (mmdebstrap)
  suite: bookworm
  variant: extract                # mmdebstrap's variant; extract: unpack, no scripts
  packages: [redis-server]
  drop: [usr/share/doc/*, ...]    # globs of paths left out of the image
  keep: [etc/ssl/certs, ...]      # or only these (with what is below), if given
kernel:                           # or: a kernel image from a Debian kernel package
  package: linux-image-6.1.0-56-cloud-${ARCH}   # ${ARCH}: the architecture built
  version: 6.1.192-2
  modules: [virtio*, overlay, amd64:ata_piix]   # module-name globs kept (with
                                  # dependencies); ARCH:GLOB only for that architecture
files:                            # files and directories copied from DIR
  - source: redis.conf
    path: /etc/redis/osbuilder.conf
config:                           # entrypoint, cmd, env, workdir: the image config;
  entrypoint: [redis-server]      # every other key (LinuxKit's) goes to the
  net: host                       # org.mobyproject.config label
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationError

from osbuilder.errors import UserError
from osbuilder.oci.platform import SUPPORTED_ARCHES
from osbuilder.spec.diagnostics import diagnostics_from
from osbuilder.spec.fieldtypes import AbsolutePath, ImageRef, OctalMode, fail
from osbuilder.spec.model import ImageConfig, SpecModel
from osbuilder.spec.source import (
    DataPath,
    Diagnostic,
    Location,
    SpecSyntaxError,
    load_document,
)

RECIPE_FILE = "build.yml"

Variant = Literal[
    "extract",
    "custom",
    "essential",
    "apt",
    "required",
    "minbase",
    "buildd",
    "important",
    "standard",
]


class DebianRoot(SpecModel):
    """A root filesystem made by mmdebstrap from Debian packages."""

    suite: str = Field("bookworm", description="Debian suite.")
    variant: Variant = Field("extract", description="mmdebstrap variant.")
    packages: list[str] = Field(min_length=1, description="Packages, optionally pkg=version.")
    mirror: str | None = Field(None, description="Mirror URL (default: mmdebstrap's).")
    drop: list[str] = Field(default_factory=list, description="Globs of paths to leave out.")
    keep: list[str] | None = Field(
        None,
        description="Globs of the only paths to take, with what is below them (and the "
        "directories above); `drop` still applies to them.",
        min_length=1,
    )


def _module_pattern(pattern: str) -> str:
    """A module glob, or ARCH:GLOB for one architecture (a misspelt ARCH would never apply)."""
    qualifier, sep, glob = pattern.rpartition(":")
    if sep and qualifier not in SUPPORTED_ARCHES:
        fail(
            f"{qualifier!r} is not an architecture; write ARCH:GLOB with ARCH one of "
            f"{', '.join(SUPPORTED_ARCHES)}"
        )
    if not glob:
        fail("an empty module pattern")
    return pattern


ModulePattern = Annotated[str, AfterValidator(_module_pattern)]


class KernelSource(SpecModel):
    """A kernel image from a Debian linux-image package, LinuxKit's layout."""

    package: str = Field(
        description="The linux-image package, e.g. linux-image-6.1.0-56-cloud-amd64; "
        "${ARCH} stands for the architecture being built (amd64, arm64)."
    )
    version: str = Field(description="Its exact version: the recipe pins it.")
    suite: str = Field("bookworm", description="Debian suite to fetch it from.")
    mirror: str | None = None
    modules: list[ModulePattern] | None = Field(
        None,
        description="Module-name globs to keep, with their dependencies (default: all); "
        "ARCH:GLOB applies to that architecture only.",
    )

    def package_for(self, architecture: str) -> str:
        return self.package.replace("${ARCH}", architecture)

    def modules_for(self, architecture: str) -> list[str] | None:
        """The globs that apply to `architecture`, without their prefixes."""
        if self.modules is None:
            return None
        chosen = []
        for pattern in self.modules:
            qualifier, sep, glob = pattern.rpartition(":")
            if not sep or qualifier == architecture:
                chosen.append(glob)
        return chosen


class FileEntry(SpecModel):
    """One of: a file or directory copied from the recipe, a symlink, or literal contents."""

    path: AbsolutePath = Field(description="Where it goes in the image.")
    source: str | None = Field(
        None, description="File or directory, relative to the recipe directory."
    )
    symlink: str | None = Field(None, description="Make a symlink pointing here.")
    contents: str | None = Field(None, description="The file's contents.")
    mode: OctalMode | None = Field(
        None, description="Mode (default: 0755 for executables and directories, else 0644)."
    )


class PackageConfig(ImageConfig):
    """The image config (entrypoint, cmd, env, workdir) and LinuxKit's label defaults."""

    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    workdir: AbsolutePath | None = None


#: Keys of `config` that go to the image config rather than the label.
IMAGE_CONFIG_KEYS = ("entrypoint", "cmd", "workdir", "env")


class Recipe(SpecModel):
    image: ImageRef = Field(description="Image name, without tag: osbuilder/NAME.")
    debian: DebianRoot | None = None
    kernel: KernelSource | None = None
    files: list[FileEntry] = Field(default_factory=list)
    config: PackageConfig | None = None
    bytecode: str | None = Field(
        None, description="Python version (e.g. 3.11) to precompile the image's modules for."
    )


@dataclass(frozen=True)
class LoadedRecipe:
    directory: Path
    recipe: Recipe

    @property
    def name(self) -> str:
        return self.recipe.image


class RecipeInvalid(UserError):
    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__("\n".join(str(d) for d in diagnostics))


def load_recipe(directory: Path) -> LoadedRecipe:
    path = directory / RECIPE_FILE
    if not directory.is_dir():
        raise UserError(f"{directory}: not a package directory")
    if not path.is_file():
        raise UserError(f"{directory}: no {RECIPE_FILE}; a package directory needs one")
    try:
        document = load_document(path)
    except SpecSyntaxError as exc:
        raise RecipeInvalid([exc.diagnostic]) from None
    try:
        recipe = Recipe.model_validate(document.data if document.data is not None else {})
    except ValidationError as exc:
        raise RecipeInvalid(diagnostics_from(exc, document, Recipe)) from None
    origin = Location(str(path), 1, 1)
    problems: list[Diagnostic] = []
    if recipe.debian is None and recipe.kernel is None and not recipe.files:
        problems.append(
            Diagnostic(
                origin, (), "give 'debian' (a root filesystem), 'kernel', or at least 'files'"
            )
        )
    if recipe.debian is not None and recipe.kernel is not None:
        problems.append(
            Diagnostic(
                document.key_location(("kernel",)),
                ("kernel",),
                "'debian' and 'kernel' exclude each other: a kernel image is an image of its own",
            )
        )
    if ":" in recipe.image.rsplit("/", 1)[-1] or "@" in recipe.image:
        problems.append(
            Diagnostic(
                document.value_location(("image",)),
                ("image",),
                "name the image without a tag: osbuilder derives the tag from the content",
            )
        )
    for index, entry in enumerate(recipe.files):
        kinds = [k for k in ("source", "symlink", "contents") if getattr(entry, k) is not None]
        entry_path: DataPath = ("files", index)
        if len(kinds) != 1:
            found = " and ".join(kinds) or "none"
            problems.append(
                Diagnostic(
                    document.value_location(entry_path),
                    entry_path,
                    f"set exactly one of source, symlink, contents (found {found})",
                )
            )
        elif entry.source is not None and not (directory / entry.source).exists():
            where: DataPath = ("files", index, "source")
            problems.append(
                Diagnostic(
                    document.value_location(where),
                    where,
                    f"{entry.source!r} does not exist (sources are relative to {directory})",
                )
            )
    if problems:
        raise RecipeInvalid(problems)
    return LoadedRecipe(directory, recipe)
