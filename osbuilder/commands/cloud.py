"""`osbuilder push openstack IMAGE`: upload a built disk or ISO image to a cloud.

It shares the word `push` with pushing an OCI image to a registry (`osbuilder push REF`),
as LinuxKit's `push openstack` does: `cli.py` routes `push openstack` here.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from osbuilder.commands import common as shared
from osbuilder.errors import ExitCode

PUSH_OPENSTACK = shared.RoutedPush("openstack")
COMMAND = PUSH_OPENSTACK.command  # what `push openstack` is parsed as
route = PUSH_OPENSTACK.route
_PROPERTY = re.compile(r"(?P<key>[A-Za-z0-9_.:-]+)=(?P<value>.*)", re.DOTALL)


def _property(text: str) -> tuple[str, str]:
    match = _PROPERTY.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give KEY=VALUE, e.g. os_distro=osbuilder")
    return match["key"], match["value"]


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:  # (also refuses nan)
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds above 0")
    return value


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    openstack = PUSH_OPENSTACK.add_parser(
        sub,
        common,
        "Upload a built image (qcow2, raw, VHD or ISO: known by its contents) to "
        "OpenStack's image service and wait until it is active; print its ID. The cloud is "
        "--cloud NAME of clouds.yaml, or the OS_* variables, as for every OpenStack client. "
        "An EFI image gets hw_firmware_type=uefi. Uploading the same image under the same "
        "name again reuses it.",
    )
    openstack.add_argument("image", type=Path, metavar="IMAGE", help="e.g. output/redis.qcow2")
    openstack.add_argument(
        "--img-name", metavar="NAME", help="image name in the cloud (default: the file's stem)"
    )
    openstack.add_argument("--cloud", metavar="NAME", help="cloud of clouds.yaml ($OS_CLOUD)")
    openstack.add_argument(
        "--property",
        type=_property,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="image property, repeatable (e.g. os_distro=osbuilder)",
    )
    openstack.add_argument(
        "--visibility",
        choices=("private", "shared", "community", "public"),
        help="who may use the image (default: the cloud's, usually shared)",
    )
    openstack.add_argument(
        "--timeout",
        type=_seconds,
        default=3600.0,
        metavar="SECONDS",
        help="how long to wait for the image to become active (default 3600)",
    )
    openstack.add_argument("--json", action="store_true", help="print the image as JSON")
    openstack.set_defaults(handler=_push_openstack)


def _push_openstack(args: argparse.Namespace) -> int:
    from osbuilder.cloud.openstack import push_image

    image = push_image(
        args.image,
        name=args.img_name or args.image.stem,
        cloud=args.cloud,
        properties=dict(args.property),
        visibility=args.visibility,
        timeout=args.timeout,
    )
    if args.json:
        shared.print_json(image.as_json())
    else:
        print(image.id)
    return ExitCode.OK
