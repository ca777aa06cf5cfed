"""Build small OCI image layouts in Python and push them with real skopeo.

Layers are deterministic gzip'd tars (fixed mtimes and owners), so the same content always
gives the same digests. Pushes use `--preserve-digests`: skopeo fails rather than convert
a manifest, so the digests computed here are the ones the registry serves, and `push()`
double-checks that by reading the manifest back.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tests.integration.registry import Registry

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
FIXED_MTIME = 1_700_000_000  # any constant: reproducible tars
SKOPEO_TIMEOUT = 600

LayerFiles = Mapping[str, bytes]  # path inside the layer -> file content


@dataclass(frozen=True)
class Platform:
    architecture: str = "amd64"
    os: str = "linux"
    variant: str | None = None

    def as_dict(self) -> dict[str, str]:
        platform = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            platform["variant"] = self.variant
        return platform


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Layer:
    descriptor: Descriptor  # the gzip'd blob
    diff_id: str  # sha256 of the uncompressed tar, as listed in the config


@dataclass(frozen=True)
class OciImage:
    """One image manifest (with config and layers) stored in an OCI layout."""

    layout: Path
    tag: str
    platform: Platform
    manifest: bytes
    descriptor: Descriptor  # of the manifest
    config: bytes
    layers: tuple[Layer, ...]

    @property
    def digest(self) -> str:
        return self.descriptor.digest


@dataclass(frozen=True)
class OciIndex:
    """An image index over several platform images, stored in an OCI layout."""

    layout: Path
    tag: str
    index: bytes
    descriptor: Descriptor  # of the index
    images: tuple[OciImage, ...]

    @property
    def digest(self) -> str:
        return self.descriptor.digest


@dataclass(frozen=True)
class PushedImage:
    reference: str  # "HOST/REPO:TAG"
    digest: str  # sha256 of the manifest (or index) bytes the registry serves
    raw: bytes  # those bytes


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def random_layers(count: int, total_size: int, seed: int = 0) -> list[dict[str, bytes]]:
    """`count` layers holding `total_size` random (incompressible) bytes between them."""
    rng = random.Random(seed)
    sizes = [total_size // count + (1 if i < total_size % count else 0) for i in range(count)]
    return [{f"data/blob-{i}.bin": rng.randbytes(size)} for i, size in enumerate(sizes)]


class LayoutWriter:
    """Writes content-addressed blobs and the top-level files of an OCI image layout."""

    def __init__(self, root: Path) -> None:
        if ":" in str(root):
            raise ValueError(f"skopeo's oci: transport cannot take a path with ':': {root}")
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def add_blob(self, data: bytes, media_type: str) -> Descriptor:
        digest = sha256_digest(data)
        (self.blobs / digest.removeprefix("sha256:")).write_bytes(data)
        return Descriptor(media_type, digest, len(data))

    def add_layer(self, files: LayerFiles) -> Layer:
        tar = layer_tar(files)
        blob = gzip.compress(tar, compresslevel=1, mtime=0)  # level 1: random data won't shrink
        return Layer(self.add_blob(blob, OCI_LAYER_GZIP), sha256_digest(tar))

    def add_image(
        self, layers: Sequence[LayerFiles], platform: Platform, tag: str
    ) -> tuple[OciImage, dict[str, Any]]:
        """Store the blobs of one image; returns it and its descriptor for an index."""
        written = tuple(self.add_layer(files) for files in layers)
        config = canonical_json(
            {
                "architecture": platform.architecture,
                "os": platform.os,
                **({"variant": platform.variant} if platform.variant else {}),
                "config": {"Cmd": ["/bin/sh"]},
                "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in written]},
                "history": [{"created_by": "osbuilder tests"} for _ in written],
            }
        )
        manifest = canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": self.add_blob(config, OCI_CONFIG).as_dict(),
                "layers": [layer.descriptor.as_dict() for layer in written],
            }
        )
        descriptor = self.add_blob(manifest, OCI_MANIFEST)
        image = OciImage(self.root, tag, platform, manifest, descriptor, config, written)
        return image, {**descriptor.as_dict(), "platform": platform.as_dict()}

    def write_index_json(self, descriptor: Descriptor, tag: str) -> None:
        """Point the layout's index.json at one manifest or index under `tag`."""
        entry = {**descriptor.as_dict(), "annotations": {REF_NAME: tag}}
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}
        (self.root / "index.json").write_bytes(canonical_json(index))


