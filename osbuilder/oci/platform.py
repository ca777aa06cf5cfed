"""Target platforms, and choosing an image for one from an index."""

from __future__ import annotations

import platform as host_platform

from msgspec import Struct

from osbuilder.errors import UserError
from osbuilder.oci.model import Descriptor, Index, Platform

# Names people type for the architectures, to the names OCI uses.
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm"}
SUPPORTED_ARCHES = ("amd64", "arm64")
# The variant an entry without one is taken to have (OCI image-index spec).
_DEFAULT_VARIANT = {"arm64": "v8"}


class TargetPlatform(Struct, frozen=True):
    architecture: str
    os: str = "linux"
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def matches(self, os: str, architecture: str, variant: str | None) -> bool:
        if os != self.os or architecture != self.architecture:
            return False
        wanted = self.variant or _DEFAULT_VARIANT.get(self.architecture)
        return wanted is None or (variant or _DEFAULT_VARIANT.get(architecture)) == wanted

    def index_platform(self) -> Platform:
        """This platform as an index entry names it (arm64 with its usual variant, v8)."""
        variant = self.variant or _DEFAULT_VARIANT.get(self.architecture)
        return Platform(self.architecture, self.os, variant)


def parse_platform(text: str) -> TargetPlatform:
    """`amd64`, `arm64`, `linux/arm64` or `linux/arm64/v8`."""
    parts = text.split("/")
    if len(parts) == 1:
        os, arch, variant = "linux", parts[0], None
    elif len(parts) in (2, 3):
        os, arch = parts[0], parts[1]
        variant = parts[2] if len(parts) == 3 else None
    else:
        raise UserError(f"platform {text!r} must be ARCH, OS/ARCH or OS/ARCH/VARIANT")
    arch = _ARCH_ALIASES.get(arch, arch)
    if arch not in SUPPORTED_ARCHES:
        raise UserError(
            f"architecture {arch!r} is not supported; use one of {', '.join(SUPPORTED_ARCHES)}"
        )
    return TargetPlatform(arch, os, variant)


def host_target() -> TargetPlatform:
    machine = host_platform.machine()
    return TargetPlatform(_ARCH_ALIASES.get(machine, machine))


def select_manifest(index: Index, target: TargetPlatform, name: str) -> Descriptor:
    """The index entry for `target`; a clear error listing what the index has otherwise."""
    for entry in index.manifests:
        p = entry.platform
        if p is not None and target.matches(p.os, p.architecture, p.variant):
            return entry
    available = sorted(
        {
            str(e.platform)
            for e in index.manifests
            if e.platform is not None and e.platform.os != "unknown"
        }
    )
    raise UserError(
        f"{name} has no {target} image"
        + (f" (it has {', '.join(available)})" if available else " (its index lists no platforms)")
    )
