"""Fetching an image's signatures into the content store.

Sigstore signatures come from the registry, as the tag cosign attaches them under
(`sha256-HEX.sig` of the image's repository); simple signatures from the lookaside
store registries.d names for the repository (`file://` read here, `http(s)://`
fetched), numbered `signature-1`, `signature-2`... until the first missing one, as
containers/image reads them. Every read is bounded; what is fetched is kept (see
stored.py) but is only data until verified.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from osbuilder.errors import ExternalError
from osbuilder.oci.download import download_blob
from osbuilder.oci.model import Manifest, parse_json
from osbuilder.oci.reference import ImageReference
from osbuilder.oci.registry import ManifestNotFound
from osbuilder.oci.store import MAX_DOCUMENT_SIZE, ContentStore
from osbuilder.trust.payload import InvalidSignature
from osbuilder.trust.registries import RegistriesConfig, lookaside_for, signature_url
from osbuilder.trust.sigstore import sigstore_tag
from osbuilder.trust.simplesign import MAX_SIGNATURE_SIZE as MAX_SIMPLE_SIGNATURE_SIZE
from osbuilder.trust.stored import (
    MAX_SIGNATURES,
    add_simple_signatures,
    check_signature_manifest,
    sigstore_name,
)

if TYPE_CHECKING:
    from osbuilder.oci.registry import RegistryClient

log = logging.getLogger(__name__)


def fetch_sigstore(
    store: ContentStore, client: RegistryClient, ref: ImageReference, manifest_digest: str
) -> int:
    """Copy the cosign signature manifest of `manifest_digest`, if the registry has one,
    and its payloads into the store; returns the number of signatures found."""
    name = sigstore_name(ref, manifest_digest)
    try:
        fetched = client.get_manifest(ref, sigstore_tag(manifest_digest))
    except ManifestNotFound:
        return 0
    manifest = parse_json(Manifest, fetched.data, name)
    check_signature_manifest(manifest, name)
    if manifest.config.size > MAX_DOCUMENT_SIZE:
        raise InvalidSignature(f"{name}: a config of {manifest.config.size} bytes")
    endpoints = [fetched.endpoint]
    # The config too, which verifying does not read: the manifest is pushed and exported
    # whole, and a registry takes no manifest whose blobs it lacks.
    for blob in (manifest.config, *manifest.layers):
        download_blob(client, endpoints, ref.repository, blob, store)
    store.put_bytes(fetched.data, fetched.digest)
    store.tag(name, fetched.descriptor)
    return len(manifest.layers)


def fetch_simple(
    store: ContentStore,
    client: RegistryClient | None,
    registries: RegistriesConfig,
    ref: ImageReference,
    manifest_digest: str,
) -> int:
    """Copy the simple signatures of `manifest_digest` from the repository's lookaside
    into the store (an http(s) lookaside only with a client: not offline); returns the
    number found there."""
    base = lookaside_for(registries, ref).read_url
    found: list[bytes] = []
    for number in range(1, MAX_SIGNATURES + 2):
        url = signature_url(base, manifest_digest, number)
        data = _read(url, client)
        if data is None:
            break
        if number > MAX_SIGNATURES:
            raise InvalidSignature(
                f"{url}: expected at most {MAX_SIGNATURES} signatures for one image"
            )
        found.append(data)
    if found:
        add_simple_signatures(store, ref, manifest_digest, found)
    return len(found)


def _read(url: str, client: RegistryClient | None) -> bytes | None:
    """The signature at `url`, None when there is none."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return _read_file(Path(unquote(parts.path)))
    if client is None:
        log.info("offline: not reading the lookaside %s", url)
        return None
    return _read_http(url, client)


def _read_file(path: Path) -> bytes | None:
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_SIMPLE_SIGNATURE_SIZE + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ExternalError(f"{path}: cannot read the signature: {exc.strerror or exc}") from None
    return _bounded(data, str(path))


def _read_http(url: str, client: RegistryClient) -> bytes | None:
    import httpx  # (~40 ms: only for a lookaside served over HTTP)

    try:
        with client.http.stream("GET", url) as response:
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                raise ExternalError(f"{url}: HTTP {response.status_code}")
            data = b""
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > MAX_SIMPLE_SIGNATURE_SIZE:
                    break
    except httpx.HTTPError as exc:
        raise ExternalError(f"{url}: cannot fetch the signature: {exc}") from None
    return _bounded(data, url)


def _bounded(data: bytes, where: str) -> bytes:
    if len(data) > MAX_SIMPLE_SIGNATURE_SIZE:
        raise InvalidSignature(
            f"{where}: expected a signature of at most {MAX_SIMPLE_SIGNATURE_SIZE} bytes, "
            "found more"
        )
    return data
