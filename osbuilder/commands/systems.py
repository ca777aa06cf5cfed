"""`osbuilder push registry REF OUTPUT...` and `osbuilder sbom REF`: built systems in
registries (osbuilder/systems/). `pull REF -o DIR` and `run docker://REF` are in
images.py and vm.py, and call `pull_system` here.

`push registry` shares the word `push` with pushing a store image (`osbuilder push REF`),
as `push openstack` does: `route` makes it the command it is parsed as.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from osbuilder.commands import common as shared
from osbuilder.errors import ExitCode, UserError

if TYPE_CHECKING:
    from osbuilder.oci.reference import ImageReference
    from osbuilder.oci.registry import RegistryClient
    from osbuilder.oci.store import ContentStore
    from osbuilder.systems.pull import PulledSystem
    from osbuilder.systems.push import PushedSystem, SystemFiles
    from osbuilder.trust.attach import Signer

PUSH_REGISTRY = shared.RoutedPush("registry")
COMMAND = PUSH_REGISTRY.command  # what `push registry` is parsed as
route = PUSH_REGISTRY.route


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    push = PUSH_REGISTRY.add_parser(
        sub,
        common,
        "Push a built system to a registry as one OCI artifact (artifactType "
        "application/vnd.osbuilder.system.v1+json): one layer per file, titled with its "
        "name (oras pull writes the same files), the build's record as the config. OUTPUT "
        "is an output prefix (output/redis: every file output/redis-* and output/redis.*) "
        "or a file; ARCH=OUTPUT gives a system for another architecture, and several "
        "architectures make an index. PREFIX.spdx.json (or --sbom) is attached as the "
        "system's SBOM, a referrer.",
    )
    push.add_argument("ref", metavar="REF", help="where to push, e.g. registry.example/redis:1")
    push.add_argument("outputs", nargs="+", metavar="OUTPUT", help="e.g. output/redis")
    push.add_argument("--sbom", type=Path, metavar="FILE", help="the system's SPDX JSON SBOM")
    push.add_argument("--json", action="store_true", help="print a JSON summary")
    shared.add_platform_option(push)
    shared.add_remote_options(push, sign=True)
    push.set_defaults(handler=_push_registry)

    sbom = sub.add_parser(
        "sbom",
        parents=[common],
        help="print the SBOM of a system in a registry",
        description="Find the SPDX SBOM attached to the system REF names (a referrer, by the "
        "registry's referrers API or the sha256-HEX tag of the fallback) and print it.",
    )
    sbom.add_argument("ref", metavar="REF", help="a system pushed with push registry")
    shared.add_platform_option(sbom)
    shared.add_remote_options(sbom)
    sbom.set_defaults(handler=_sbom)


def add_pull_options(parser: argparse.ArgumentParser) -> None:
    """What `osbuilder run docker://REF` needs to pull a system (store, registry, policy)."""
    shared.add_remote_options(parser, verify=True)


def _push_registry(args: argparse.Namespace) -> int:
    from osbuilder import __version__
    from osbuilder.oci.platform import host_target
    from osbuilder.oci.reference import parse_reference
    from osbuilder.systems.artifact import BuildRecord
    from osbuilder.systems.push import SystemFiles, guess_formats, output_files, split_arch

    keys = shared.signer(args)
    dest = parse_reference(args.ref)
    default_arch = args.arch or host_target().architecture
    grouped: dict[str, list[Path]] = {}
    for text in args.outputs:
        arch, path = split_arch(text)
        grouped.setdefault(arch or default_arch, []).append(Path(path))
    systems = []
    for arch, outputs in grouped.items():
        files, sbom = output_files(outputs)
        if args.sbom is not None:
            sbom = args.sbom
        record = BuildRecord(__version__, arch, formats=guess_formats(files))
        systems.append(SystemFiles(record, files, sbom))
    result = push_system(args, dest, systems, keys)
    _report(args, result)
    return ExitCode.OK


def push_system(
    args: argparse.Namespace,
    dest: ImageReference,
    systems: list[SystemFiles],
    keys: Signer,
    sboms: dict[str, bytes] | None = None,
) -> PushedSystem:
    """Push `systems`, their SBOMs (`sboms` by architecture, else their files) and, with
    `keys`, a signature of what the reference names."""
    from osbuilder.systems import push
    from osbuilder.systems.referrers import SPDX_TYPE, attach

    sboms = dict(sboms or {})
    for system in systems:
        if system.sbom is not None and system.record.architecture not in sboms:
            try:
                sboms[system.record.architecture] = system.sbom.read_bytes()
            except OSError as exc:
                raise UserError(f"{system.sbom}: cannot read: {exc.strerror}") from None
    with shared.progress_for(args) as progress, shared.registry_client(args) as client:
        result = push.push_system(client, dest, systems, progress)
        for arch, data in sboms.items():
            subject = result.manifests[arch]
            attach(client, dest, subject, SPDX_TYPE, data, "sbom.spdx.json")
            result.sboms.append(arch)
        if keys:
            _sign(args, client, dest, result.digest, keys)
            result.signed = True
    return result


def _sign(
    args: argparse.Namespace,
    client: RegistryClient,
    dest: ImageReference,
    digest: str,
    keys: Signer,
) -> None:
    from osbuilder.trust import publish
    from osbuilder.trust.attach import sign_digest

    store = shared.open_store(args)
    with store.using():
        sign_digest(store, dest, digest, keys)
        plan = publish.plan_digests(store, client, dest, [digest], None, args.registries_d)
        publish.publish(store, client, plan)


def _report(args: argparse.Namespace, result: PushedSystem) -> None:
    if args.json:
        shared.print_json(
            {
                "destination": str(result.destination),
                "digest": result.digest,
                "mediaType": result.media_type,
                "manifests": {a: d.digest for a, d in result.manifests.items()},
                "uploaded": result.uploaded,
                "present": result.present,
                "sbom": result.sboms,
                "signed": result.signed,
            }
        )
        return
    extra = []
    if result.sboms:
        extra.append("SBOM attached")
    if result.signed:
        extra.append("signed")
    print(
        f"{result.destination}@{result.digest} ({len(result.uploaded)} uploaded, "
        f"{len(result.present)} already there" + "".join(f"; {e}" for e in extra) + ")"
    )


def pull_system(
    args: argparse.Namespace,
    store: ContentStore,
    client: RegistryClient | None,
    ref: ImageReference,
) -> PulledSystem:
    from osbuilder.systems.pull import SystemPuller

    with shared.progress_for(args) as progress:
        puller = SystemPuller(
            store,
            client,
            shared.target_platform(args),
            jobs=args.jobs,
            progress=progress,
            check=shared.verifier(args, store, client).check,
        )
        return puller.pull(ref)


def _sbom(args: argparse.Namespace) -> int:
    from osbuilder.oci.platform import select_manifest
    from osbuilder.oci.reference import parse_reference
    from osbuilder.systems.artifact import (
        describes_system,
        not_a_system,
        parse_document,
        parse_system_manifest,
        untyped_index,
    )
    from osbuilder.systems.referrers import SPDX_TYPE, fetch_referrer_blob, list_referrers

    ref = parse_reference(args.ref)
    store = shared.open_store(args)
    with shared.registry_client(args) as client, store.using():
        top = client.get_manifest(ref)
        document = parse_document(top.data, ref.familiar())
        if not describes_system(document) and not untyped_index(document):
            raise not_a_system(ref.familiar(), document)
        digest = top.digest
        if "manifests" in document:
            store.put_bytes(top.data, top.digest)
            digest = select_manifest(
                store.index(top.digest), shared.target_platform(args), args.ref
            ).digest
            if untyped_index(document):  # the chosen manifest says what it is
                parse_system_manifest(client.get_manifest(ref, digest).data, ref.familiar())
        found = list_referrers(client, ref, digest, SPDX_TYPE)
        if not found:
            raise UserError(f"{ref.familiar()}: the system has no SBOM attached")
        data = fetch_referrer_blob(client, ref, digest, found[-1], store)
    sys.stdout.buffer.write(data)
    if not data.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    return ExitCode.OK
