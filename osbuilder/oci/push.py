"""Pushing images from the content store to a registry.

Blobs first (a HEAD skips those present; a blob the destination registry
already has in another repository is mounted rather than uploaded), then
the manifests, then the index, so the registry never sees a manifest whose
content is missing.
"""

from __future__ import annotations

from msgspec import Struct, field

from osbuilder.errors import UserError
from osbuilder.oci.model import Descriptor, is_index
from osbuilder.oci.progress import NullProgress, Progress
from osbuilder.oci.reference import ImageReference, parse_reference
from osbuilder.oci.registry import RegistryClient
from osbuilder.oci.store import ContentStore
from osbuilder.oci.upload import upload_blob


class PushResult(Struct):
    destination: ImageReference
    digest: str
    uploaded: list[str] = field(default_factory=list)
    mounted: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)


def push(
    store: ContentStore,
    client: RegistryClient,
    source: str,
    destination: ImageReference | None = None,
    progress: Progress | None = None,
) -> PushResult:
    """Push the image the store names `source` to `destination` (default: where it came from)."""
    source_ref = parse_reference(source)
    name = str(source_ref)
    with store.using():
        descriptor = store.lookup(name)
        if descriptor is None:
            raise UserError(f"{source_ref.familiar()} is not in the content store")
        dest = destination or source_ref
        result = PushResult(dest, descriptor.digest)
        mount_from = (
            source_ref.repository
            if source_ref.registry == dest.registry and source_ref.repository != dest.repository
            else None
        )
        pusher = _Pusher(store, client, dest, mount_from, progress or NullProgress(), result)
        if is_index(descriptor.media_type):
            children = store.index(descriptor.digest).manifests
            missing = [c for c in children if not store.has_blob(c.digest)]
            if missing:
                platforms = ", ".join(str(c.platform or c.digest) for c in missing)
                raise UserError(
                    f"{source_ref.familiar()} is an index whose images for {platforms} are not "
                    "in the store; push a single-platform image instead"
                )
            for child in children:
                pusher.manifest(child, child.digest)
        reference = dest.digest or dest.tag or descriptor.digest
        if dest.digest is not None and dest.digest != descriptor.digest:
            raise UserError(f"destination digest {dest.digest} differs from the image's")
        pusher.manifest(descriptor, reference)
        return result


class _Pusher(Struct):
    store: ContentStore
    client: RegistryClient
    dest: ImageReference
    mount_from: str | None
    progress: Progress
    result: PushResult

    def manifest(self, descriptor: Descriptor, reference: str) -> None:
        if not is_index(descriptor.media_type):
            manifest = self.store.manifest(descriptor.digest)
            for blob in (manifest.config, *manifest.layers):
                self.blob(blob)
        data = self.store.read_blob(descriptor.digest)
        self.client.put_manifest(self.dest, reference, data, descriptor.media_type)

    def blob(self, blob: Descriptor) -> None:
        if not self.store.has_blob(blob.digest):
            raise UserError(f"blob {blob.digest} of {self.dest.familiar()} is not in the store")
        if self.client.blob_exists(self.dest, blob.digest):
            self.result.present.append(blob.digest)
            return
        how = upload_blob(
            self.client,
            self.dest,
            blob,
            self.store.blob_path(blob.digest),
            mount_from=self.mount_from,
            progress=self.progress,
        )
        (self.result.mounted if how == "mounted" else self.result.uploaded).append(blob.digest)
