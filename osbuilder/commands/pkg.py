"""`osbuilder pkg build` and `osbuilder pkg show-tag`: package images without Docker."""

from __future__ import annotations

import argparse
from pathlib import Path

from osbuilder.commands.common import (
    add_registry_options,
    add_store_options,
    open_store,
    print_json,
    registry_client,
    target_platform,
)
from osbuilder.errors import ExitCode


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
    add_store_options(build)
    add_registry_options(build)
    build.set_defaults(handler=_build)

    show = pkg_sub.add_parser(
        "show-tag", parents=[common], help="print the full reference a recipe builds"
    )
    show.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    show.add_argument("--image", metavar="NAME", help="image name instead of the recipe's")
    show.set_defaults(handler=_show_tag)
    pkg.set_defaults(handler=lambda args: _usage(pkg))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return ExitCode.USAGE


def _build(args: argparse.Namespace) -> int:
    from osbuilder.errors import UserError
    from osbuilder.oci.push import push
    from osbuilder.pkg.build import build_package
    from osbuilder.pkg.recipe import load_recipe

    if args.image and len(args.dirs) > 1:
        raise UserError("--image names one image: give one DIR with it")
    recipes = [load_recipe(directory) for directory in args.dirs]  # all valid before building
    store = open_store(args)
    architecture = target_platform(args).architecture
    results = []
    for loaded in recipes:
        built = build_package(
            store, loaded, architecture=architecture, image=args.image, force=args.force
        )
        if args.push:
            with registry_client(args) as client:
                push(store, client, built.reference)
        results.append(built)
        if not args.json:
            state = "built" if built.built else "up to date"
            print(f"{built.reference} ({state}, {built.descriptor.digest})")
    if args.json:
        print_json(
            [
                {"reference": r.reference, "digest": r.descriptor.digest, "built": r.built}
                for r in results
            ]
        )
    return ExitCode.OK


def _show_tag(args: argparse.Namespace) -> int:
    from osbuilder.oci.reference import parse_reference
    from osbuilder.pkg.recipe import load_recipe
    from osbuilder.pkg.tag import package_reference

    for directory in args.dirs:
        reference = package_reference(load_recipe(directory), args.image)
        print(parse_reference(reference).familiar())
    return ExitCode.OK
