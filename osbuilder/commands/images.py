"""`osbuilder pull`, `osbuilder push` and `osbuilder cache ...`: images and the content store."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from osbuilder.commands import common as shared
from osbuilder.errors import ExitCode, UserError
from osbuilder.oci.progress import human_size
from osbuilder.oci.reference import parse_reference

if TYPE_CHECKING:
    from osbuilder.oci.pull import ImageCheck
    from osbuilder.oci.reference import ImageReference
    from osbuilder.oci.store import ContentStore


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    pull = sub.add_parser(
        "pull",
        parents=[common],
        help="pull images into the content store",
        description="Resolve each reference to a digest and fetch its manifest, config and "
        "layers for the target platform into the content store, verifying every digest.",
    )
    pull.add_argument("refs", nargs="+", metavar="REF", help="image references")
    pull.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="DIR",
        help="REF is a system (pushed with push registry): write its files into DIR",
    )
    pull.add_argument(
        "--offline",
        action="store_true",
        help="use only the content store; never contact a registry",
    )
    pull.add_argument("--json", action="store_true", help="print a JSON summary")
    shared.add_platform_option(pull)
    shared.add_remote_options(pull, verify=True)
    pull.set_defaults(handler=_pull)

    push_cmd = sub.add_parser(
        "push",
        parents=[common],
        help="push an image from the content store to a registry "
        "(or: push registry REF OUTPUT..., a built system; push openstack IMAGE, a built "
        "disk image to OpenStack)",
        description="Upload an image of the content store: blobs the registry lacks (mounted "
        "from another repository of the same registry when possible), then its manifest. "
        "Its signatures in the store go with it: sigstore signatures to DEST's repository "
        "(the tag sha256-HEX.sig, as cosign attaches them), simple signatures to the "
        "lookaside registries.d names for writing to DEST (file:// only). "
        "`osbuilder push openstack IMAGE` uploads a built disk image to OpenStack instead "
        "(see osbuilder push openstack --help); `osbuilder push registry REF OUTPUT...` "
        "pushes a built system (see osbuilder push registry --help).",
    )
    push_cmd.add_argument("ref", metavar="REF", help="image in the content store")
    push_cmd.add_argument("--to", metavar="DEST", help="destination reference (default: REF)")
    push_cmd.add_argument("--json", action="store_true", help="print a JSON summary")
    shared.add_remote_options(push_cmd, sign=True)
    push_cmd.set_defaults(handler=_push)

    sign = sub.add_parser(
        "sign",
        parents=[common],
        help="sign images already in a registry",
        description="Resolve each reference in its registry and sign the digest it names: "
        "with --sign-key, a sigstore signature added to the registry's sha256-HEX.sig tag "
        "(as cosign signs); with --sign-by, a simple signature written to the lookaside "
        "registries.d names for writing (file:// only, as skopeo). The signatures are kept "
        "in the content store too.",
    )
    sign.add_argument("refs", nargs="+", metavar="REF", help="image references")
    shared.add_remote_options(sign, sign=True)
    sign.set_defaults(handler=_sign)

    cache = sub.add_parser(
        "cache",
        parents=[common],
        help="inspect and manage the content store",
        description="The content store is an OCI image layout; these commands list, remove, "
        "garbage-collect, export and import its images.",
    )
    cache_sub = cache.add_subparsers(title="cache commands", metavar="COMMAND")
    ls = cache_sub.add_parser("ls", parents=[common], help="list the images in the store")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=_cache_ls)
    rm = cache_sub.add_parser("rm", parents=[common], help="remove image names from the store")
    rm.add_argument("refs", nargs="+", metavar="REF")
    rm.set_defaults(handler=_cache_rm)
    gc = cache_sub.add_parser(
        "gc",
        parents=[common],
        help="delete blobs no image name reaches, and their unpacked layers",
    )
    gc.add_argument(
        "--snapshots",
        action="store_true",
        help="also delete every unpacked layer (the next builds unpack their layers again)",
    )
    gc.set_defaults(handler=_cache_gc)
    export = cache_sub.add_parser(
        "export", parents=[common], help="write an image as an OCI archive"
    )
    export.add_argument("ref", metavar="REF")
    export.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.tar")
    export.set_defaults(handler=_cache_export)
    imp = cache_sub.add_parser(
        "import", parents=[common], help="add the images of an OCI archive to the store"
    )
    imp.add_argument("archive", type=Path, metavar="FILE.tar")
    imp.set_defaults(handler=_cache_import)
    for parser in (ls, rm, gc, export, imp):
        shared.add_store_options(parser)
    cache.set_defaults(handler=lambda args: _usage(cache))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return ExitCode.USAGE


def _pull(args: argparse.Namespace) -> int:
    from osbuilder.oci.pull import Puller

    refs = [parse_reference(text) for text in args.refs]
    store = shared.open_store(args)
    if args.output is not None:
        return _pull_system(args, store, refs)
    summary: list[dict[str, str | int]] = []
    with (
        shared.progress_for(args) as progress,
        shared.registry_when(args, not args.offline) as client,
    ):
        puller = Puller(
            store,
            client,
            shared.target_platform(args),
            jobs=args.jobs,
            progress=progress,
            check=_not_a_system(store, shared.verifier(args, store, client).check),
        )
        for ref in refs:
            result = puller.pull(ref)
            image = result.image
            summary.append(
                {
                    "reference": str(ref),
                    "digest": image.digest,
                    "manifest": image.manifest_descriptor.digest,
                    "platform": f"{image.config.os}/{image.config.architecture}",
                    "size": sum(layer.size for layer in image.manifest.layers),
                    "transferred": result.transferred,
                }
            )
    if args.json:
        shared.print_json(summary)
    else:
        for item in summary:
            print(
                f"{item['reference']}@{item['digest']} ({item['platform']}, "
                f"{human_size(int(item['size']))}, {human_size(int(item['transferred']))} "
                "transferred)"
            )
    return ExitCode.OK


def _not_a_system(store: ContentStore, check: ImageCheck) -> ImageCheck:
    """`check`, after refusing a system (an artifact, not an image: pulled with -o DIR)."""
    from osbuilder.systems.artifact import is_system, parse_document

    def checked(ref: ImageReference, top_digest: str, manifest_digest: str) -> object:
        document = parse_document(store.read_blob(manifest_digest), ref.familiar())
        if is_system(document):
            raise UserError(
                f"{ref.familiar()} is an osbuilder system, not an image: write its files with "
                f"osbuilder pull {ref.familiar()} -o DIR, or boot it with osbuilder run "
                f"docker://{ref.familiar()}"
            )
        return check(ref, top_digest, manifest_digest)

    return checked


def _pull_system(args: argparse.Namespace, store: ContentStore, refs: list[ImageReference]) -> int:
    from osbuilder.commands.systems import pull_system
    from osbuilder.systems.pull import write_files

    if len(refs) != 1:
        raise UserError("-o DIR takes one system: pull one REF at a time")
    with shared.registry_when(args, not args.offline) as client:
        system = pull_system(args, store, client, refs[0])
    with store.using():
        written = write_files(store, system, args.output)
    if args.json:
        shared.print_json(
            {
                "reference": str(system.reference),
                "digest": system.descriptor.digest,
                "manifest": system.manifest_digest,
                "files": [str(path) for path in written],
                "transferred": system.transferred,
            }
        )
    else:
        for path in written:
            print(path)
    return ExitCode.OK


def _push(args: argparse.Namespace) -> int:
    from osbuilder.trust import publish
    from osbuilder.trust.attach import sign_stored

    keys = shared.signer(args)  # (the key's password asked before any work)
    store = shared.open_store(args)
    destination = parse_reference(args.to) if args.to else None
    with (
        shared.progress_for(args) as progress,
        shared.registry_client(args) as client,
        store.using(),
    ):
        if keys:  # signed as the name it is pushed under, as skopeo copy --sign-by signs
            sign_stored(store, args.ref, keys, identity_ref=destination)
        result, published = publish.push_signed(
            store, client, args.ref, destination, args.registries_d, progress
        )
    if args.json:
        shared.print_json(
            {
                "destination": str(result.destination),
                "digest": result.digest,
                "uploaded": result.uploaded,
                "mounted": result.mounted,
                "present": result.present,
                "signatures": {
                    "sigstore": published.sigstore,
                    "simpleWritten": published.written,
                    "simplePresent": published.present,
                    "lookaside": published.lookaside,
                },
            }
        )
    else:
        print(
            f"{result.destination}@{result.digest} ({len(result.uploaded)} uploaded, "
            f"{len(result.mounted)} mounted, {len(result.present)} already there; "
            f"{published.describe()})"
        )
    return ExitCode.OK


def _sign(args: argparse.Namespace) -> int:
    from osbuilder.trust import publish
    from osbuilder.trust.attach import sign_digest
    from osbuilder.trust.fetch import fetch_sigstore

    keys = shared.signer(args)
    if not keys:
        raise UserError("name a key to sign with: --sign-key KEY.key or --sign-by FINGERPRINT")
    refs = [parse_reference(text) for text in args.refs]
    store = shared.open_store(args)
    with (
        shared.progress_for(args) as progress,
        shared.registry_client(args) as client,
        store.using(),
    ):
        for ref in refs:
            fetched = client.get_manifest(ref)
            store.put_bytes(fetched.data, fetched.digest)
            if keys.sigstore_key is not None:  # cosign appends to what is there
                fetch_sigstore(store, client, ref, fetched.digest)
            signed = sign_digest(store, ref, fetched.digest, keys)
            plan = publish.plan_digests(
                store, client, ref, [fetched.digest], None, args.registries_d
            )
            published = publish.publish(store, client, plan, progress)
            print(f"{signed.reference}@{signed.digest} ({published.describe()})")
    return ExitCode.OK


def _cache_ls(args: argparse.Namespace) -> int:
    store = shared.open_store(args)
    references = store.references()
    if args.json:
        shared.print_json(
            [
                {
                    "name": r.name,
                    "digest": r.descriptor.digest,
                    "mediaType": r.descriptor.media_type,
                }
                for r in references
            ]
        )
    else:
        for ref in references:
            print(f"{ref.name}\t{ref.descriptor.digest}")
    return ExitCode.OK


def _cache_rm(args: argparse.Namespace) -> int:
    store = shared.open_store(args)
    missing = [text for text in args.refs if not store.untag(str(parse_reference(text)))]
    if missing:
        raise UserError(f"not in the content store: {', '.join(missing)}")
    return ExitCode.OK


def _cache_gc(args: argparse.Namespace) -> int:
    count, size = shared.open_store(args).gc(snapshots=args.snapshots)
    print(f"removed {count} blobs, {human_size(size)}")
    return ExitCode.OK


def _cache_export(args: argparse.Namespace) -> int:
    from osbuilder.oci.archive import export_archive

    exported = export_archive(shared.open_store(args), args.ref, args.output)
    count = len(exported.attachments)
    attached = f", with {count} attachment{'s' * (count != 1)} (signatures)" if count else ""
    print(f"{args.output}: {exported.blobs} blobs{attached}")
    return ExitCode.OK


def _cache_import(args: argparse.Namespace) -> int:
    from osbuilder.oci.archive import import_archive

    for name in import_archive(shared.open_store(args), args.archive):
        print(name)
    return ExitCode.OK
