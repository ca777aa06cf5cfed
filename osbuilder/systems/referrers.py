"""Referrers: artifacts about a system (its SBOM) that point at it with `subject`.

The distribution spec (1.1) lists a manifest's referrers at GET /v2/NAME/referrers/
DIGEST, an image index. A registry without that API (404 there, as Debian's
docker-registry 2.8) gets the fallback the spec defines: the tag `sha256-HEX` of the
subject's digest names an OCI index of the referrers' descriptors, which the client
that pushes a referrer updates (read, add, write). Reads try the API, then the tag.
"""

from __future__ import annotations

import json
from typing import Any

from osbuilder.errors import ExternalError, UserError
from osbuilder.oci import mediatypes
from osbuilder.oci.download import download_blob
from osbuilder.oci.model import Descriptor, InvalidDocument, sha256_digest
from osbuilder.oci.progress import NullProgress
from osbuilder.oci.reference import ImageReference
from osbuilder.oci.registry import ManifestNotFound, RegistryClient
from osbuilder.oci.store import MAX_DOCUMENT_SIZE, ContentStore
from osbuilder.oci.transport import read_body
from osbuilder.systems.artifact import EMPTY_TYPE, TITLE, parse_document
from osbuilder.systems.artifact import artifact_type as artifact_type_of
from osbuilder.systems.push import BlobUploader, PushedSystem

SPDX_TYPE = "application/spdx+json"
EMPTY_DATA = b"{}"
MAX_REFERRERS = 1000  # entries of one referrers index taken
MAX_UNTYPED = 16  # entries without artifactType whose manifests are read for their type
MAX_SBOM_SIZE = 256 * 1024 * 1024
_TAG_ROUNDS = 3  # read-add-write rounds of the referrers tag


def fallback_tag(digest: str) -> str:
    """The referrers tag schema's tag of `digest`: sha256:HEX -> sha256-HEX."""
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}-{hexdigest}"


def referrer_manifest(
    subject: Descriptor, artifact_type: str, blob: Descriptor, annotations: dict[str, str]
) -> bytes:
    """An artifact manifest about `subject`: the empty config, one blob (as the image-spec's
    artifact guidance has it for artifacts whose data is all in their layer)."""
    document = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {
            "mediaType": EMPTY_TYPE,
            "digest": sha256_digest(EMPTY_DATA),
            "size": len(EMPTY_DATA),
        },
        "layers": [blob.as_json()],
        "subject": Descriptor(subject.media_type, subject.digest, subject.size).as_json(),
        "annotations": annotations,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def referrers_api(
    client: RegistryClient, ref: ImageReference, digest: str
) -> list[dict[str, Any]] | None:
    """The referrers of `digest` by the API; None when the registry has no such API."""
    endpoint = client.origin(ref.registry)
    url = endpoint.url(f"{ref.repository}/referrers/{digest}")
    what = f"referrers of {digest[:19]} in {ref.repository} at {endpoint.base_url}"
    headers = {"Accept": mediatypes.OCI_INDEX}
    with client.read("GET", url, endpoint, headers=headers, what=what) as response:
        if response.status in (404, 405, 400):
            return None
        if response.status != 200:
            raise ExternalError(f"{what}: HTTP {response.status}")
        content_type = (response.header("content-type") or "").split(";")[0].strip()
        data = read_body(response, MAX_DOCUMENT_SIZE, what)
    if content_type != mediatypes.OCI_INDEX:  # some registries answer other pages with 200
        return None
    return _entries(data, what)


def referrers_tag(client: RegistryClient, ref: ImageReference, digest: str) -> list[dict[str, Any]]:
    """The referrers of `digest` by the tag schema (none when the tag does not exist)."""
    tag = fallback_tag(digest)
    try:
        fetched = client.get_manifest(ref, tag)
    except ManifestNotFound:
        return []
    return _entries(fetched.data, f"{ref.familiar()}:{tag}")


def list_referrers(
    client: RegistryClient, ref: ImageReference, digest: str, artifact_type: str | None = None
) -> list[dict[str, Any]]:
    """The descriptors of `digest`'s referrers (of `artifact_type`), API first."""
    entries = referrers_api(client, ref, digest)
    if entries is None:
        entries = referrers_tag(client, ref, digest)
    chosen = []
    untyped = 0
    for entry in entries:
        if entry.get("digest") == digest:
            raise UserError(
                f"{ref.familiar()}: the referrers of {digest[:19]} list it as its own "
                "referrer (a referrer loop); refusing it"
            )
        typed = entry
        if "artifactType" not in entry and artifact_type is not None and untyped < MAX_UNTYPED:
            untyped += 1
            typed = {**entry, "artifactType": _referrer_type(client, ref, str(entry["digest"]))}
        if artifact_type is None or typed.get("artifactType") == artifact_type:
            chosen.append(typed)
    return chosen


