"""Packages shared through a registry: `pkg build --cache-from REGISTRY/NAMESPACE`.

A recipe's image `osbuilder/NAME:TAG` is looked for as `REGISTRY/NAMESPACE/NAME:TAG`.
The tag hashes the recipe and its lock (tag.py), so one tag is one content: a tag the
registry holds for the target architecture is pulled into the store instead of built,
as LinuxKit's `pkg build` skips what its registry has, and named there by the recipe's
own name, the one specs use. The pull is judged by the signature policy like any
`osbuilder pull`, and the image's sigstore signatures come along (under both names).

A tag the registry holds only for other architectures is a miss; with `--push`, those
architectures are pulled first, so that what is pushed back is an index of them all and
no architecture is dropped from the registry's tag.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from osbuilder.errors import ExternalError, UserError
from osbuilder.oci.download import download_blob
from osbuilder.oci.imagewriter import write_index
from osbuilder.oci.model import Descriptor, ImageConfig, Index, Manifest, is_index, parse_json
from osbuilder.oci.platform import TargetPlatform
from osbuilder.oci.pull import ImageCheck, Puller
from osbuilder.oci.reference import ImageReference, InvalidReference, parse_reference
from osbuilder.oci.registry import ManifestNotFound
from osbuilder.oci.store import ContentStore, DigestMismatch
from osbuilder.pkg.build import images_by_platform, is_for
from osbuilder.trust.fetch import fetch_sigstore
from osbuilder.trust.stored import sigstore_name

if TYPE_CHECKING:
    from osbuilder.oci.registry import RegistryClient

T = TypeVar("T")


def parse_namespace(text: str) -> str:
    """`--cache-from`'s REGISTRY/NAMESPACE, normalised (`127.0.0.1:5000/pkgs`,
    `ghcr.io/acme/osbuilder`); UserError when it cannot begin an image name."""
    value = text.strip().rstrip("/")
    if not value:
        raise UserError("--cache-from: expected REGISTRY/NAMESPACE, e.g. ghcr.io/acme")
    try:
        probe = parse_reference(f"{value}/x")
    except InvalidReference as exc:
        raise UserError(f"--cache-from {text!r}: not a registry namespace ({exc})") from None
    if probe.tag not in (None, "latest") or probe.digest is not None:
        raise UserError(f"--cache-from {text!r}: a namespace has no tag or digest")
    path = probe.repository.removesuffix("x").rstrip("/")  # a bare registry has none
    return f"{probe.registry}/{path}".rstrip("/")


def shared_reference(namespace: str, reference: str) -> ImageReference:
    """Where `reference` (REPO/NAME:TAG, as the store names it) is shared:
    NAMESPACE/NAME:TAG."""
    local = parse_reference(reference)
    name = local.repository.rsplit("/", 1)[-1]
    return parse_reference(f"{namespace}/{name}:{local.tag}")


@dataclass(frozen=True)
class Pulled:
    remote: ImageReference
    descriptor: Descriptor  # what the recipe's name now holds in the store
    transferred: int
    signatures: int  # sigstore signatures brought along


class CacheUnreachable(ExternalError):
    """The registry of --cache-from does not answer."""


@dataclass
class PackageCache:
    """One registry namespace packages are pulled from and pushed to."""

    namespace: str
    store: ContentStore
    client: RegistryClient
    check: ImageCheck | None = None  # the signature policy, applied to the shared name
    jobs: int = 6

    def pull(
        self, reference: str, target: TargetPlatform, *, keep_others: bool = False
    ) -> Pulled | None:
        """Pull `reference`'s image for `target` from the shared namespace and name it
        `reference` in the store; None when the registry has none for `target` (with
        `keep_others`, the architectures it has are pulled and named, so that a build
        adds `target` to them). CacheUnreachable when the registry does not answer."""
        remote = shared_reference(self.namespace, reference)
        platforms = self._platforms(remote)
        if platforms is None:
            return None
        if not any(target.matches(p.os, p.architecture, p.variant) for p in platforms):
            if keep_others:
                for platform in platforms:
                    other = TargetPlatform(platform.architecture, platform.os, platform.variant)
                    self._pull_one(reference, remote, other)
            return None
        return self._pull_one(reference, remote, target)

    def _pull_one(self, reference: str, remote: ImageReference, target: TargetPlatform) -> Pulled:
        puller = Puller(self.store, self.client, target, jobs=self.jobs, check=self.check)
        result = self._guard(remote, lambda: puller.pull(remote))
        image = result.image
        digests = list(dict.fromkeys([image.digest, image.manifest_descriptor.digest]))
        signatures = sum(self._signatures(reference, remote, d) for d in digests)
        descriptor = self._name(reference, image.descriptor, target)
        return Pulled(remote, descriptor, result.transferred, signatures)

    def _platforms(self, remote: ImageReference) -> list[PlatformLike] | None:
        """The platforms the registry holds under `remote`; None: no such tag."""
        try:
            fetched = self._guard(remote, lambda: self.client.get_manifest(remote))
        except ManifestNotFound:
            return None
        what = f"{remote.familiar()} in the package cache"
        if is_index(fetched.media_type):
            index = parse_json(Index, fetched.data, what)
            return [
                PlatformLike(e.platform.os, e.platform.architecture, e.platform.variant)
                for e in index.manifests
                if e.platform is not None
            ]
        manifest = parse_json(Manifest, fetched.data, what)
        self._guard(
            remote,
            lambda: download_blob(
                self.client, [fetched.endpoint], remote.repository, manifest.config, self.store
            ),
        )
        config = parse_json(ImageConfig, self.store.read_blob(manifest.config.digest), what)
        return [PlatformLike(config.os, config.architecture, config.variant)]

    def _signatures(self, reference: str, remote: ImageReference, digest: str) -> int:
        """Bring the sigstore signatures of `digest` along, and name them for the recipe's
        name too: a build that requires them finds them in the store."""
        found = self._guard(remote, lambda: fetch_sigstore(self.store, self.client, remote, digest))
        stored = self.store.lookup(sigstore_name(remote, digest))
        if stored is not None:
            self.store.tag(sigstore_name(parse_reference(reference), digest), stored)
        return found

    def _name(self, reference: str, pulled: Descriptor, target: TargetPlatform) -> Descriptor:
        """Name `reference` the image pulled, keeping the other architectures the store's
        name held (the registry's index itself when it has them all, so digests agree)."""
        held = images_by_platform(self.store, self.store.lookup(reference))
        others = [e for e in held if not is_for(e, target)]
        if is_index(pulled.media_type):
            listed = {e.digest for e in self.store.index(pulled.digest).manifests}
            if all(o.digest in listed for o in others):
                self.store.tag(reference, pulled)
                return pulled
            mine = [
                e
                for e in self.store.index(pulled.digest).manifests
                if e.platform is not None and is_for(e, target)
            ]
            descriptor = write_index(self.store, [*others, *mine])
        elif others:
            entry = pulled.replace(platform=target.index_platform())
            descriptor = write_index(self.store, [*others, entry])
        else:
            descriptor = pulled
        self.store.tag(reference, descriptor)
        return descriptor

    def _guard(self, remote: ImageReference, call: Callable[[], T]) -> T:
        """`call`, its failures to reach the registry as CacheUnreachable."""
        try:
            return call()
        except (CacheUnreachable, DigestMismatch):
            raise  # (content that does not match its digest is no cache miss)
        except ExternalError as exc:
            raise CacheUnreachable(
                f"package cache {self.namespace}: cannot read {remote.familiar()}: {exc}"
            ) from None


@dataclass(frozen=True)
class PlatformLike:
    os: str
    architecture: str
    variant: str | None
