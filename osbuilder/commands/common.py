"""Options several commands share, and building the objects they describe.

Heavy modules are imported inside the functions: `osbuilder pull` should not
pay for the spec models, nor any command for what it does not use (importing
every module a command may use takes ~0.4 s; `osbuilder --help` takes 0.1 s).
Command modules import this one as `shared`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from osbuilder.oci.platform import TargetPlatform
    from osbuilder.oci.progress import Progress
    from osbuilder.oci.registry import RegistryClient
    from osbuilder.oci.store import ContentStore
    from osbuilder.trust.attach import Signer
    from osbuilder.trust.verify import Verifier


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least `minimum`."""

    def parse(value: str) -> int:
        if not value.isdigit() or int(value) < minimum:
            raise argparse.ArgumentTypeError(f"{value!r}: a whole number, at least {minimum}")
        return int(value)

    return parse


def add_store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="content store (default: $OSBUILDER_CACHE or $XDG_CACHE_HOME/osbuilder)",
    )


def add_registry_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("registry options")
    group.add_argument(
        "--insecure-registry",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="HTTPS without certificate checks, or plain HTTP if it speaks no TLS, for this "
        "registry (localhost and 127.0.0.0/8 may speak plain HTTP too, but are verified)",
    )
    group.add_argument(
        "--registry-mirror",
        action="append",
        default=[],
        metavar="REGISTRY=URL",
        help="pull REGISTRY's images from URL first, e.g. docker.io=http://127.0.0.1:5000",
    )
    counts = (  # (option, least value, default, what it counts)
        ("--retries", 0, 5, "retries of a failed request, with exponential backoff"),
        ("--jobs", 1, 6, "blobs transferred in parallel"),
    )
    for option, least, default, what in counts:
        group.add_argument(
            option,
            type=whole_number(least),
            default=default,
            metavar="N",
            help=f"{what} (default %(default)s)",
        )


def add_remote_options(
    parser: argparse.ArgumentParser, *, verify: bool = False, sign: bool = False
) -> None:
    """The content store and registries, the options of every command that pulls or pushes;
    with `verify`, the policy that judges what is pulled; with `sign`, the keys that sign
    what is pushed (and where its simple signatures are written)."""
    add_store_options(parser)
    add_registry_options(parser)
    if verify:
        add_trust_options(parser)
    elif sign:
        add_registries_d_option(parser.add_argument_group("signature options"))
    if sign:
        add_signing_options(parser)


def add_trust_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("signature options")
    group.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="signature policy, containers-policy.json(5) (default: "
        "~/.config/containers/policy.json, else /etc/containers/policy.json, else none)",
    )
    add_registries_d_option(group)


def add_registries_d_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
) -> None:
    """`--registries-d`: where simple signatures are read (pull, build) or written (push)."""
    parser.add_argument(
        "--registries-d",
        type=Path,
        metavar="DIR",
        help="where simple signatures are kept, registries.d(5) (default: "
        "~/.config/containers/registries.d, else /etc/containers/registries.d)",
    )


def add_signing_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("signing options")
    group.add_argument(
        "--sign-key",
        type=Path,
        metavar="KEY",
        help="sign with this cosign private key (osbuilder key generate, cosign "
        "generate-key-pair); its password from $OSBUILDER_KEY_PASSWORD or the terminal",
    )
    group.add_argument(
        "--sign-by",
        metavar="FINGERPRINT",
        help="sign with this OpenPGP key of gpg's keyring (simple signing, as skopeo --sign-by)",
    )


def signer(args: argparse.Namespace) -> Signer:
    """The keys `--sign-key` and `--sign-by` name, loaded (and unlocked) before any work."""
    from osbuilder.trust.attach import load_signer

    return load_signer(args.sign_key, args.sign_by)


def verifier(
    args: argparse.Namespace, store: ContentStore, client: RegistryClient | None
) -> Verifier:
    """The policy `--policy` and `--registries-d` name, applied to images of `store`."""
    from osbuilder.trust.verify import Verifier, load_trust

    return Verifier(load_trust(args.policy, args.registries_d), store, client)


def add_platform_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--arch",
        metavar="ARCH",
        help="target architecture: amd64 or arm64 (default: this machine's)",
    )


def add_image_source_options(parser: argparse.ArgumentParser) -> None:
    """Where a command that takes the images of a spec gets them, as `build` does."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--offline",
        action="store_true",
        help="use only the content store; never contact a registry",
    )
    where.add_argument(
        "--pull", action="store_true", help="re-resolve every tag even if the store has the image"
    )


class RoutedPush:
    """`push TARGET ...` (`push registry`, `push openstack`): a command of its own that shares
    the word `push` with pushing a store image (`osbuilder push REF`), as in LinuxKit.
    argparse knows it as one word, `command`; `route` makes a command line say that."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.command = f"push-{target}"

    def route(self, argv: list[str]) -> list[str]:
        """`push TARGET ...` as the command it is parsed as; any other argv as it is.

        TARGET must follow `push` at once: anywhere else it may be an option's value
        (`push --to openstack REF`).
        """
        for index, word in enumerate(argv):
            if not word.startswith("-"):  # the command
                if argv[index : index + 2] == ["push", self.target]:
                    return [*argv[:index], self.command, *argv[index + 2 :]]
                break
        return argv

    def add_parser(
        self,
        sub: argparse._SubParsersAction[argparse.ArgumentParser],
        common: argparse.ArgumentParser,
        description: str,
    ) -> argparse.ArgumentParser:
        """Its parser (with no help=: not listed among the commands; `push` names it)."""
        return sub.add_parser(
            self.command,
            parents=[common],
            prog=f"osbuilder push {self.target}",
            description=description,
        )


def resolve_package(directory: Path) -> str:
    """What an `@pkg:` template naming `directory` stands for: the spec loader's resolver.
    (pkg imported only when a spec has a template: its recipe models cost ~10 ms.)"""
    from osbuilder.pkg.tag import template_reference

    return template_reference(directory)


def open_store(args: argparse.Namespace) -> ContentStore:
    from osbuilder.oci.store import ContentStore, default_store_root

    return ContentStore(args.cache or default_store_root())


def registry_client(args: argparse.Namespace) -> RegistryClient:
    from osbuilder.oci.registry import RegistryClient, RegistryOptions, parse_mirror

    mirrors: dict[str, list[str]] = {}
    for text in args.registry_mirror:
        registry, url = parse_mirror(text)
        mirrors.setdefault(registry, []).append(url)
    options = RegistryOptions(
        insecure_registries=frozenset(args.insecure_registry),
        mirrors={k: tuple(v) for k, v in mirrors.items()},
        retries=args.retries,
    )
    return RegistryClient(options)


@contextlib.contextmanager
def registry_when(args: argparse.Namespace, wanted: bool) -> Iterator[RegistryClient | None]:
    """The registry client if `wanted` (not with --offline, say), closed after; else None."""
    if not wanted:
        yield None
        return
    with registry_client(args) as client:
        yield client


def target_platform(args: argparse.Namespace) -> TargetPlatform:
    from osbuilder.oci.platform import host_target, parse_platform

    return parse_platform(args.arch) if args.arch else host_target()


@contextlib.contextmanager
def progress_for(args: argparse.Namespace) -> Iterator[Progress]:
    """A live display on a terminal, a line per transfer otherwise, nothing with --json."""
    from osbuilder.oci.progress import LineProgress, NullProgress, RichProgress

    if getattr(args, "json", False):
        yield NullProgress()
    elif sys.stderr.isatty():
        with RichProgress() as progress:
            yield progress
    else:
        yield LineProgress()


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))