def _referrer_type(client: RegistryClient, ref: ImageReference, digest: str) -> str | None:
    """A referrer's type from its manifest, for an entry of the index that lacks it (as
    `skopeo copy` 1.9 writes a referrers index it copies: without artifactType)."""
    fetched = client.get_manifest(ref, digest)
    return artifact_type_of(parse_document(fetched.data, f"{ref.familiar()}@{digest[:19]}"))


def _entries(data: bytes, what: str) -> list[dict[str, Any]]:
    document = parse_document(data, what)
    manifests = document.get("manifests")
    if document.get("mediaType", mediatypes.OCI_INDEX) != mediatypes.OCI_INDEX or not isinstance(
        manifests, list
    ):
        raise UserError(f"{what}: not an OCI index of referrers")
    if len(manifests) > MAX_REFERRERS:
        raise UserError(f"{what}: {len(manifests)} referrers; taking at most {MAX_REFERRERS}")
    entries = []
    for i, entry in enumerate(manifests):
        try:
            Descriptor.from_json(entry, f"{what} entry {i}")
        except InvalidDocument as exc:
            raise UserError(str(exc)) from None
        entries.append(entry)
    return entries


def attach(
    client: RegistryClient,
    ref: ImageReference,
    subject: Descriptor,
    artifact_type: str,
    data: bytes,
    title: str,
) -> Descriptor:
    """Push `data` as an artifact of `artifact_type` referring to `subject`; list it
    among `subject`'s referrers (by the API when the registry has it, else by the tag)."""
    result = PushedSystem(ref, subject.digest, subject.media_type, subject.size)
    uploader = BlobUploader(client, ref, NullProgress(), result)
    empty = Descriptor(EMPTY_TYPE, sha256_digest(EMPTY_DATA), len(EMPTY_DATA))
    uploader.data(empty, EMPTY_DATA)
    blob = Descriptor(artifact_type, sha256_digest(data), len(data), annotations={TITLE: title})
    uploader.data(blob, data)
    manifest = referrer_manifest(subject, artifact_type, blob, {TITLE: title})
    digest = client.put_manifest(ref, sha256_digest(manifest), manifest, mediatypes.OCI_MANIFEST)
    descriptor = Descriptor(
        mediatypes.OCI_MANIFEST,
        digest,
        len(manifest),
        annotations={TITLE: title},
        extra={"artifactType": artifact_type},
    )
    if referrers_api(client, ref, subject.digest) is None:
        _add_to_tag(client, ref, subject.digest, descriptor)
    return descriptor


def _add_to_tag(
    client: RegistryClient, ref: ImageReference, subject: str, descriptor: Descriptor
) -> None:
    """Read the referrers index of the fallback tag, add `descriptor`, write it back.

    The registry offers no conditional write: two pushers at once may each write an index
    without the other's entry. Reading it back and writing again when ours is missing
    keeps the last writer's entry there (a few rounds at most)."""
    tag = fallback_tag(subject)
    for _ in range(_TAG_ROUNDS):
        entries = referrers_tag(client, ref, subject)
        if any(e.get("digest") == descriptor.digest for e in entries):
            return
        entries.append(descriptor.as_json())
        index = json.dumps(
            {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": entries},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        client.put_manifest(ref, tag, index, mediatypes.OCI_INDEX)
    if not any(e.get("digest") == descriptor.digest for e in referrers_tag(client, ref, subject)):
        raise ExternalError(
            f"{ref.familiar()}:{tag}: other writers keep replacing the referrers index; push again"
        )


def fetch_referrer_blob(
    client: RegistryClient,
    ref: ImageReference,
    subject: str,
    entry: dict[str, Any],
    store: ContentStore,
    limit: int = MAX_SBOM_SIZE,
) -> bytes:
    """The one blob of the referrer `entry` of `subject`, digest-checked (fetched into
    `store`) and bounded."""
    digest = str(entry["digest"])
    fetched = client.get_manifest(ref, digest)
    where = f"{ref.familiar()}@{digest[:19]}"
    document = parse_document(fetched.data, where)
    subject_of = document.get("subject")
    if not isinstance(subject_of, dict) or subject_of.get("digest") != subject:
        raise UserError(f"{where}: a referrer of {subject[:19]} whose subject is not that")
    layers = document.get("layers")
    if not isinstance(layers, list) or len(layers) != 1:
        raise UserError(f"{where}: a referrer with {len(layers or [])} blobs, not one")
    try:
        blob = Descriptor.from_json(layers[0], f"{where} layer")
    except InvalidDocument as exc:
        raise UserError(str(exc)) from None
    if blob.size > limit:
        raise UserError(f"{where}: its blob is {blob.size} bytes, more than {limit}")
    download_blob(client, client.pull_endpoints(ref.registry), ref.repository, blob, store)
    try:
        return store.blob_path(blob.digest).read_bytes()
    except OSError as exc:
        raise UserError(f"{store.root}: cannot read blob {blob.digest}: {exc.strerror}") from None
