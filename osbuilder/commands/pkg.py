"""`osbuilder pkg build`, `pkg lock` and `pkg show-tag`: package images without Docker."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from osbuilder.commands import common as shared
from osbuilder.errors import ExitCode, ExternalError
from osbuilder.oci.platform import SUPPORTED_ARCHES

if TYPE_CHECKING:
    from osbuilder.oci.platform import TargetPlatform
    from osbuilder.oci.push import PushResult
    from osbuilder.oci.reference import ImageReference
    from osbuilder.oci.registry import RegistryClient
    from osbuilder.oci.store import ContentStore
    from osbuilder.pkg.share import PackageCache, Pulled
    from osbuilder.trust.attach import Signer
    from osbuilder.trust.publish import Published

log = logging.getLogger(__name__)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    pkg = sub.add_parser(
        "pkg",
        parents=[common],
        help="build package and kernel images",
        description="Build images from recipe directories (DIR/build.yml) into the content "
        "store: root filesystems from Debian packages (mmdebstrap), kernels from Debian's "
        "kernel packages, plus files. No container daemon is involved.",
    )
    pkg_sub = pkg.add_subparsers(title="pkg commands", metavar="COMMAND")
    build = pkg_sub.add_parser("build", parents=[common], help="build recipe directories")
    build.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="recipe directories")
    build.add_argument(
        "--force", action="store_true", help="build even when the store has the image already"
    )
    build.add_argument(
        "--push",
        action="store_true",
        help="push each image once built, with its signatures (to its own name; with "
        "--cache-from, to REGISTRY/NAMESPACE/NAME:TAG)",
    )
    build.add_argument(
        "--cache-from",
        metavar="REGISTRY/NAMESPACE",
        help="share packages through this registry namespace: a recipe whose image "
        "NAME:TAG is there (for the target architecture) is pulled, not built; a registry "
        "that does not answer is warned about and the recipe built (fails with --push)",
    )
    build.add_argument(
        "--image", metavar="NAME", help="image name instead of the recipe's (one DIR only)"
    )
    build.add_argument("--arch", metavar="ARCH", help="target architecture (default: this one)")
    build.add_argument("--json", action="store_true", help="print the images built as JSON")
    _add_mirror_options(build)
    build.add_argument(
        "--refresh-missing",
        action="store_true",
        help="re-lock the packages no mirror serves any more (each is named), instead of "
        "failing; the recipe's build.lock changes, and so does its tag",
    )
    shared.add_remote_options(build)
    shared.add_signing_options(build)
    shared.add_trust_options(build)  # (the policy judges packages pulled from --cache-from)
    build.set_defaults(handler=_build)

    lock = pkg_sub.add_parser(
        "lock",
        parents=[common],
        help="pin recipes' Debian packages in DIR/build.lock",
        description="Resolve each recipe's Debian packages and their whole dependency closure "
        "against its archives, for each architecture, and write DIR/build.lock: every "
        "package's version and SHA256 as the archives' signed indexes give them. `pkg build` "
        "then installs exactly those, and the image tag changes with the lock.",
    )
    lock.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="recipe directories")
    lock.add_argument(
        "--check",
        action="store_true",
        help="write nothing; list what the mirror no longer has or has newer (exit 1 if any)",
    )
    lock.add_argument(
        "--arch",
        action="append",
        choices=SUPPORTED_ARCHES,
        metavar="ARCH",
        help=f"lock this architecture only (repeatable; default: {', '.join(SUPPORTED_ARCHES)})",
    )
    _add_mirror_options(lock, resolving=True)
    lock.set_defaults(handler=_lock)

    show = pkg_sub.add_parser(
        "show-tag", parents=[common], help="print the full reference a recipe builds"
    )
    show.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    show.add_argument("--image", metavar="NAME", help="image name instead of the recipe's")
    show.set_defaults(handler=_show_tag)
    pkg.set_defaults(handler=lambda args: _usage(pkg))


def _add_mirror_options(parser: argparse.ArgumentParser, *, resolving: bool = False) -> None:
    if resolving:
        parser.add_argument(
            "--mirror",
            metavar="URL",
            help="resolve against this archive instead of the recipe's (e.g. a snapshot)",
        )
    else:
        parser.add_argument(
            "--mirror",
            action="append",
            default=[],
            metavar="URL",
            help="take packages from this mirror (repeatable; e.g. a snapshot archive that "
            "keeps the locked versions; every .deb is still checked against the lock)",
        )
    parser.add_argument(
        "--keyring",
        type=_keyring,
        metavar="FILE",
        help="OpenPGP keyring that signs the mirror's Release files (default: Debian's, "
        "or the host's trusted keys)",
    )


def _keyring(value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{value}: no such keyring file")
    return path.resolve()


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return ExitCode.USAGE


def _build(args: argparse.Namespace) -> int:
    from osbuilder.errors import UserError
    from osbuilder.oci.reference import parse_reference
    from osbuilder.pkg.build import Sources, build_package
    from osbuilder.pkg.recipe import load_recipe
    from osbuilder.pkg.share import PackageCache, parse_namespace, shared_reference
    from osbuilder.pkg.tag import package_reference

    if args.image and len(args.dirs) > 1:
        raise UserError("--image names one image: give one DIR with it")
    namespace = parse_namespace(args.cache_from) if args.cache_from else None
    recipes = [load_recipe(directory) for directory in args.dirs]  # all valid before building
    keys = shared.signer(args)
    store = shared.open_store(args)
    target = shared.target_platform(args)
    sources = Sources(tuple(args.mirror), args.keyring, args.refresh_missing)
    results: list[dict[str, object]] = []
    with shared.registry_when(args, bool(args.push or namespace)) as client:
        cache = None
        if namespace is not None and client is not None:
            check = shared.verifier(args, store, client).check
            cache = PackageCache(namespace, store, client, check, jobs=args.jobs)
        for loaded in recipes:
            reference = str(parse_reference(package_reference(loaded, args.image)))
            pulled = None
            if cache is not None and not args.force and not _held(store, reference, target):
                pulled = _from_cache(cache, reference, target, push=args.push)
                if pulled is False:
                    cache = None  # unreachable: said once, the rest are built
            if pulled:
                source, digest = "pulled", pulled.descriptor.digest
            else:
                built = build_package(
                    store,
                    loaded,
                    architecture=target.architecture,
                    image=args.image,
                    force=args.force,
                    sources=sources,
                )
                reference, digest = built.reference, built.descriptor.digest
                source = "built" if built.built else "store"
            destination = shared_reference(namespace, reference) if namespace else None
            signed = _sign(
                store, reference, keys, destination if args.push and not pulled else None
            )
            pushed = None
            already = False
            if args.push and not pulled:  # with the signatures the store holds for it
                assert client is not None
                already = destination is not None and _already_shared(client, destination, digest)
                if not already:
                    push_result, _ = _push(store, client, reference, destination, args)
                    pushed = str(push_result.destination)
            results.append(
                {
                    "reference": reference,
                    "digest": digest,
                    "built": source == "built",
                    "source": source,
                    "pulledFrom": str(pulled.remote) if pulled else None,
                    "transferred": pulled.transferred if pulled else 0,
                    "pushedTo": pushed,
                    "alreadyShared": already,
                }
            )
            if not args.json:
                print(f"{reference} ({_describe(results[-1], signed)}, {digest})", flush=True)
    if args.json:
        shared.print_json(results)
    return ExitCode.OK


def _held(store: ContentStore, reference: str, target: TargetPlatform) -> bool:
    """Whether the store names `reference` an image for `target`, whole."""
    from osbuilder.pkg.build import images_by_platform, is_for

    with store.using():
        return any(is_for(e, target) for e in images_by_platform(store, store.lookup(reference)))


def _from_cache(
    cache: PackageCache, reference: str, target: TargetPlatform, *, push: bool
) -> Pulled | Literal[False] | None:
    """The package pulled from the cache; None: the cache has none for `target`; False:
    the cache cannot be reached, and since nothing is to be pushed, it is built here
    (as a build cache that does not answer does not stop a build). With --push, that
    push would fail after the work: it fails now instead."""
    from osbuilder.pkg.share import CacheUnreachable

    try:
        with cache.store.using():
            return cache.pull(reference, target, keep_others=push)
    except CacheUnreachable as exc:
        if push:
            raise
        log.warning("%s; building without the cache", exc)
        return False


def _already_shared(client: RegistryClient, destination: ImageReference, digest: str) -> bool:
    """Whether `destination` names this very image already: pushed by another machine
    while this one built it (builds are reproducible), or by this one before. Then it is
    not pushed again, and the registry keeps the signatures it has."""
    from osbuilder.pkg.share import CacheUnreachable

    try:
        return client.head_manifest(destination) == digest
    except ExternalError as exc:
        raise CacheUnreachable(
            f"package cache: cannot read {destination.familiar()}: {exc}"
        ) from None


def _sign(
    store: ContentStore, reference: str, keys: Signer, destination: ImageReference | None
) -> bool:
    """Sign the image `reference` names (and, when it is to be shared, as its shared name
    too: a policy judges a pull by the name pulled); whether anything was signed."""
    from osbuilder.trust.attach import sign_stored

    if not keys:
        return False
    signed = sign_stored(store, reference, keys)
    if destination is not None:
        sign_stored(store, reference, keys, identity_ref=destination)
    return bool(signed.sigstore or signed.simple)


def _push(
    store: ContentStore,
    client: RegistryClient,
    reference: str,
    destination: ImageReference | None,
    args: argparse.Namespace,
) -> tuple[PushResult, Published]:
    from osbuilder.trust.publish import push_signed

    with store.using():
        return push_signed(store, client, reference, destination, args.registries_d)


def _describe(result: dict[str, object], signed: bool) -> str:
    source = result["source"]
    state = {"built": "built", "store": "up to date"}.get(str(source), "")
    if source == "pulled":
        state = f"pulled from {result['pulledFrom']}"
    if signed:
        state += ", signed"
    if result["pushedTo"]:
        state += f", pushed to {result['pushedTo']}"
    if result["alreadyShared"]:
        state += ", not pushed: the registry has this very image already"
    return state


def _lock(args: argparse.Namespace) -> int:
    from osbuilder.pkg.lock import check_lock, lock_recipe
    from osbuilder.pkg.lockfile import LOCK_FILE
    from osbuilder.pkg.recipe import load_recipe

    mirror = args.mirror
    recipes = [load_recipe(directory) for directory in args.dirs]  # all valid before locking
    if args.check:
        drift = [
            line
            for loaded in recipes
            for line in check_lock(loaded, mirror=mirror, keyring=args.keyring)
        ]
        for line in drift:
            print(line)
        return ExitCode.USER if drift else ExitCode.OK
    for loaded in recipes:
        lock = lock_recipe(
            loaded, args.arch or SUPPORTED_ARCHES, mirror=mirror, keyring=args.keyring
        )
        if lock is None:
            print(f"{loaded.directory}: no Debian packages to lock")
        else:
            counts = ", ".join(f"{len(lock.packages_for(a))} for {a}" for a in lock.architectures)
            print(f"{loaded.directory / LOCK_FILE}: {counts}")
    return ExitCode.OK


def _show_tag(args: argparse.Namespace) -> int:
    from osbuilder.oci.reference import parse_reference
    from osbuilder.pkg.recipe import load_recipe
    from osbuilder.pkg.tag import package_reference

    for directory in args.dirs:
        reference = package_reference(load_recipe(directory), args.image)
        print(parse_reference(reference).familiar())
    return ExitCode.OK
