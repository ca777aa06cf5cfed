"""`osbuilder pkg build`: a recipe directory to an image in the content store.

Layers: the Debian root filesystem or the kernel, then the recipe's files.
The image is named IMAGE:TAG with the content-derived tag; an image the name
already holds for the target architecture is not built again unless forced.
Built for a second architecture, the name becomes an image index of both (as
LinuxKit's packages are), whatever order they were built in. Nothing is named
before every blob of the image is verified and in place, so a failed build
leaves at most unnamed blobs that `cache gc` removes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from msgspec import Struct

from osbuilder.epoch import source_date_epoch
from osbuilder.oci.imagewriter import (
    ImageSpec,
    Layer,
    canonical_json,
    new_layer,
    write_image,
    write_index,
)
from osbuilder.oci.model import Descriptor, ImageConfig, is_index, parse_json
from osbuilder.oci.platform import TargetPlatform
from osbuilder.oci.reference import parse_reference
from osbuilder.oci.store import ContentStore
from osbuilder.pkg.bytecode import Bytecode
from osbuilder.pkg.debian import Mirror, build_root_layer
from osbuilder.pkg.fetch import PackagesGone, locked_mirror
from osbuilder.pkg.kernel import build_kernel_layer
from osbuilder.pkg.layers import add_files
from osbuilder.pkg.lock import current_lock, recipe_request, refresh_missing
from osbuilder.pkg.lockfile import LOCK_FILE, PackageLock
from osbuilder.pkg.recipe import IMAGE_CONFIG_KEYS, RECIPE_FILE, LoadedRecipe, PackageConfig
from osbuilder.pkg.stdlib import PrunedStdlib
from osbuilder.pkg.tag import package_reference

log = logging.getLogger(__name__)

LABEL = "org.mobyproject.config"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class BuiltPackage(Struct, frozen=True):
    reference: str
    descriptor: Descriptor
    built: bool  # False: the store had it already


class Sources(Struct, frozen=True):
    """Where a build may take Debian packages from, and what it may do about a lock."""

    #: Mirrors to try first (an unlocked build: instead of the recipe's).
    mirrors: tuple[str, ...] = ()
    #: The keyring of the mirrors' Release files (an unlocked build, or a refresh).
    keyring: Path | None = None
    #: Re-lock the versions no mirror serves any more, rather than fail.
    refresh_missing: bool = False


DEFAULT_SOURCES = Sources()


def build_package(
    store: ContentStore,
    loaded: LoadedRecipe,
    *,
    architecture: str = "amd64",
    image: str | None = None,
    force: bool = False,
    sources: Sources = DEFAULT_SOURCES,
) -> BuiltPackage:
    what = str(loaded.directory / RECIPE_FILE)
    lock = current_lock(loaded, architecture)
    reference = str(parse_reference(package_reference(loaded, image)))
    recipe = loaded.recipe
    target = TargetPlatform(architecture)
    with store.using():
        named = store.lookup(reference)
        held = images_by_platform(store, named)
        others = [e for e in held if not is_for(e, target)]
        if named is not None and len(others) < len(held) and not force:
            return BuiltPackage(reference, named, built=False)
        epoch = source_date_epoch()
        layers: list[Layer] = []
        bytecode = Bytecode(recipe.bytecode, epoch, what) if recipe.bytecode else None
        stdlib = None
        if recipe.stdlib is not None and recipe.bytecode is not None:
            stdlib = PrunedStdlib(recipe.stdlib, recipe.bytecode, epoch, what)
        try:
            with _mirror(loaded, lock, architecture, sources) as mirror:
                # A refreshed lock is a new tag.
                reference = str(parse_reference(package_reference(loaded, image)))
                if recipe.debian is not None:
                    log.info("%s: running mmdebstrap", what)
                    layers.append(
                        build_root_layer(
                            store,
                            recipe.debian,
                            architecture,
                            epoch,
                            what,
                            bytecode,
                            mirror,
                            stdlib,
                        )
                    )
                if recipe.kernel is not None:
                    log.info("%s: unpacking %s", what, recipe.kernel.package)
                    layers.append(
                        build_kernel_layer(store, recipe.kernel, architecture, epoch, what, mirror)
                    )
            if recipe.files:
                with new_layer(store) as layer:
                    add_files(layer, loaded.directory, recipe.files, epoch, bytecode, stdlib)
                assert layer.result is not None
                layers.append(layer.result)
            if stdlib is not None:  # a layer of its own: it needs every module of the others
                with new_layer(store) as layer:
                    stdlib.finish(layer)
                assert layer.result is not None
                layers.append(layer.result)
        finally:
            if bytecode is not None:
                bytecode.discard()  # what a failed layer left
            if stdlib is not None:
                stdlib.discard()
        spec = image_spec(recipe.config, architecture, epoch, reference)
        descriptor = write_image(store, layers, spec)
        if others:
            entry = descriptor.replace(platform=target.index_platform())
            descriptor = write_index(store, [*others, entry])
        store.tag(reference, descriptor)
        if lock is None and recipe_request(loaded) is not None:
            log.warning(
                "%s: built unpinned: no %s, so its Debian packages are whatever the mirror had "
                "today; pin them with `osbuilder pkg lock %s`",
                what,
                LOCK_FILE,
                loaded.directory,
            )
        return BuiltPackage(reference, descriptor, built=True)


@contextmanager
def _mirror(
    loaded: LoadedRecipe, lock: PackageLock | None, architecture: str, sources: Sources
) -> Iterator[Mirror]:
    """Where mmdebstrap takes the packages: for a locked recipe, a repository of exactly
    the locked .debs (downloaded and checked first); else the mirrors given or the recipe's."""
    keyring = str(sources.keyring) if sources.keyring else None
    request = recipe_request(loaded)
    if lock is None or request is None:
        yield Mirror(lines=sources.mirrors, keyring=keyring)
        return
    what = str(loaded.directory / RECIPE_FILE)

    def repository(lock: PackageLock) -> contextlib.AbstractContextManager[Mirror]:
        return locked_mirror(
            lock, architecture, request.suite, sources.mirrors, what, loaded.directory
        )

    try:
        with repository(lock) as mirror:
            yield mirror
            return
    except PackagesGone as gone:
        if not sources.refresh_missing:
            raise
        missing = gone.missing
    # Resolved again against the recipe's archives: the places the lock came from.
    lock = refresh_missing(loaded, lock, architecture, missing, keyring=sources.keyring)
    with repository(lock) as mirror:
        yield mirror