def layer_tar(files: LayerFiles) -> bytes:
    """An uncompressed, reproducible tar of `files`, with entries for parent directories."""
    paths = {PurePosixPath(path.lstrip("/")) for path in files}
    directories = {parent for path in paths for parent in path.parents if parent.name}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in sorted(directories):
            tar.addfile(_tarinfo(str(directory), tarfile.DIRTYPE, 0o755))
        for path, content in sorted(files.items()):
            info = _tarinfo(path.lstrip("/"), tarfile.REGTYPE, 0o644)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _tarinfo(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def build_image(
    layout: Path,
    layers: Sequence[LayerFiles],
    *,
    tag: str = "latest",
    platform: Platform = Platform(),
) -> OciImage:
    """An OCI layout at `layout` holding one image with the given layers, tagged `tag`."""
    writer = LayoutWriter(layout)
    image, _ = writer.add_image(layers, platform, tag)
    writer.write_index_json(image.descriptor, tag)
    return image


MULTIARCH_PLATFORMS = (Platform("amd64"), Platform("arm64", variant="v8"))


def build_index(
    layout: Path,
    *,
    tag: str = "latest",
    platforms: Sequence[Platform] = MULTIARCH_PLATFORMS,
) -> OciIndex:
    """An OCI layout holding an image index with one small image per platform."""
    writer = LayoutWriter(layout)
    images, entries = [], []
    for platform in platforms:
        arch = "/".join(filter(None, (platform.os, platform.architecture, platform.variant)))
        image, entry = writer.add_image([{"etc/platform": arch.encode() + b"\n"}], platform, tag)
        images.append(image)
        entries.append(entry)
    index = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    descriptor = writer.add_blob(index, OCI_INDEX)
    writer.write_index_json(descriptor, tag)
    return OciIndex(layout, tag, index, descriptor, tuple(images))


def skopeo(
    *args: str, timeout: float = SKOPEO_TIMEOUT, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run skopeo without the host's trust policy; raises CalledProcessError with its stderr."""
    result = subprocess.run(
        ["skopeo", "--insecure-policy", *args],
        capture_output=True,
        timeout=timeout,
        check=False,
        env=env,
    )
    if result.returncode != 0:
        raise subprocess.CalledProcessError(
            result.returncode, result.args, result.stdout, result.stderr
        )
    return result


def _creds_args(prefix: str, creds: str | None) -> list[str]:
    # --*-no-creds keeps stored logins (auth.json, ~/.docker) out of the test.
    return [f"--{prefix}-creds", creds] if creds else [f"--{prefix}-no-creds"]


def inspect_raw(registry: Registry | str, reference: str, creds: str | None = None) -> bytes:
    """The manifest bytes the registry serves for `REPO:TAG` or `REPO@DIGEST`."""
    host = registry.host if isinstance(registry, Registry) else registry
    if creds is None and isinstance(registry, Registry):
        creds = registry.creds
    args = ["--creds", creds] if creds else ["--no-creds"]
    return skopeo(
        "inspect", "--raw", "--tls-verify=false", *args, f"docker://{host}/{reference}"
    ).stdout


def push(
    image: OciImage | OciIndex,
    registry: Registry | str,
    repository: str,
    tag: str | None = None,
    *,
    creds: str | None = None,
) -> PushedImage:
    """`skopeo copy` the layout to HOST/REPOSITORY:TAG (all platforms of an index).

    `registry` is a Registry (its credentials are used unless `creds` is given) or a
    "HOST:PORT" string, e.g. a fault proxy's. Returns the digest the registry serves.
    """
    host = registry.host if isinstance(registry, Registry) else registry
    if creds is None and isinstance(registry, Registry):
        creds = registry.creds
    reference = f"{host}/{repository}:{tag or image.tag}"
    skopeo(
        "copy",
        "--quiet",
        "--preserve-digests",
        "--dest-tls-verify=false",
        *_creds_args("dest", creds),
        *(["--all"] if isinstance(image, OciIndex) else []),
        f"oci:{image.layout}:{image.tag}",
        f"docker://{reference}",
    )
    raw = inspect_raw(host, f"{repository}:{tag or image.tag}", creds)
    digest = sha256_digest(raw)
    if digest != image.digest:
        raise AssertionError(f"registry serves {digest} for {reference}, built {image.digest}")
    return PushedImage(reference, digest, raw)
