"""`osbuilder build`: build a system image from spec files."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from osbuilder.commands import common as shared
from osbuilder.errors import ExitCode, UserError
from osbuilder.formats.catalog import (
    DEFAULT_FORMAT,
    FORMATS,
    VERITY_ROOTS,
    names,
    rooted_in,
    squashfs_root_media,
    verity_formats,
)
from osbuilder.oci.reference import parse_reference

if TYPE_CHECKING:
    from osbuilder.build import BuildFacts
    from osbuilder.formats.outputfile import Output
    from osbuilder.formats.uefi_signing import SigningIdentity
    from osbuilder.oci.reference import ImageReference
    from osbuilder.trust.attach import Signer

log = logging.getLogger(__name__)

STDIN_DEFAULT_NAME = "system"  # the output name of a spec read from standard input


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    build = sub.add_parser(
        "build",
        parents=[common],
        help="build a system image from spec files",
        description="Validate and merge the spec files, get every image (from the content "
        "store, pulling what is missing), assemble one root filesystem and write it in each "
        "format asked for. Images already complete in the store are used as they are "
        "(--pull re-resolves their tags). When the first file has a lock (FILE.lock, written "
        "by osbuilder lock), every image is taken by its locked digest.",
    )
    build.add_argument(
        "files", nargs="+", metavar="FILE", help="spec files (-: standard input; or http(s) URLs)"
    )
    build.add_argument(
        "-f",
        "--format",
        action="append",
        dest="formats",
        metavar="FORMAT",
        choices=tuple(FORMATS),
        help=f"output format, repeatable: {', '.join(FORMATS)} (default {DEFAULT_FORMAT})",
    )
    build.add_argument(
        "-o",
        "--dir",
        type=Path,
        default=Path("output"),
        metavar="DIR",
        help="output directory (default output/)",
    )
    build.add_argument(
        "--name",
        type=_output_name,
        help="output name: the files are DIR/NAME-kernel, ... (default: the first spec "
        f"file's stem, or {STDIN_DEFAULT_NAME} for -)",
    )
    build.add_argument(
        "--compress",
        choices=("gzip", "zstd", "none"),
        help="initrd compression, and squashfs's with gzip or zstd (default: zstd if the "
        "kernel has it, else gzip)",
    )
    build.add_argument(
        "--root",
        choices=("initrd", "squashfs"),
        default="initrd",
        help=f"where the disk formats ({', '.join(names(squashfs_root_media()))}) keep the "
        "root filesystem: in their initrd (default), or on a squashfs partition read as needed",
    )
    build.add_argument(
        "--verity",
        action="store_true",
        help="a dm-verity hash tree after the root's image, its root hash on the kernel's "
        "command line (in the unified kernel image on UEFI media): the boot stage checks "
        "every block it reads and refuses a changed root. For "
        f"{', '.join(names(rooted_in(*VERITY_ROOTS)))} and, with --root squashfs, "
        f"{', '.join(names(r for r in verity_formats() if r.squashfs_root))}",
    )
    build.add_argument(
        "--dry-run",
        action="store_true",
        help="build nothing: print the spec the files make (merged, templates expanded) as YAML",
    )
    sbom = build.add_mutually_exclusive_group()
    sbom.add_argument(
        "--sbom-output",
        type=_root_path,
        default="sbom.spdx.json",
        metavar="PATH",
        help="where in the root filesystem the system's SPDX SBOM goes (default sbom.spdx.json)",
    )
    sbom.add_argument(
        "--no-sbom", action="store_true", help="write no SBOM into the root filesystem"
    )
    build.add_argument(
        "--sbom-file",
        type=Path,
        metavar="FILE",
        help="also write the SBOM to FILE on this machine (DIR/NAME.spdx.json is what "
        "push registry DIR/NAME attaches to the system)",
    )
    build.add_argument(
        "--decompress-kernel",
        action="store_true",
        help="write the kernel uncompressed: an x86 bzImage as its ELF vmlinux, a gzip'd "
        "arm64 Image as the Image (for Firecracker, cloud-hypervisor; QEMU boots both)",
    )
    build.add_argument(
        "--no-dedup",
        action="store_true",
        help="give every file of the containers' read-only roots an inode of its own (by "
        "default files with the same bytes, mode, owner and xattrs share one: hard links, "
        "stored once), to compare sizes or to rule the linking out when debugging",
    )
    secure_boot = build.add_argument_group("Secure Boot options")
    for option, metavar, text in (
        (
            "--secure-boot-key",
            "KEY",
            "sign the unified kernel image of the UEFI formats with this RSA private key (PEM, "
            "unencrypted), for Secure Boot; with --secure-boot-cert",
        ),
        (
            "--secure-boot-cert",
            "CERT",
            "the key's X.509 certificate (PEM): what the firmware's db must hold (osbuilder "
            "run --secure-boot CERT)",
        ),
    ):
        secure_boot.add_argument(option, type=Path, metavar=metavar, help=text)
    shared.add_image_source_options(build)
    build.add_argument(
        "--no-lock",
        action="store_true",
        help="ignore the spec's lock (FILE.lock beside the first file): take every image by "
        "its reference as the spec writes it",
    )
    build.add_argument(
        "--json",
        action="store_true",
        help="print the outputs as JSON, with their sizes and sha256 digests",
    )
    build.add_argument(
        "--push",
        metavar="REF",
        help="then push the outputs to a registry as one system artifact, with the SBOM "
        "attached (as osbuilder push registry REF DIR/NAME does)",
    )
    shared.add_platform_option(build)
    shared.add_remote_options(build, verify=True, sign=True)
    build.set_defaults(handler=_build)


def _output_name(value: str) -> str:
    """A name for files in the output directory, never a path leading out of it."""
    if not value or "/" in value or "\0" in value or value.startswith("."):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a file name: no '/', and not empty or starting with '.'"
        )
    return value


def _root_path(value: str) -> str:
    """A file's path in the root filesystem: relative to /, never above it."""
    path = value.strip("/")
    if not path or "\0" in path or ".." in path.split("/"):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a file's path in the root filesystem (no '..', not empty)"
        )
    return path


