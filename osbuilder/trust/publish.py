"""Publishing an image's signatures where it is pushed (`osbuilder push`).

Sigstore signatures go to the destination registry as cosign attaches them: the same
manifest, under the same tag `sha256-HEX.sig`, in the destination repository. A push
changes no digest, so they still sign the image. Simple (OpenPGP) signatures are not a
registry's to hold: they are written to the lookaside registries.d names for writing to
the destination (`lookaside-staging`, else `lookaside`, as skopeo writes them), numbered
after the `signature-N` already there; one identical to a signature there is not written
again. Only a `file://` lookaside can be written (an http(s) one is published by other
means: write to a `file://` `lookaside-staging` and copy it there).

A signature claims the reference it was made for (the source's): whether that identity
will do for the destination's name is for the destination's policy to judge
(signedIdentity).

`plan` reads what is to be published and checks that it can be, before anything is
pushed; `publish` publishes it once the image is in the destination registry.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from osbuilder.errors import ExternalError, OsbuilderError, UserError, cannot_write
from osbuilder.oci.download import download_blob
from osbuilder.oci.push import push
from osbuilder.oci.reference import ImageReference, parse_reference
from osbuilder.oci.store import MAX_DOCUMENT_SIZE, ContentStore, StoredReference
from osbuilder.trust.registries import load_registries_d, lookaside_for, signature_url
from osbuilder.trust.sigstore import sigstore_tag
from osbuilder.trust.simplesign import MAX_SIGNATURE_SIZE as MAX_SIMPLE_SIGNATURE_SIZE
from osbuilder.trust.stored import (
    MAX_SIGNATURES,
    check_signature_manifest,
    sigstore_name,
    simple_signatures,
)

if TYPE_CHECKING:
    from osbuilder.oci.progress import Progress
    from osbuilder.oci.push import PushResult
    from osbuilder.oci.registry import RegistryClient

# Where a hard link cannot be made (a FAT stick carrying signatures to another network),
# a signature is created in place instead, still never replacing one.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV}


@dataclass(frozen=True)
class SigstoreAttachment:
    digest: str  # the manifest it signs
    stored: StoredReference  # its manifest in the store
    signatures: int  # its layers


@dataclass(frozen=True)
class SignaturePlan:
    """The signatures of an image in the store, and where they go for `destination`."""

    source: ImageReference
    destination: ImageReference
    sigstore: list[SigstoreAttachment] = field(default_factory=list)
    simple: dict[str, list[bytes]] = field(default_factory=dict)  # digest -> signatures
    lookaside: str | None = None  # the destination repository's lookaside for writing

    @property
    def empty(self) -> bool:
        return not self.sigstore and not self.simple


@dataclass(frozen=True)
class Published:
    sigstore: int = 0  # sigstore signatures pushed (in `.sig` manifests)
    written: int = 0  # simple signatures written to the lookaside
    present: int = 0  # simple signatures the lookaside had already
    lookaside: str | None = None

    def describe(self) -> str:
        if not (self.sigstore or self.written or self.present):
            return "no signatures"
        parts = []
        if self.sigstore:
            parts.append(f"{_count(self.sigstore, 'sigstore signature')} pushed")
        if self.written or self.present:
            already = f" ({self.present} already there)" if self.present else ""
            parts.append(
                f"{_count(self.written, 'simple signature')} written to {self.lookaside}{already}"
            )
        return ", ".join(parts)


def plan(
    store: ContentStore,
    client: RegistryClient,
    source: str,
    destination: ImageReference | None,
    registries_d: Path | None,
) -> SignaturePlan:
    """The signatures the store holds for the image `source` (and, for an index, its
    manifests) and where they go. Before anything is pushed, the destination's lookaside
    must be one that can be written, and a signature manifest's blobs the store lacks (a
    store keeps its payloads) are fetched from the source's registry."""
    source_ref = parse_reference(source)
    descriptor = store.lookup(str(source_ref))
    if descriptor is None:
        raise UserError(f"{source_ref.familiar()} is not in the content store")
    digests = store.manifest_digests(descriptor)
    return plan_digests(store, client, source_ref, digests, destination, registries_d)


def plan_digests(
    store: ContentStore,
    client: RegistryClient,
    source_ref: ImageReference,
    digests: Sequence[str],
    destination: ImageReference | None,
    registries_d: Path | None,
) -> SignaturePlan:
    """`plan` for the signatures of `digests`, attached in `source_ref`'s repository."""
    dest = destination or source_ref
    sigstore: list[SigstoreAttachment] = []
    simple: dict[str, list[bytes]] = {}
    for digest in digests:
        name = sigstore_name(source_ref, digest)
        stored = store.lookup(name)
        if stored is not None:
            manifest = store.manifest(stored.digest)
            check_signature_manifest(manifest, name)
            _complete(store, client, source_ref, StoredReference(name, stored))
            sigstore.append(
                SigstoreAttachment(digest, StoredReference(name, stored), len(manifest.layers))
            )
        if signatures := simple_signatures(store, source_ref, digest):
            simple[digest] = signatures
    lookaside = None
    if simple:
        config = load_registries_d(registries_d)
        lookaside = lookaside_for(config, dest).write_url
        if urlsplit(lookaside).scheme != "file":
            raise UserError(
                f"{dest.familiar()}: cannot write the simple signatures of "
                f"{source_ref.familiar()} to {lookaside}: osbuilder writes only file:// "
                "lookasides (set lookaside-staging in registries.d to a file:// directory "
                "and publish that)"
            )
    return SignaturePlan(source_ref, dest, sigstore, simple, lookaside)


