"""What a volume of `format: oci` holds: its image as an OCI layout, as LinuxKit lays it
out (moby/build/image.go ImageOCITar, cache/indexsource.go OCITarReader).

For an image that is an index, index.json names the index itself, and the layout holds
the blobs of the platforms `platforms` names (an entry matches on os and architecture, and
on the variant when one is named), by default of every platform the index lists. Entries
that are no platform's image (build attestations, `unknown/unknown`) are left out. A
single-platform image is laid out as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

from msgspec import Struct

from osbuilder.assemble.images import ImageSource
from osbuilder.oci import mediatypes
from osbuilder.oci.model import Descriptor, Platform, is_index
from osbuilder.oci.platform import TargetPlatform
from osbuilder.oci.pull import Image
from osbuilder.spec.source import DataPath, SpecValueError, at

_ATTESTATION = ("vnd.docker.reference.type", "attestation-manifest")


class VolumeLayout(Struct, frozen=True):
    top: Descriptor  # what index.json names: the image's index, or its manifest
    blobs: list[Descriptor]  # every blob of the layout, each once


def oci_volume_layout(
    image: Image, platforms: Sequence[str] | None, images: ImageSource, path: DataPath
) -> VolumeLayout:
    """The layout of the volume at `path` in the spec (for errors), holding `image`."""
    if not is_index(image.descriptor.media_type):
        config = image.config
        own = Platform(config.architecture, config.os, config.variant)
        for number, wanted in enumerate(platforms or ()):
            if not _matches(wanted, own):
                raise SpecValueError(
                    (*path, "platforms", number),
                    f"{image.reference.familiar()} is a single {own} image, not an index "
                    f"with {wanted}",
                )
        return VolumeLayout(image.manifest_descriptor, _image_blobs(image))

    entries = [
        entry
        for entry in images.store.index(image.descriptor.digest).manifests
        if entry.media_type in mediatypes.MANIFESTS
        and entry.platform is not None
        and entry.platform.os != "unknown"
        and _ATTESTATION not in (entry.annotations or {}).items()
    ]
    chosen = entries
    if platforms is not None:
        chosen = []
        for number, wanted in enumerate(platforms):
            found = [e for e in entries if e.platform is not None and _matches(wanted, e.platform)]
            if not found:
                listed = ", ".join(str(e.platform) for e in entries)
                raise SpecValueError(
                    (*path, "platforms", number),
                    f"{image.reference.familiar()} has no image for {wanted} (it has {listed})",
                )
            chosen += found
    blobs = [image.descriptor]
    for entry in chosen:
        blobs += _image_blobs(_platform_image(image, entry, images, path))
    unique = {blob.digest: blob for blob in blobs}  # platforms share layers
    return VolumeLayout(image.descriptor, list(unique.values()))


def _matches(wanted: str, platform: Platform) -> bool:
    """LinuxKit's rule: the os and the architecture, and the variant if one is named."""
    os, architecture, *variant = wanted.split("/")
    return (
        os == platform.os
        and architecture == platform.architecture
        and (not variant or variant[0] == platform.variant)
    )


def _platform_image(image: Image, entry: Descriptor, images: ImageSource, path: DataPath) -> Image:
    if entry.digest == image.manifest_descriptor.digest:
        return image
    assert entry.platform is not None
    platform = entry.platform
    target = TargetPlatform(platform.architecture, platform.os, platform.variant)
    with at((*path, "image"), f"{platform}: "):
        return images.for_platform(image, target)


def _image_blobs(image: Image) -> list[Descriptor]:
    return [image.manifest_descriptor, image.manifest.config, *image.manifest.layers]
