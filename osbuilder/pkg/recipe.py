"""Package recipes: DIR/build.yml, validated with located errors like specs.

image: osbuilder/redis            # the image name; the tag is derived from content
debian:                           # a root filesystem from Debian packages (mmdebstrap)
  suite: bookworm
  variant: extract                # mmdebstrap's variant; extract: unpack, no scripts
  packages: [redis-server]
  drop: [usr/share/doc/*, ...]    # globs of paths left out of the image
  keep: [etc/ssl/certs, ...]      # or only these (with what is below), if given
  programs: [usr/bin/redis-server]  # only the shared libraries these load stay
  dlopen: [usr/lib/*/libnss_*]    # and those they dlopen (no ELF header shows them)
kernel:                           # or: a kernel image from a Debian kernel package
  package: linux-image-cloud-${ARCH}   # ${ARCH}: the architecture built; the lock
                                  # (build.lock) records the exact kernel package
  modules: [virtio*, overlay, amd64:ata_piix]   # module-name globs kept (with
                                  # dependencies); ARCH:GLOB only for that architecture
  compressed: [xfs, btrfs]        # of those, kept xz-compressed (loaded on demand)
files:                            # files and directories copied from DIR
  - source: redis.conf
    path: /etc/redis/osbuilder.conf
bytecode: "3.11"                  # .pyc files for the image's modules (that Python)
stdlib:                           # of the standard library, only what these import
  modules: [osbuilder.guest]      # (compiled, without sources)
  path: [/usr/lib/python3/dist-packages]
config:                           # entrypoint, cmd, env, workdir: the image config;
  entrypoint: [redis-server]      # every other key (LinuxKit's) goes to the
  net: host                       # org.mobyproject.config label
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from annotated_types import MinLen
from msgspec import Struct
from pydantic import AfterValidator, Field, model_validator

from osbuilder.errors import UserError
from osbuilder.oci.platform import SUPPORTED_ARCHES
from osbuilder.spec.diagnostics import diagnostics_from
from osbuilder.spec.fieldtypes import AbsolutePath, ImageRef, OctalMode
from osbuilder.spec.model import ImageConfig
from osbuilder.spec.source import (
    DataPath,
    Diagnostic,
    Location,
    SpecSyntaxError,
    load_document,
)
from osbuilder.spec.validation import Model, SchemaError, invalid, parse

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


class DebianRoot(Model):
    """A root filesystem made by mmdebstrap from Debian packages."""

    suite: Annotated[str, Field(description="Debian suite.")] = "bookworm"
    variant: Annotated[Variant, Field(description="mmdebstrap variant.")] = "extract"
    packages: Annotated[
        list[str], Field(min_length=1, description="Packages, optionally pkg=version.")
    ]
    mirror: Annotated[str | None, Field(description="Mirror URL (default: mmdebstrap's).")] = None
    drop: Annotated[
        list[str], Field(default_factory=list, description="Globs of paths to leave out.")
    ]
    keep: Annotated[
        Annotated[list[str], MinLen(1)] | None,
        Field(
            description="Globs of the only paths to take, with what is below them (and the "
            "directories above); `drop` still applies to them."
        ),
    ] = None
    programs: Annotated[
        Annotated[list[str], MinLen(1)] | None,
        Field(
            description="Globs of the ELF programs the image runs: every shared library "
            "outside their closure (DT_NEEDED, DT_RPATH/DT_RUNPATH, ld.so.conf) is left "
            "out, and so is every program or plugin that needed one; a library a program "
            "needs and the image lacks fails the build (default: every library stays)."
        ),
    ] = None
    dlopen: Annotated[
        list[str],
        Field(
            default_factory=list,
            description="Globs of the shared libraries the programs load at run time "
            "(dlopen: NSS modules, plugins), which no ELF header shows: kept, with their "
            "own closure; only with `programs`.",
        ),
    ]

    @model_validator(mode="after")
    def _dlopen_with_programs(self) -> Self:
        if self.dlopen and self.programs is None:
            invalid("'dlopen' keeps libraries for 'programs': give 'programs' too")
        return self


def _module_pattern(pattern: str) -> str:
    """A module glob, or ARCH:GLOB for one architecture (a misspelt ARCH would never apply)."""
    qualifier, sep, glob = pattern.rpartition(":")
    if sep and qualifier not in SUPPORTED_ARCHES:
        invalid(
            f"{qualifier!r} is not an architecture; write ARCH:GLOB with ARCH one of "
            f"{', '.join(SUPPORTED_ARCHES)}"
        )
    if not glob:
        invalid("an empty module pattern")
    return pattern


ModulePattern = Annotated[str, AfterValidator(_module_pattern)]


class KernelSource(Model):
    """A kernel image from a Debian linux-image package, LinuxKit's layout."""

    package: Annotated[
        str,
        Field(
            description="The linux-image package, e.g. linux-image-cloud-${ARCH} (the "
            "metapackage: the lock records the kernel it depends on); "
            "${ARCH} stands for the architecture being built (amd64, arm64)."
        ),
    ]
    version: Annotated[
        str | None,
        Field(description="A version to ask for (default: what the lock records, build.lock)."),
    ] = None
    suite: Annotated[str, Field(description="Debian suite to fetch it from.")] = "bookworm"
    mirror: Annotated[str | None, Field(description="Mirror URL (default: deb.debian.org).")] = None
    modules: Annotated[
        list[ModulePattern] | None,
        Field(
            description="Module-name globs to keep, with their dependencies (default: all); "
            "ARCH:GLOB applies to that architecture only."
        ),
    ] = None

    compressed: Annotated[
        list[ModulePattern],
        Field(
            default_factory=list,
            description="Module-name globs of the modules kept xz-compressed: those loaded "
            "only on demand (a file system at its mount, a driver of another cloud's "
            "devices), which then take about a sixth of their size in the system; the init "
            "and modprobe inflate one as they load it. ARCH:GLOB as in `modules`.",
        ),
    ]

    def package_for(self, architecture: str) -> str:
        return self.package.replace("${ARCH}", architecture)

    def modules_for(self, architecture: str) -> list[str] | None:
        """The globs that apply to `architecture`, without their prefixes."""
        if self.modules is None:
            return None
        return _for_architecture(self.modules, architecture)

    def compressed_for(self, architecture: str) -> list[str]:
        return _for_architecture(self.compressed, architecture)


