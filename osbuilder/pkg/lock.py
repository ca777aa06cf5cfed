"""Locking a recipe's Debian packages: `pkg lock`, `pkg lock --check`, and the refresh of
versions a mirror dropped (`pkg build --refresh-missing`).

A lock is resolved per architecture against the archives the recipe names (or Debian's
defaults, as mmdebstrap reads them) and written atomically as DIR/build.lock. The image
tag hashes the recipe directory, lock included: a new lock is a new tag.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from msgspec import Struct

from osbuilder.atomicfile import atomic_output
from osbuilder.errors import ExternalError, UserError, cannot_write
from osbuilder.oci.platform import SUPPORTED_ARCHES
from osbuilder.pkg.apt import Archive, apt_state, archives_for, selection
from osbuilder.pkg.lockfile import LOCK_FILE, LockedPackage, PackageLock, format_lock, read_lock
from osbuilder.pkg.recipe import RECIPE_FILE, LoadedRecipe

log = logging.getLogger(__name__)


class Request(Struct, frozen=True):
    """What a recipe asks of Debian: a variant, packages, and where they come from."""

    variant: str
    packages: tuple[str, ...]
    suite: str
    mirror: str | None

    @property
    def words(self) -> tuple[str, ...]:
        return (self.variant, *self.packages)

    def arguments(self, architecture: str) -> list[str]:
        packages = [p.replace("${ARCH}", architecture) for p in self.packages]
        return selection(self.variant, packages, self.suite, architecture)

    def archives(self, mirror: str | None = None) -> list[Archive]:
        return archives_for(self.suite, mirror or self.mirror)


def recipe_request(loaded: LoadedRecipe) -> Request | None:
    """The Debian packages the recipe builds from, or None when it uses none."""
    recipe = loaded.recipe
    if recipe.debian is not None:
        root = recipe.debian
        return Request(root.variant, tuple(root.packages), root.suite, root.mirror)
    if recipe.kernel is not None:
        kernel = recipe.kernel
        package = kernel.package + (f"={kernel.version}" if kernel.version else "")
        return Request("extract", (package,), kernel.suite, kernel.mirror)
    return None


def lock_path(loaded: LoadedRecipe) -> Path:
    return loaded.directory / LOCK_FILE


def current_lock(loaded: LoadedRecipe, architecture: str) -> PackageLock | None:
    """The recipe's lock, checked to cover what the recipe asks for `architecture`; None
    when the recipe has no lock (or needs no Debian packages)."""
    request = recipe_request(loaded)
    lock = read_lock(loaded.directory)
    if request is None or lock is None:
        return None
    where = lock_path(loaded)
    if lock.request != request.words:
        raise UserError(
            f"{where}: locked for `{' '.join(lock.request)}`, but {RECIPE_FILE} now asks for "
            f"`{' '.join(request.words)}`; run `osbuilder pkg lock {loaded.directory}`"
        )
    if not lock.packages_for(architecture):
        raise UserError(
            f"{where}: no packages locked for {architecture} (it has "
            f"{', '.join(lock.architectures) or 'none'}); run `osbuilder pkg lock --arch "
            f"{architecture} {loaded.directory}`"
        )
    return lock


def lock_recipe(
    loaded: LoadedRecipe,
    architectures: Sequence[str] = SUPPORTED_ARCHES,
    *,
    mirror: str | None = None,
    keyring: Path | None = None,
) -> PackageLock | None:
    """Resolve the recipe for `architectures` and write its lock (other architectures
    already locked stay as they are); None for a recipe without Debian packages."""
    request = recipe_request(loaded)
    if request is None:
        return None
    previous = read_lock_leniently(loaded)
    lock = PackageLock(request.words, (), ())
    if previous is not None and previous.request == request.words:
        lock = previous
    for architecture in architectures:
        with apt_state(request.archives(mirror), architecture, keyring) as state:
            packages = state.resolve(request.arguments(architecture))
            lock = lock.replace_architecture(architecture, state.sources(), packages)
    write_lock(loaded, lock)
    return lock


def check_lock(
    loaded: LoadedRecipe, *, mirror: str | None = None, keyring: Path | None = None
) -> list[str]:
    """What moved since the recipe was locked: one line per package the archives no
    longer serve or would now resolve differently."""
    request = recipe_request(loaded)
    if request is None:
        return []
    where = lock_path(loaded)
    lock = read_lock(loaded.directory)
    if lock is None:
        return [f"{where}: missing; write it with `osbuilder pkg lock {loaded.directory}`"]
    if lock.request != request.words:
        return [
            f"{where}: locked for `{' '.join(lock.request)}`, but {RECIPE_FILE} now asks for "
            f"`{' '.join(request.words)}`"
        ]
    lines = []
    for architecture in lock.architectures:
        locked = {p.name: p for p in lock.packages_for(architecture)}
        with apt_state(request.archives(mirror), architecture, keyring) as state:
            state.prepare(locked)
            current = {p.name: p for p in state.resolve(request.arguments(architecture))}
            for name, package in sorted(locked.items()):
                now = current.get(name)
                if not state.has(package):
                    instead = f" (it has {now.version})" if now else ""
                    lines.append(f"{where}: {package}: no longer on the mirror{instead}")
                elif now is None:
                    lines.append(f"{where}: {package}: no longer needed")
                elif now.version != package.version:
                    lines.append(f"{where}: {package}: the mirror has {now.version}")
            for name in sorted(current.keys() - locked.keys()):
                lines.append(f"{where}: {current[name]}: newly needed")
    return lines


def refresh_missing(
    loaded: LoadedRecipe,
    lock: PackageLock,
    architecture: str,
    missing: Sequence[LockedPackage],
    *,
    mirror: str | None = None,
    keyring: Path | None = None,
) -> PackageLock:
    """The lock with `architecture` resolved again, every version the archives still serve
    kept as it was where the new ones allow it; the new lock is written, with one line per
    package that moved."""
    request = recipe_request(loaded)
    assert request is not None
    before = {p.name: p for p in lock.packages_for(architecture)}
    with apt_state(request.archives(mirror), architecture, keyring) as state:
        state.prepare(before)
        kept = [p for p in before.values() if state.has(p)]
        try:
            packages = state.resolve(request.arguments(architecture), pins=kept)
        except ExternalError:  # what replaces the dropped ones needs newer versions of others
            packages = state.resolve(request.arguments(architecture))
        refreshed = lock.replace_architecture(architecture, state.sources(), packages)
    now = {p.name: p for p in packages}
    gone = {p.name for p in missing}
    for name, package in sorted(before.items()):
        moved = now.get(name)
        if moved is not None and moved.version == package.version:
            continue
        instead = f"locked {moved.version} instead" if moved else "no longer needed"
        if name in gone:
            log.warning("%s: %s is gone from the mirror: %s", lock_path(loaded), package, instead)
        else:
            why = "what replaces the packages gone needs it"
            log.warning("%s: %s: %s, as %s", lock_path(loaded), package, instead, why)
    for name in sorted(now.keys() - before.keys()):
        log.warning("%s: %s is newly needed", lock_path(loaded), now[name])
    write_lock(loaded, refreshed)
    return refreshed


def write_lock(loaded: LoadedRecipe, lock: PackageLock) -> None:
    path = lock_path(loaded)
    try:
        with atomic_output(path) as file:
            file.write(format_lock(lock, str(loaded.directory)).encode())
    except OSError as exc:
        raise cannot_write(path, exc, "make the recipe directory writable") from None


def read_lock_leniently(loaded: LoadedRecipe) -> PackageLock | None:
    """The current lock, or None when it is missing or unreadable (it is being replaced)."""
    try:
        return read_lock(loaded.directory)
    except UserError:
        return None