def _build(args: argparse.Namespace) -> int:
    from osbuilder.assemble.images import ImageSource
    from osbuilder.build import BuildFacts, build
    from osbuilder.formats.job import WriteOptions
    from osbuilder.oci.progress import human_size

    if args.dry_run:
        return _dry_run(args.files)
    name = args.name or _default_name(args.files[0])
    keys = shared.signer(args)  # (the key's password asked before any work)
    if keys and args.push is None:
        raise UserError("--sign-key and --sign-by sign what --push REF pushes: add --push REF")
    destination = parse_reference(args.push) if args.push else None
    if args.sbom_file is not None and args.no_sbom:
        raise UserError("--sbom-file writes the SBOM --no-sbom leaves out: give one of them")
    secure_boot = _secure_boot_identity(args)
    facts = BuildFacts()
    store = shared.open_store(args)
    with (
        shared.progress_for(args) as progress,
        shared.registry_when(args, not args.offline) as client,
    ):
        images = ImageSource(
            store,
            client,
            shared.target_platform(args),
            pull_always=args.pull,
            progress=progress,
            jobs=args.jobs,
            verifier=shared.verifier(args, store, client),
        )
        outputs = build(
            args.files,
            images,
            formats=args.formats or [DEFAULT_FORMAT],
            output_dir=args.dir,
            name=name,
            options=WriteOptions(
                compression=args.compress,
                root=args.root,
                verity=args.verity,
                # Hashing is one more pass over every byte written (~5% of a build):
                # done for --json, which reports digests.
                digests=args.json,
                secure_boot=secure_boot,
            ),
            decompress_kernel=args.decompress_kernel,
            sbom=None if args.no_sbom else args.sbom_output,
            locked=not args.no_lock,
            dedup=not args.no_dedup,
            facts=facts,
        )
    if args.json and destination is None:
        shared.print_json([output.as_json() for output in outputs])
    elif not args.json:
        for output in outputs:
            print(f"{output.path} ({human_size(output.size)})")
    if args.sbom_file is not None:
        _write_sbom(args.sbom_file, facts)
    if destination is not None:
        _push(args, destination, outputs, facts, keys)
    return ExitCode.OK