def push_signed(
    store: ContentStore,
    client: RegistryClient,
    source: str,
    destination: ImageReference | None,
    registries_d: Path | None,
    progress: Progress | None = None,
) -> tuple[PushResult, Published]:
    """Push the image `source` of the store, then its signatures (`plan`, checked before
    anything is pushed, and `publish`)."""
    signatures = plan(store, client, source, destination, registries_d)
    pushed = push(store, client, source, destination, progress)
    return pushed, publish(store, client, signatures, progress)


def publish(
    store: ContentStore,
    client: RegistryClient,
    signatures: SignaturePlan,
    progress: Progress | None = None,
) -> Published:
    """Push the sigstore signatures of `signatures` to the destination repository and
    write its simple signatures to the destination's lookaside."""
    pushed = 0
    for attachment in signatures.sigstore:
        destination = signatures.destination
        tag = sigstore_tag(attachment.digest)
        dest = ImageReference(destination.registry, destination.repository, tag)
        push(store, client, attachment.stored.name, dest, progress)
        pushed += attachment.signatures
    written = present = 0
    if signatures.lookaside is not None:
        for digest, simple in signatures.simple.items():
            new, old = write_simple_signatures(signatures.lookaside, digest, simple)
            written, present = written + new, present + old
    return Published(pushed, written, present, signatures.lookaside)


def write_simple_signatures(
    lookaside: str, digest: str, signatures: list[bytes]
) -> tuple[int, int]:
    """Add `signatures` of `digest` to the `file://` repository lookaside `lookaside`
    after those there, skipping any identical to one there; returns (written, already
    there)."""
    existing: list[bytes] = []
    number = 1
    while (data := _read(_path(signature_url(lookaside, digest, number)), number)) is not None:
        existing.append(data)
        number += 1
    written = present = 0
    for signature in dict.fromkeys(signatures):
        if signature in existing:
            present += 1
            continue
        while True:  # another writer may take a number meanwhile: then the next one
            if len(existing) >= MAX_SIGNATURES:
                raise UserError(
                    f"{_path(signature_url(lookaside, digest, 1)).parent}: already "
                    f"{len(existing)} signatures, the most a reader accepts for one image"
                )
            path = _path(signature_url(lookaside, digest, number))
            if _create(path, signature):
                existing.append(signature)
                written, number = written + 1, number + 1
                break
            there = _read(path, number)
            if there is None:
                continue  # (removed meanwhile: this number again)
            existing.append(there)
            number += 1
            if there == signature:  # the other writer's is this one
                present += 1
                break
    return written, present


# --- internals ---------------------------------------------------------------------------


def _complete(
    store: ContentStore, client: RegistryClient, source: ImageReference, stored: StoredReference
) -> None:
    """Fetch the blobs of a signature manifest the store lacks (its config: the payloads
    are fetched with it) from the source's registry, which must have them."""
    missing = store.missing_blobs(stored.descriptor)
    for blob in missing:
        if blob.size > MAX_DOCUMENT_SIZE:
            raise UserError(
                f"{stored.name}: a blob of {blob.size} bytes in a signature manifest "
                f"(at most {MAX_DOCUMENT_SIZE} expected)"
            )
        try:
            download_blob(
                client, client.pull_endpoints(source.registry), source.repository, blob, store
            )
        except OsbuilderError as exc:
            kind = ExternalError if isinstance(exc, ExternalError) else UserError
            raise kind(
                f"{stored.name}: blob {blob.digest} of the signature is not in the content "
                f"store and cannot be fetched from {source.registry} ({exc}); "
                f"`osbuilder cache rm {stored.name}` pushes the image without it"
            ) from None


def _path(url: str) -> Path:
    return Path(unquote(urlsplit(url).path))


def _read(path: Path, number: int) -> bytes | None:
    """The signature at `path`, None when there is none; bounded as a reader bounds it."""
    try:
        with path.open("rb") as stream:
            return stream.read(MAX_SIMPLE_SIGNATURE_SIZE + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UserError(f"{path}: cannot read signature {number}: {exc.strerror or exc}") from None


def _create(path: Path, data: bytes) -> bool:
    """Create `path` holding `data`, complete when it appears; False if it exists."""
    remedy = "or set lookaside-staging to another directory in registries.d"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".signature-")
    except OSError as exc:
        raise cannot_write(path, exc, remedy) from None
    try:
        try:
            with os.fdopen(fd, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.chmod(temporary, 0o644)
            try:
                os.link(temporary, path)  # never replaces a signature another writer made
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                _create_in_place(path, data)
        except FileExistsError:
            return False
        except OSError as exc:
            raise cannot_write(path, exc, remedy) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return True


def _create_in_place(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _count(number: int, what: str) -> str:
    return f"{number} {what}{'s' * (number != 1)}"
