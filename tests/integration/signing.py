"""Signing test images as their publishers do: skopeo `copy --sign-by` into a lookaside,
and cosign-style sigstore signatures attached to a registry as the tag `sha256-HEX.sig`
(cosign is not packaged for Debian: its manifest is written here by hand, in the shape
cosign writes, through the registry's own upload API)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from osbuilder.oci.store import ContentStore
from tests.integration.debrepo import SigningKey
from tests.integration.helpers import osbuilder
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


class Trust:
    """A registries.d with a file:// lookaside, and policies written on demand."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lookaside = root / "lookaside"
        self.registries_d = root / "registries.d"
        self.registries_d.mkdir(parents=True)
        (self.registries_d / "default.yaml").write_text(
            f"default-docker:\n  lookaside: file://{self.lookaside}\n"
        )
        self.store = ContentStore(root / "store")

    def policy(self, requirements: list[dict[str, Any]], name: str = "policy.json") -> Path:
        path = self.root / name
        document = {"default": [{"type": "reject"}], "transports": {"docker": {"": requirements}}}
        path.write_text(json.dumps(document))
        return path

    def pull(self, policy: Path, reference: str, *extra: str) -> tuple[int, str]:
        result = osbuilder(
            "pull",
            "--cache",
            str(self.store.root),
            "--policy",
            str(policy),
            "--registries-d",
            str(self.registries_d),
            "--arch",
            "amd64",
            *extra,
            reference,
        )
        return result.returncode, result.stdout + result.stderr


def signed_by(key: SigningKey, **extra: Any) -> dict[str, Any]:
    return {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(key.keyring), **extra}


def signatures_in(trust: Trust, repository: str, digest: str) -> list[Path]:
    found = sorted(trust.lookaside.rglob(f"*@{digest.replace(':', '=')}/signature-*"))
    return [p for p in found if repository in str(p)]


def stored_names(store: ContentStore) -> list[str]:
    return [ref.name for ref in store.references()]


def sigstore_signed(key: CosignKey, **extra: Any) -> dict[str, Any]:
    return {"type": "sigstoreSigned", "keyPath": str(key.public), **extra}


def skopeo_verified_copy(
    policy: Path, registries_d: Path, reference: str, into: Path
) -> subprocess.CompletedProcess[str]:
    """`skopeo copy` of `reference` (plain HTTP) into `dir:INTO` under `policy`: skopeo's
    own verdict on the signatures registries_d leads it to."""
    return subprocess.run(
        [
            "skopeo", "copy", "--policy", str(policy), "--registries.d", str(registries_d),
            "--src-tls-verify=false", f"docker://{reference}", f"dir:{into}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
