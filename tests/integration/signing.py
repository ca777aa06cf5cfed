"""Signing test images as their publishers do: skopeo `copy --sign-by` into a lookaside,
and cosign-style sigstore signatures attached to a registry as the tag `sha256-HEX.sig`
(cosign is not packaged for Debian: its manifest is written here by hand, in the shape
cosign writes, through the registry's own upload API)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.integration.debrepo import SigningKey
from tests.integration.images import OciImage, OciIndex, skopeo
from tests.integration.registry import Registry


def skopeo_signed_push(
    image: OciImage | OciIndex,
    registry: Registry,
    repository: str,
    key: SigningKey,
    registries_d: Path,
) -> str:
    """`skopeo copy --sign-by` the image to the registry; its signature goes to the lookaside."""
    reference = f"{registry.host}/{repository}:{image.tag}"
    env = {**os.environ, "GNUPGHOME": str(key.home)}
    skopeo(
        "copy",
        "--quiet",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--registries.d",
        str(registries_d),
        "--sign-by",
        key.fingerprint,
        *(["--all"] if isinstance(image, OciIndex) else []),
        f"oci:{image.layout}:{image.tag}",
        f"docker://{reference}",
        env=env,
    )
    return reference


class CosignKey:
    def __init__(self, root: Path) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.public = root / "cosign.pub"
        root.mkdir(parents=True, exist_ok=True)
        self.public.write_bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def sign(self, payload: bytes) -> str:
        return base64.b64encode(self.private.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()


def cosign_payload(reference: str, digest: str) -> bytes:
    return json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": reference},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    ).encode()


def attach(
    registry: Registry, repository: str, digest: str, layers: list[tuple[bytes, str]]
) -> None:
    """PUT a signature manifest as cosign does, with the registry's own upload API."""
    base = f"{registry.url}/v2/{repository}"
    with httpx.Client() as http:

        def upload(data: bytes) -> dict[str, Any]:
            blob = "sha256:" + hashlib.sha256(data).hexdigest()
            started = http.post(f"{base}/blobs/uploads/")
            location = started.headers["location"]
            location = location if location.startswith("http") else registry.url + location
            separator = "&" if "?" in location else "?"
            http.put(f"{location}{separator}digest={blob}", content=data).raise_for_status()
            return {"digest": blob, "size": len(data)}

        config = upload(b'{"architecture":"","os":"","config":{},"rootfs":{"type":"layers"}}')
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
            "layers": [
                {
                    "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                    **upload(payload),
                    "annotations": {"dev.cosignproject.cosign/signature": signature},
                }
                for payload, signature in layers
            ],
        }
        tag = digest.replace(":", "-") + ".sig"
        http.put(
            f"{base}/manifests/{tag}",
            content=json.dumps(manifest).encode(),
            headers={"content-type": "application/vnd.oci.image.manifest.v1+json"},
        ).raise_for_status()
