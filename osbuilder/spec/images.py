"""Where a spec names images: every reference, with the path of the value that names it."""

from __future__ import annotations

from osbuilder.spec.model import Spec
from osbuilder.spec.source import DataPath


def image_references(spec: Spec) -> list[tuple[str, DataPath]]:
    """Each image reference of `spec` and where it is (e.g. `("services", 1, "image")`), in
    the order a build takes them: kernel, init, volumes, onboot, onshutdown, services."""
    references: list[tuple[str, DataPath]] = []
    if spec.kernel and spec.kernel.image:
        references.append((spec.kernel.image, ("kernel", "image")))
    references += [(image, ("init", index)) for index, image in enumerate(spec.init or [])]
    references += [
        (volume.image, ("volumes", index, "image"))
        for index, volume in enumerate(spec.volumes or [])
        if volume.image
    ]
    references += [
        (container.image, (section, index, "image"))
        for section, index, container in spec.containers()
    ]
    return references