def images_by_platform(store: ContentStore, named: Descriptor | None) -> list[Descriptor]:
    """The complete images `named` holds, each with its platform: the entries of an index,
    or a single image with the platform its config gives."""
    if named is None or store.missing_blobs(named):
        return []
    if is_index(named.media_type):
        return [
            entry
            for entry in store.index(named.digest).manifests
            if entry.platform is not None
            and store.has_blob(entry.digest)
            and not store.missing_blobs(entry)
        ]
    manifest = store.manifest(named.digest)
    config = parse_json(
        ImageConfig, store.read_blob(manifest.config.digest), f"config of {named.digest}"
    )
    platform = TargetPlatform(config.architecture, config.os, config.variant).index_platform()
    return [Descriptor(named.media_type, named.digest, named.size, platform=platform)]


def is_for(entry: Descriptor, target: TargetPlatform) -> bool:
    platform = entry.platform
    return platform is not None and target.matches(
        platform.os, platform.architecture, platform.variant
    )


def image_spec(
    config: PackageConfig | None, architecture: str, epoch: int, reference: str
) -> ImageSpec:
    """The image config: entrypoint, cmd, env, workdir; LinuxKit's defaults in the label."""
    labels = {"org.opencontainers.image.ref.name": reference}
    if config is None:
        return ImageSpec(
            architecture=architecture, env=[DEFAULT_PATH], labels=labels, created=epoch
        )
    label = {k: v for k, v in config.to_data().items() if k not in IMAGE_CONFIG_KEYS}
    if label:
        labels[LABEL] = canonical_json(label).decode()
    env = list(config.env or [])
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, DEFAULT_PATH)
    return ImageSpec(
        architecture=architecture,
        entrypoint=config.entrypoint,
        cmd=config.cmd,
        env=env,
        working_dir=config.workdir,
        labels=labels,
        created=epoch,
    )
