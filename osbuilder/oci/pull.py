"""Pulling images into the content store.

A reference resolves to a manifest (through an index, for the target
platform), and its config and layers are fetched in parallel. A reference
pinned by digest whose content is all in the store never touches the
network; a tag is re-resolved (one HEAD request) unless offline. Without its
layers (`layers=False`), a pull only resolves: the manifests and the config,
what a lock records, and the store does not name the image.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from msgspec import Struct

from osbuilder.errors import ExternalError, UserError
from osbuilder.oci.download import download_blob
from osbuilder.oci.model import (
    Descriptor,
    ImageConfig,
    Manifest,
    detect_media_type,
    is_index,
    parse_json,
)
from osbuilder.oci.platform import TargetPlatform, select_manifest
from osbuilder.oci.progress import NullProgress, Progress
from osbuilder.oci.reference import ImageReference
from osbuilder.oci.registry import Endpoint, FetchedManifest, RegistryClient
from osbuilder.oci.store import ContentStore

log = logging.getLogger(__name__)

#: Judges an image (or a system) before it is used: (reference, the digest it resolved to, the
#: platform manifest's digest); raises UserError to refuse it (trust/verify.py).
ImageCheck = Callable[[ImageReference, str, str], object]


class Image(Struct, frozen=True):
    """An image in the store, resolved for one platform."""

    reference: ImageReference
    descriptor: Descriptor  # what the name points to: an index or a manifest
    manifest_descriptor: Descriptor  # the manifest for the platform
    manifest: Manifest
    config: ImageConfig

    @property
    def digest(self) -> str:
        return self.descriptor.digest


class PullResult(Struct, frozen=True):
    image: Image
    transferred: int  # bytes downloaded by this pull
    network: bool  # whether the registry was contacted at all


class StorePuller:
    """What pulls into one store for one platform share: images here, built systems in
    systems/pull.py."""

    def __init__(
        self,
        store: ContentStore,
        client: RegistryClient | None,
        target: TargetPlatform,
        *,
        jobs: int = 6,
        progress: Progress | None = None,
        check: ImageCheck | None = None,
    ) -> None:
        self.store = store
        self.check = check  # applied before any layer or file is fetched
        self.client = client  # None: offline, the store only
        self.target = target
        self.jobs = jobs
        self.progress = progress or NullProgress()

    def _stored(self, digest: str) -> Descriptor | None:
        """A descriptor for a blob we hold, with its media type read from the document."""
        if not self.store.has_blob(digest):
            return None
        data = self.store.read_blob(digest)
        return Descriptor(media_type=detect_media_type(data, None), digest=digest, size=len(data))

    def _fetch_blobs(
        self,
        client: RegistryClient,
        endpoints: list[Endpoint],
        ref: ImageReference,
        blobs: list[Descriptor],
    ) -> int:
        return fetch_blobs(
            client, endpoints, ref.repository, blobs, self.store, self.progress, self.jobs
        )


class Puller(StorePuller):
    """Pulls images for one platform into one store; `check` also judges every image
    found in the store."""

    def pull(self, ref: ImageReference, *, layers: bool = True) -> PullResult:
        """The image `ref` names, in the store; with `layers` False, all of it but its
        layers."""
        name = str(ref)
        with self.store.using():
            if ref.digest is not None:
                pinned = self._stored(ref.digest)
                if pinned is not None and self._complete(pinned, ref, layers):
                    return self._done(ref, pinned, 0, network=False)
            if self.client is None:
                return self._offline(ref, name, layers)
            known = self.store.lookup(name)
            if ref.digest is None and known is not None and self._complete(known, ref, layers):
                current = self.client.head_manifest(ref)
                if current == known.digest:
                    return self._done(ref, known, 0, network=True)
            return self._fetch(ref, self.client, layers)

    def _offline(self, ref: ImageReference, name: str, layers: bool) -> PullResult:
        descriptor = self.store.lookup(name)
        if descriptor is None and ref.digest is not None:
            descriptor = self._stored(ref.digest)
        if descriptor is None or not self._complete(descriptor, ref, layers):
            raise UserError(
                f"{ref.familiar()} is not in the content store; pull it first (without --offline)"
            )
        return self._done(ref, descriptor, 0, network=False)

    def _fetch(self, ref: ImageReference, client: RegistryClient, layers: bool) -> PullResult:
        top = client.get_manifest(ref)
        self.store.put_bytes(top.data, top.digest)
        served = top  # blobs come from where the manifest came from
        manifest_digest = top.digest
        if is_index(top.media_type):
            entry = select_manifest(self.store.index(top.digest), self.target, ref.familiar())
            manifest_digest = entry.digest
            if not self.store.has_blob(entry.digest):
                served = client.get_manifest(ref, entry.digest)
                self.store.put_bytes(served.data, entry.digest)
        if self.check is not None:  # before the layers: a refused image costs no download
            self.check(ref, top.digest, manifest_digest)
        manifest = self.store.manifest(manifest_digest)
        missing = [b for b in _blobs(manifest, layers) if not self.store.has_blob(b.digest)]
        transferred = self._fetch_blobs(client, _endpoints(client, ref, served), ref, missing)
        if layers:  # a name in the store stands for a whole image
            self.store.tag(str(ref), top.descriptor)
        return self._done(ref, top.descriptor, transferred, network=True)

    def _manifest_digest(self, descriptor: Descriptor, ref: ImageReference) -> str:
        if is_index(descriptor.media_type):
            index = self.store.index(descriptor.digest)
            return select_manifest(index, self.target, ref.familiar()).digest
        return descriptor.digest

    def _complete(self, descriptor: Descriptor, ref: ImageReference, layers: bool) -> bool:
        try:
            digest = self._manifest_digest(descriptor, ref)
        except UserError:
            return False
        if not self.store.has_blob(digest):
            return False
        manifest = self.store.manifest(digest)
        return all(self.store.has_blob(b.digest) for b in _blobs(manifest, layers))

    def _done(
        self, ref: ImageReference, descriptor: Descriptor, transferred: int, *, network: bool
    ) -> PullResult:
        manifest_digest = self._manifest_digest(descriptor, ref)
        if self.check is not None:
            self.check(ref, descriptor.digest, manifest_digest)
        manifest = self.store.manifest(manifest_digest)
        config = parse_json(
            ImageConfig, self.store.read_blob(manifest.config.digest), f"config of {ref.familiar()}"
        )
        if not is_index(descriptor.media_type) and (
            config.os != self.target.os or config.architecture != self.target.architecture
        ):
            raise UserError(
                f"{ref.familiar()} is a {config.os}/{config.architecture} image, not {self.target}"
            )
        manifest_descriptor = Descriptor(
            media_type=manifest.media_type or descriptor.media_type,
            digest=manifest_digest,
            size=self.store.blob_path(manifest_digest).stat().st_size,
        )
        image = Image(ref, descriptor, manifest_descriptor, manifest, config)
        return PullResult(image, transferred, network)


def fetch_blobs(
    client: RegistryClient,
    endpoints: list[Endpoint],
    repository: str,
    blobs: list[Descriptor],
    store: ContentStore,
    progress: Progress,
    jobs: int,
) -> int:
    """Download `blobs` of `repository` into `store`, `jobs` at a time; the bytes
    transferred. A failure cancels what has not started, and the first error is raised
    once the running ones end."""
    if not blobs:
        return 0
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(blobs)))) as pool:
        futures = [
            pool.submit(download_blob, client, endpoints, repository, blob, store, progress)
            for blob in blobs
        ]
        errors = []
        for future in futures:
            try:
                future.result()
            except (ExternalError, UserError) as exc:
                errors.append(exc)
                for other in futures:
                    other.cancel()
        if errors:
            raise errors[0]
        return sum(f.result() for f in futures)


def _blobs(manifest: Manifest, layers: bool) -> tuple[Descriptor, ...]:
    """The blobs of an image besides its manifests: its config, and its layers if asked."""
    return (manifest.config, *manifest.layers) if layers else (manifest.config,)


def _endpoints(
    client: RegistryClient, ref: ImageReference, served: FetchedManifest
) -> list[Endpoint]:
    """Blobs come from the endpoint that served the manifest, then the origin."""
    endpoints = [served.endpoint]
    origin = client.origin(ref.registry)
    if served.endpoint != origin:
        endpoints.append(origin)
    return endpoints