def _for_architecture(patterns: list[str], architecture: str) -> list[str]:
    """The globs of ARCH:GLOB patterns that apply to `architecture`, without ARCH."""
    chosen = []
    for pattern in patterns:
        qualifier, sep, glob = pattern.rpartition(":")
        if not sep or qualifier == architecture:
            chosen.append(glob)
    return chosen


class FileEntry(Model):
    """One of: a file or directory copied from the recipe, a symlink, or literal contents."""

    path: Annotated[AbsolutePath, Field(description="Where it goes in the image.")]
    source: Annotated[
        str | None, Field(description="File or directory, relative to the recipe directory.")
    ] = None
    symlink: Annotated[str | None, Field(description="Make a symlink pointing here.")] = None
    contents: Annotated[str | None, Field(description="The file's contents.")] = None
    mode: Annotated[
        OctalMode | None,
        Field(description="Mode (default: 0755 for executables and directories, else 0644)."),
    ] = None


class ReducedStdlib(Model):
    """The standard library reduced to what the image's Python programs import."""

    modules: Annotated[
        list[str],
        Field(
            min_length=1,
            description="What the image's Python programs run: packages (each module in "
            "them) or modules. Everything they import, at the top or inside a function, "
            "stays, compiled; nothing else of the standard library does.",
        ),
    ]
    path: Annotated[
        list[AbsolutePath],
        Field(
            default_factory=list,
            description="Where the image has `modules` (the PYTHONPATH its programs run "
            "with); the standard library's own places are searched too.",
        ),
    ]
    exclude: Annotated[
        list[str],
        Field(
            default_factory=list,
            description="Modules left out (with their submodules) although something "
            "imports them: reached only through code the image never runs (a module's "
            "self-test, a developer tool).",
        ),
    ]


class PackageConfig(ImageConfig):
    """The image config (entrypoint, cmd, env, workdir) and LinuxKit's label defaults."""

    entrypoint: Annotated[
        list[str] | None, Field(description="The image's entrypoint (Entrypoint).")
    ] = None
    cmd: Annotated[list[str] | None, Field(description="The image's arguments (Cmd).")] = None
    workdir: Annotated[
        AbsolutePath | None, Field(description="The image's working directory (WorkingDir).")
    ] = None


#: Keys of `config` that go to the image config rather than the label.
IMAGE_CONFIG_KEYS = ("entrypoint", "cmd", "workdir", "env")


class Recipe(Model):
    """A package recipe: DIR/build.yml."""

    image: Annotated[ImageRef, Field(description="Image name, without tag: osbuilder/NAME.")]
    debian: Annotated[
        DebianRoot | None, Field(description="A root filesystem from Debian packages.")
    ] = None
    kernel: Annotated[
        KernelSource | None, Field(description="Or a kernel image from a Debian kernel package.")
    ] = None
    files: Annotated[
        list[FileEntry],
        Field(default_factory=list, description="Files and directories copied from the recipe."),
    ]
    config: Annotated[
        PackageConfig | None,
        Field(description="The image config and the org.mobyproject.config label defaults."),
    ] = None
    bytecode: Annotated[
        str | None,
        Field(description="Python version (e.g. 3.11) to precompile the image's modules for."),
    ] = None
    stdlib: Annotated[
        ReducedStdlib | None,
        Field(
            description="Of the standard library, only the modules `modules` import, "
            "compiled without their sources (needs `bytecode`, the Python version)."
        ),
    ] = None


class LoadedRecipe(Struct):
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
        recipe = parse(Recipe, document.data if document.data is not None else {})
    except SchemaError as exc:
        raise RecipeInvalid(diagnostics_from(exc.problems, document)) from None
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
    if recipe.stdlib is not None and recipe.bytecode is None:
        problems.append(
            Diagnostic(
                document.key_location(("stdlib",)),
                ("stdlib",),
                "'stdlib' needs 'bytecode': the Python version its modules are compiled for",
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
