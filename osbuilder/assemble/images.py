"""Images for a build: taken from the content store, pulled when missing.

As in LinuxKit, an image already complete in the store is used as it is (its
tag is not re-resolved): osbuilder's own packages carry content-derived tags,
so a tag names one content. `--pull` re-resolves every tag; `--offline`
never touches the network. A reference with a pin (from the spec's lock) is
asked for by the pinned digest only: a tag that has moved since is not followed.

Every image given is judged by the signature policy (trust/verify.py). One taken from
the store as it is gets its signatures from the store (and file:// lookasides) only;
`--pull` looks for them where they are published too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from msgspec import Struct, field

from osbuilder.errors import UserError
from osbuilder.oci.platform import TargetPlatform
from osbuilder.oci.progress import NullProgress, Progress
from osbuilder.oci.pull import Image, ImageCheck, Puller
from osbuilder.oci.reference import parse_reference
from osbuilder.oci.store import ContentStore

if TYPE_CHECKING:
    from osbuilder.oci.registry import RegistryClient
    from osbuilder.trust.verify import Verifier


class Pin(Struct, frozen=True):
    """The content a reference must give: what it named when locked, and the manifest that
    has for the target platform."""

    digest: str
    manifest: str


class ImageSource(Struct):
    store: ContentStore
    client: RegistryClient | None  # None: offline
    target: TargetPlatform
    pull_always: bool = False
    progress: Progress = field(default_factory=NullProgress)
    jobs: int = 6  # blobs transferred in parallel
    pins: Mapping[str, Pin] = field(default_factory=dict)  # by reference, as the spec has it
    verifier: Verifier | None = None  # None: no signature policy applies
    _resolved: dict[str, Image] = field(default_factory=dict)

    def get(self, reference: str) -> Image:
        """The image `reference` names, for the target platform, in the store."""
        if reference not in self._resolved:
            self._resolved[reference] = self._image(reference, layers=True)
        return self._resolved[reference]

    def resolve(self, reference: str) -> Image:
        """The image `get` would give, with only its manifests and config in the store:
        what it is, without its layers."""
        return self._image(reference, layers=False)

    def for_platform(self, image: Image, platform: TargetPlatform) -> Image:
        """The image for `platform` of the index `image` came from: asked for by the index's
        digest, so the content the build took for its own platform, whatever the tag names
        now (an OCI-format volume holds several platforms)."""
        puller = Puller(
            self.store,
            self.client,
            platform,
            jobs=self.jobs,
            progress=self.progress,
            check=self._check(self.client),
        )
        return puller.pull(image.reference.with_digest(image.digest)).image

    def _check(self, client: RegistryClient | None) -> ImageCheck | None:
        """The policy's check, looking for signatures with `client` (None: in the store)."""
        if self.verifier is None:
            return None
        return self.verifier.with_client(client).check

    def _image(self, reference: str, *, layers: bool) -> Image:
        ref = parse_reference(reference)
        pin = self.pins.get(reference)
        if pin is not None:
            ref = ref.with_digest(pin.digest)
        cached = Puller(self.store, None, self.target)
        image = None
        if not self.pull_always:
            try:  # only a complete image is taken from the store as it is, as a build would
                image = cached.pull(ref).image
            except UserError:  # not (completely) in the store: pull it below
                image = None
            if image is not None and (check := self._check(None)) is not None:
                check(ref, image.digest, image.manifest_descriptor.digest)
        if image is None:
            cached.check = self._check(None)
            if self.client is None:
                image = cached.pull(ref, layers=layers).image  # the clear "pull it first" error
            else:
                puller = Puller(
                    self.store,
                    self.client,
                    self.target,
                    jobs=self.jobs,
                    progress=self.progress,
                    check=self._check(self.client),
                )
                image = puller.pull(ref, layers=layers).image
        if pin is not None and image.manifest_descriptor.digest != pin.manifest:
            raise UserError(
                f"{ref.familiar()} has manifest {image.manifest_descriptor.digest} for "
                f"{self.target}, not {pin.manifest} as its lock says (a lock edited by hand?); "
                "write the lock afresh with osbuilder lock"
            )
        return image
