"""`osbuilder lock`: pin every image of a spec to its digest, in FILE.lock beside it."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from osbuilder.commands import common as shared
from osbuilder.errors import ExitCode, UserError

if TYPE_CHECKING:
    from osbuilder.assemble.images import ImageSource
    from osbuilder.oci.platform import TargetPlatform
    from osbuilder.spec import LoadedSpec
    from osbuilder.spec.lock import SpecLock

log = logging.getLogger(__name__)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    lock = sub.add_parser(
        "lock",
        parents=[common],
        help="pin every image a spec names to its digest, in FILE.lock",
        description="Resolve every image reference of the spec files (kernel, init, onboot, "
        "onshutdown, services, volumes) to the digest it names, and that to the manifest of "
        "each platform locked, and write them to FILE.lock beside the first file: one lock "
        "for the files merged, as build merges them. Images are resolved as build gets them "
        "(one complete in the content store as it is, any other from its registry; --pull "
        "asks the registry for every tag); no layer is fetched. build then takes every image "
        "by its locked digest.",
    )
    lock.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="spec files; the lock goes beside the first (http(s) URLs may follow it)",
    )
    lock.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the lock is not current, saying what moved",
    )
    lock.add_argument(
        "--arch",
        action="append",
        dest="arches",
        metavar="ARCH",
        help="platform to lock, repeatable: amd64 or arm64 (default: those the lock holds, "
        "else this machine's)",
    )
    shared.add_image_source_options(lock)
    shared.add_remote_options(lock)
    lock.set_defaults(handler=_lock)


def _lock(args: argparse.Namespace) -> int:
    from osbuilder.assemble.images import ImageSource
    from osbuilder.lock import existing_lock, spec_lock_path
    from osbuilder.spec import load_spec
    from osbuilder.spec.lock import read_lock

    specs = [str(spec) for spec in args.files]
    path = spec_lock_path(specs)  # (before any work: a spec on standard input has no lock)
    loaded = load_spec(specs, shared.resolve_package)
    for warning in loaded.warnings:
        log.warning("%s", warning)
    previous = read_lock(path, specs) if args.check else existing_lock(specs)
    if args.check and previous is None:
        raise UserError(f"{path} does not exist; write it: {_command(specs)}")
    store = shared.open_store(args)
    with shared.registry_when(args, not args.offline) as client:
        sources = [
            ImageSource(store, client, target, pull_always=args.pull, jobs=args.jobs)
            for target in _targets(args.arches, previous)
        ]
        if previous is not None and args.check:
            return _check(specs, loaded, previous, sources, args.jobs)
        return _write(specs, loaded, previous, sources, args.jobs)


def _command(specs: list[str]) -> str:
    from osbuilder.spec.lock import lock_command

    return lock_command(specs)


def _targets(arches: list[str] | None, previous: SpecLock | None) -> list[TargetPlatform]:
    """The platforms to lock: those asked for, else those the lock holds, else this
    machine's; each once."""
    from osbuilder.lock import platform_name
    from osbuilder.oci.platform import host_target, parse_platform

    if arches:
        targets = [parse_platform(arch) for arch in arches]
    elif previous is not None and previous.platforms:
        targets = [parse_platform(platform) for platform in previous.platforms]
    else:
        targets = [host_target()]
    return list({platform_name(target): target for target in targets}.values())


def _write(
    specs: list[str],
    loaded: LoadedSpec,
    previous: SpecLock | None,
    sources: list[ImageSource],
    jobs: int,
) -> int:
    from osbuilder.lock import write_lock

    written = write_lock(specs, loaded, previous, sources, jobs)
    for change in written.changes:
        print(change)
    print(f"{written.path} ({_summary(written.lock)})")
    return ExitCode.OK


def _check(
    specs: list[str], loaded: LoadedSpec, lock: SpecLock, sources: list[ImageSource], jobs: int
) -> int:
    from osbuilder.lock import check_lock

    drift = check_lock(specs, loaded, lock, sources, jobs)
    if drift:
        lines = [str(problem) for problem in drift]
        lines.append(f"{lock.file} is not current; update it: {_command(specs)}")
        raise UserError("\n".join(lines))
    print(f"{lock.file}: current ({_summary(lock)})")
    return ExitCode.OK


def _summary(lock: SpecLock) -> str:
    count = len(lock.images)
    return f"{count} image{'' if count == 1 else 's'}, {', '.join(lock.platforms) or 'no platform'}"
