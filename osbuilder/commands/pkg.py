"""`osbuilder pkg build`, `pkg lock` and `pkg show-tag`: package images without Docker."""

from __future__ import annotations

import argparse
from pathlib import Path

from osbuilder.commands.common import (
    add_registries_d_option,
    add_registry_options,
    add_signing_options,
    add_store_options,
    open_store,
    print_json,
    registry_client,
    signer,
    target_platform,
)
from osbuilder.errors import ExitCode
from osbuilder.oci.platform import SUPPORTED_ARCHES


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
    build.add_argument("--push", action="store_true", help="push each image once built")
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
    add_store_options(build)
    add_registry_options(build)
    add_signing_options(build)
    add_registries_d_option(build.add_argument_group("signature options"))
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
    from osbuilder.pkg.build import Sources, build_package
    from osbuilder.pkg.recipe import load_recipe
    from osbuilder.trust.attach import sign_stored
    from osbuilder.trust.publish import push_signed

    if args.image and len(args.dirs) > 1:
        raise UserError("--image names one image: give one DIR with it")
    recipes = [load_recipe(directory) for directory in args.dirs]  # all valid before building
    keys = signer(args)
    store = open_store(args)
    architecture = target_platform(args).architecture
    sources = Sources(tuple(args.mirror), args.keyring, args.refresh_missing)
    results = []
    for loaded in recipes:
        built = build_package(
            store,
            loaded,
            architecture=architecture,
            image=args.image,
            force=args.force,
            sources=sources,
        )
        signed = sign_stored(store, built.reference, keys) if keys else None
        if args.push:  # with the signatures the store holds for it
            with registry_client(args) as client:
                push_signed(store, client, built.reference, None, args.registries_d)
        results.append(built)
        if not args.json:
            state = "built" if built.built else "up to date"
            if signed is not None and (signed.sigstore or signed.simple):
                state += ", signed"
            print(f"{built.reference} ({state}, {built.descriptor.digest})")
    if args.json:
        print_json(
            [
                {"reference": r.reference, "digest": r.descriptor.digest, "built": r.built}
                for r in results
            ]
        )
    return ExitCode.OK


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
