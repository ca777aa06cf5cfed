"""Images for a build: taken from the content store, pulled when missing.

As in LinuxKit, an image already complete in the store is used as it is (its
tag is not re-resolved): osbuilder's own packages carry content-derived tags,
so a tag names one content. `--pull` re-resolves every tag; `--offline`
never touches the network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgspec import Struct, field

from osbuilder.errors import UserError
from osbuilder.oci.platform import TargetPlatform
from osbuilder.oci.progress import NullProgress, Progress
from osbuilder.oci.pull import Image, Puller
from osbuilder.oci.reference import parse_reference
from osbuilder.oci.store import ContentStore

if TYPE_CHECKING:
    from osbuilder.oci.registry import RegistryClient


class ImageSource(Struct):
    store: ContentStore
    client: RegistryClient | None  # None: offline
    target: TargetPlatform
    pull_always: bool = False
    progress: Progress = field(default_factory=NullProgress)
    jobs: int = 6  # blobs transferred in parallel
    _resolved: dict[str, Image] = field(default_factory=dict)

    def get(self, reference: str) -> Image:
        """The image `reference` names, for the target platform, in the store."""
        if reference not in self._resolved:
            ref = parse_reference(reference)
            cached = Puller(self.store, None, self.target)
            image = None
            if not self.pull_always:
                try:
                    image = cached.pull(ref).image
                except UserError:  # not (completely) in the store: pull it below
                    image = None
            if image is None:
                if self.client is None:
                    image = cached.pull(ref).image  # raises the clear "pull it first" error
                else:
                    puller = Puller(
                        self.store, self.client, self.target, jobs=self.jobs, progress=self.progress
                    )
                    image = puller.pull(ref).image
            self._resolved[reference] = image
        return self._resolved[reference]
