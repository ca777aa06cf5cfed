"""Spec locks at work: a spec's images resolved into its lock (`osbuilder lock`), a lock
checked against what its references name now (`lock --check`), and the pins a build
takes from it (spec/lock.py has the file and its checks).

Images are resolved the way `build` gets them (assemble/images.py): one complete in the
content store is taken from there as it is, any other is asked of its registry (`--pull`:
every tag is; `--offline`: none is). Resolving fetches manifests and configs, never
layers. The first platform resolves the reference; the others resolve the digest it
gave, so every platform of an image comes from the one index that was locked.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from msgspec import Struct

from osbuilder.assemble.images import ImageSource, Pin
from osbuilder.atomicfile import atomic_output, remove_abandoned
from osbuilder.errors import UserError, WriteFailed
from osbuilder.oci.platform import TargetPlatform
from osbuilder.oci.reference import parse_reference
from osbuilder.spec import LoadedSpec, SpecInvalid
from osbuilder.spec.images import image_references
from osbuilder.spec.lock import (
    LockedImage,
    SpecLock,
    coverage_errors,
    format_lock,
    lock_path,
    moved,
    read_lock,
)
from osbuilder.spec.remote import is_url
from osbuilder.spec.source import DataPath, Diagnostic, at

log = logging.getLogger(__name__)


def platform_name(target: TargetPlatform) -> str:
    """`target` as a lock names it: as an index does (arm64 with its variant, v8)."""
    return str(target.index_platform())


class Written(Struct, frozen=True):
    path: Path
    lock: SpecLock
    changes: list[str]  # against the lock it replaced, one line each


def spec_lock_path(specs: Sequence[str]) -> Path:
    """Where the lock of `specs` goes; a clear error when the first has no place beside it."""
    path = lock_path(specs[0])
    if path is None:
        source = "a URL" if is_url(specs[0]) else "standard input"
        raise UserError(
            f"{specs[0]}: a lock goes beside the first spec file, and {source} has no place "
            "beside it; give a spec file first"
        )
    return path


def existing_lock(specs: Sequence[str]) -> SpecLock | None:
    """The lock `specs` have now; None when there is none, or when it is so malformed that
    it is to be written afresh."""
    try:
        return read_lock(spec_lock_path(specs), specs)
    except SpecInvalid as exc:
        log.warning("%s (writing it afresh)", exc)
        return None


def resolve_images(
    loaded: LoadedSpec, sources: Sequence[ImageSource], jobs: int
) -> dict[str, LockedImage]:
    """What each image reference of `loaded` names now, for the platform of each of
    `sources`; an error is located at the spec's line naming the image."""
    first_use: dict[str, DataPath] = {}
    for reference, path in image_references(loaded.spec):
        first_use.setdefault(reference, path)
    first, *others = sources

    def resolve(reference: str) -> LockedImage:
        with loaded.locating(), at(first_use[reference]):
            image = first.resolve(reference)
            manifests = {platform_name(first.target): image.manifest_descriptor.digest}
            by_digest = str(parse_reference(reference).with_digest(image.digest))
            for source in others:
                resolved = source.resolve(by_digest)
                manifests[platform_name(source.target)] = resolved.manifest_descriptor.digest
        return LockedImage(reference, image.digest, manifests)

    # Each reference costs round trips to its registry, and they wait on nothing else.
    pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(first_use))))
    try:
        return {image.reference: image for image in pool.map(resolve, first_use)}
    finally:  # after a failure (or Ctrl-C), start no other reference
        pool.shutdown(wait=False, cancel_futures=True)


def write_lock(
    specs: Sequence[str],
    loaded: LoadedSpec,
    previous: SpecLock | None,
    sources: Sequence[ImageSource],
    jobs: int,
) -> Written:
    """Resolve the images of `loaded` (made of the files `specs`) and write them to the
    lock beside the first file, atomically: an interrupted `lock` leaves the `previous`
    lock, or none, and nothing half-written."""
    path = spec_lock_path(specs)
    lock = SpecLock(str(path), resolve_images(loaded, sources, jobs))
    # The header's command runs in the lock's directory: the lock does not depend on
    # where `lock` was run.
    here = [os.path.relpath(spec, path.parent) if lock_path(spec) else spec for spec in specs]
    text = format_lock(lock, here)
    remove_abandoned(path.parent)  # what a killed `lock` (or build) left there
    try:
        with atomic_output(path) as file:
            file.write(text.encode())
    except OSError as exc:
        raise WriteFailed(f"{path}: cannot write the lock: {exc.strerror or exc}") from None
    return Written(path, lock, _changes(previous, lock))


def _changes(previous: SpecLock | None, lock: SpecLock) -> list[str]:
    old = previous.images if previous is not None else {}
    lines = []
    for reference, image in sorted(lock.images.items()):
        before = old.get(reference)
        if before is None:
            lines.append(f"{reference} {image.digest} (new)")
        elif before.digest != image.digest:
            lines.append(f"{reference} {before.digest} -> {image.digest}")
    lines += [f"{ref} (no longer in the spec)" for ref in sorted(old) if ref not in lock.images]
    return lines


def check_lock(
    specs: Sequence[str],
    loaded: LoadedSpec,
    lock: SpecLock,
    sources: Sequence[ImageSource],
    jobs: int,
) -> list[Diagnostic]:
    """How `lock` differs from what the references of `loaded` name now, for the platforms
    of `sources`: images it lacks or no longer needs, platforms it lacks, tags moved."""
    platforms = [platform_name(source.target) for source in sources]
    drift = coverage_errors(lock, loaded, platforms, specs)
    return drift + list(moved(lock, resolve_images(loaded, sources, jobs)))


def build_pins(specs: Sequence[str], loaded: LoadedSpec, target: TargetPlatform) -> dict[str, Pin]:
    """The digests a build of `specs` takes its images by, from their lock (none without
    one); SpecInvalid, at each line, for all that keeps the lock from giving them."""
    path = lock_path(specs[0])
    lock = read_lock(path, specs) if path is not None else None
    if lock is None:
        return {}
    log.info("%s: taking every image by its locked digest", path)
    platform = platform_name(target)
    problems = coverage_errors(lock, loaded, [platform], specs)
    if problems:
        raise SpecInvalid(problems)
    return {
        reference: Pin(image.digest, image.manifests[platform])
        for reference, image in lock.images.items()
    }