def _secure_boot_identity(args: argparse.Namespace) -> SigningIdentity | None:
    """--secure-boot-key and --secure-boot-cert, both or neither, read and matched before
    any work."""
    from osbuilder.formats.uefi_signing import CERT_OPTION, KEY_OPTION, checked_identity

    key, cert = args.secure_boot_key, args.secure_boot_cert
    if key is None and cert is None:
        return None
    if key is None or cert is None:
        missing = KEY_OPTION if key is None else CERT_OPTION
        raise UserError(f"{KEY_OPTION} and {CERT_OPTION} go together: add {missing}")
    return checked_identity(key, cert)


def _write_sbom(path: Path, facts: BuildFacts) -> None:
    from osbuilder.atomicfile import atomic_output
    from osbuilder.errors import cannot_write

    if facts.sbom is None:
        raise UserError("--sbom-file: this build wrote no SBOM (--no-sbom)")
    try:
        with atomic_output(path) as file:
            file.write(facts.sbom)
    except OSError as exc:
        raise cannot_write(path, exc, "name another --sbom-file") from None


def _push(
    args: argparse.Namespace,
    destination: ImageReference,
    outputs: list[Output],
    facts: BuildFacts,
    keys: Signer,
) -> None:
    """`build --push REF`: the outputs as one system artifact (systems/push.py)."""
    from osbuilder import __version__
    from osbuilder.commands.systems import push_system
    from osbuilder.systems.artifact import BuildRecord
    from osbuilder.systems.push import SystemFiles

    architecture = shared.target_platform(args).architecture
    record = BuildRecord(
        __version__,
        architecture,
        formats=list(dict.fromkeys(args.formats or [DEFAULT_FORMAT])),
        spec_digest=facts.spec_digest,
        lock_digest=facts.lock_digest,
        images=facts.images,
    )
    files = SystemFiles(record, [output.path for output in outputs])
    sboms = {architecture: facts.sbom} if facts.sbom is not None else {}
    result = push_system(args, destination, [files], keys, sboms)
    if args.json:
        shared.print_json(
            {
                "outputs": [output.as_json() for output in outputs],
                "pushed": {"destination": str(destination), "digest": result.digest},
            }
        )
    else:
        print(f"{destination}@{result.digest} (pushed)")


def _default_name(first: str) -> str:
    """The outputs' name: the first spec file's stem (its URL's file name's)."""
    from osbuilder.spec.remote import is_url, url_stem

    if first == "-":
        return STDIN_DEFAULT_NAME
    return (url_stem(first) if is_url(first) else Path(first).stem) or STDIN_DEFAULT_NAME


def _dry_run(files: list[str]) -> int:
    """LinuxKit's --dry-run: the spec a build of `files` would build, as YAML."""
    from osbuilder.spec import load_spec
    from osbuilder.spec.yaml12 import dump_yaml

    loaded = load_spec(files, shared.resolve_package)
    for warning in loaded.warnings:
        log.warning("%s", warning)
    data = loaded.spec.to_data()
    for section, index, _ in loaded.spec.containers():
        entry = data[section][index]  # its name and image first, as specs are written
        data[section][index] = {"name": entry["name"], "image": entry["image"]} | entry
    print(dump_yaml(data, sort_keys=False), end="")
    return ExitCode.OK
