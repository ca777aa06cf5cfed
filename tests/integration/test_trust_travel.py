"""Signatures travel with images, with real registries and real skopeo: exported and
imported with them (a signed image verifies offline from an archive alone), dropped by
gc with them, and pushed with them (sigstore signatures to the destination repository as
cosign attaches them, simple signatures to the destination's lookaside, where skopeo
verifies them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from osbuilder.oci import mediatypes
from tests.integration.debrepo import SigningKey
from tests.integration.helpers import osbuilder
from tests.integration.images import OciImage, OciIndex, inspect_raw, skopeo
from tests.integration.images import push as skopeo_push
from tests.integration.registry import Registry, running_registry
from tests.integration.signing import (
    CosignKey,
    Trust,
    attach,
    cosign_payload,
    signed_by,
    sigstore_signed,
    skopeo_signed_push,
    skopeo_verified_copy,
    stored_names,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def other_registry(tmp_path: Path) -> Iterator[Registry]:
    workdir = tmp_path / "other-registry"
    workdir.mkdir()
    with running_registry(workdir) as registry:
        yield registry


@dataclass(frozen=True)
class Signed:
    """An image pulled, verified, into `trust.store` with both kinds of signature."""

    reference: str
    registry: Registry
    repository: str
    digest: str
    cosign: CosignKey

    @property
    def sigstore_name(self) -> str:
        return f"{self.registry.host}/{self.repository}:sha256-{self.digest[7:]}.sig"

    @property
    def simple_name(self) -> str:
        return f"{self.registry.host}/{self.repository}:sha256-{self.digest[7:]}.simplesig"

    def requirements(
        self, signer: SigningKey, identity: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        extra = {"signedIdentity": identity} if identity else {}
        return [signed_by(signer, **extra), sigstore_signed(self.cosign, **extra)]


def signed_image(
    registry: Registry, image: OciImage, repository: str, signer: SigningKey, trust: Trust
) -> Signed:
    """`image` signed by skopeo (simple, into trust's lookaside) and by a cosign key
    (attached in the registry), then pulled into trust.store under a policy requiring both."""
    reference = skopeo_signed_push(image, registry, repository, signer, trust.registries_d)
    key = CosignKey(trust.root / "cosign")
    payload = cosign_payload(reference, image.digest)
    attach(registry, repository, image.digest, [(payload, key.sign(payload))])
    signed = Signed(reference, registry, repository, image.digest, key)
    code, output = trust.pull(trust.policy(signed.requirements(signer), "both.json"), reference)
    assert code == 0, output
    assert {signed.sigstore_name, signed.simple_name} <= set(stored_names(trust.store))
    return signed


def lookaside_files(trust: Trust, repository: str, digest: str) -> list[str]:
    directory = trust.lookaside / f"{repository}@{digest.replace(':', '=')}"
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


# --- cache export / import / gc ----------------------------------------------------------


def test_a_signed_image_exported_verifies_offline_from_the_archive_alone(
    small_image: OciImage, signer: SigningKey, trust: Trust, tmp_path: Path
) -> None:
    archive = tmp_path / "signed.tar"
    workdir = tmp_path / "registry"
    workdir.mkdir()
    with running_registry(workdir) as registry:
        signed = signed_image(registry, small_image, "team/travel", signer, trust)
        exported = osbuilder(
            "cache",
            "export",
            "--cache",
            str(trust.store.root),
            signed.reference,
            "-o",
            str(archive),
        )
        assert exported.returncode == 0, exported.stderr
        assert exported.stdout.strip().endswith("blobs, with 2 attachments (signatures)")
    # skopeo still reads the image from it, by its name
    inspected = json.loads(skopeo("inspect", f"oci-archive:{archive}:{signed.reference}").stdout)
    assert inspected["Digest"] == signed.digest
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        index = json.loads(member.read())
    assert [m["annotations"][mediatypes.REF_NAME_ANNOTATION] for m in index["manifests"]] == [
        signed.reference,
        signed.sigstore_name,
        signed.simple_name,
    ]

    # the registry is gone and so is the lookaside: only the archive has the signatures
    shutil.rmtree(trust.lookaside)
    fresh = Trust(tmp_path / "fresh")
    imported = osbuilder("cache", "import", "--cache", str(fresh.store.root), str(archive))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.split() == [signed.reference, signed.sigstore_name, signed.simple_name]
    policy = fresh.policy(signed.requirements(signer))
    code, output = fresh.pull(policy, signed.reference, "--offline")
    assert code == 0, output

    # the same archive with its sigstore signature removed after import: refused
    bare = Trust(tmp_path / "bare")
    osbuilder("cache", "import", "--cache", str(bare.store.root), str(archive), check=True)
    osbuilder("cache", "rm", "--cache", str(bare.store.root), signed.sigstore_name, check=True)
    code, output = bare.pull(
        bare.policy(signed.requirements(signer)), signed.reference, "--offline"
    )
    assert code == 1 and "no sigstore signature found" in output, output


def test_gc_drops_the_signatures_of_a_removed_image(
    registry: Registry, small_image: OciImage, signer: SigningKey, trust: Trust
) -> None:
    signed = signed_image(registry, small_image, "team/gone", signer, trust)
    store = str(trust.store.root)
    kept = osbuilder("cache", "gc", "--cache", store, check=True)
    assert kept.stdout.startswith("removed 0 blobs")
    assert stored_names(trust.store) == [signed.reference, signed.sigstore_name, signed.simple_name]
    # `cache rm` removes the image's name only; gc then removes what was attached to it
    osbuilder("cache", "rm", "--cache", store, signed.reference, check=True)
    assert stored_names(trust.store) == [signed.sigstore_name, signed.simple_name]
    osbuilder("cache", "gc", "--cache", store, check=True)
    assert stored_names(trust.store) == []
    assert list(trust.store.blobs.iterdir()) == []


# --- push ----------------------------------------------------------------------------------


def push(trust: Trust, registries_d: Path, reference: str, destination: str) -> dict[str, Any]:
    result = osbuilder(
        "push",
        "--cache",
        str(trust.store.root),
        "--registries-d",
        str(registries_d),
        "--json",
        reference,
        "--to",
        destination,
    )
    assert result.returncode == 0, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def test_a_pushed_image_takes_its_signatures_along(
    registry: Registry,
    other_registry: Registry,
    small_image: OciImage,
    signer: SigningKey,
    trust: Trust,
    tmp_path: Path,
) -> None:
    signed = signed_image(registry, small_image, "team/signed", signer, trust)
    dest = Trust(tmp_path / "dest")  # its registries.d names its own lookaside
    destination = f"{other_registry.host}/mirror/app:v1"
    result = osbuilder(
        "push",
        "--cache",
        str(trust.store.root),
        "--registries-d",
        str(dest.registries_d),
        signed.reference,
        "--to",
        destination,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(
        "; 1 sigstore signature pushed, 1 simple signature written to "
        f"file://{dest.lookaside}/mirror/app)"
    )
    # the signature manifest, byte for byte, under cosign's tag in the new repository
    tag = f"sha256-{signed.digest[7:]}.sig"
    assert inspect_raw(other_registry, f"mirror/app:{tag}") == inspect_raw(
        registry, f"team/signed:{tag}"
    )
    assert lookaside_files(dest, "mirror/app", signed.digest) == ["signature-1"]

    # pulled from there into a fresh store: the signatures verify; their identity is the
    # source's, which a policy for the destination accepts when it says so
    identity = {"type": "exactRepository", "dockerRepository": f"{registry.host}/team/signed"}
    code, output = dest.pull(dest.policy(signed.requirements(signer, identity)), destination)
    assert code == 0, output
    code, output = dest.pull(dest.policy([signed_by(signer)], "exact.json"), destination)
    assert code == 1 and f"the signature is for {signed.reference}" in output, output

    # pushed again: nothing written twice
    again = push(trust, dest.registries_d, signed.reference, destination)
    assert again["signatures"] == {
        "sigstore": 1,
        "simpleWritten": 0,
        "simplePresent": 1,
        "lookaside": f"file://{dest.lookaside}/mirror/app",
    }
    assert lookaside_files(dest, "mirror/app", signed.digest) == ["signature-1"]


def test_skopeo_verifies_the_signatures_osbuilder_pushed(
    registry: Registry,
    other_registry: Registry,
    small_image: OciImage,
    signer: SigningKey,
    stranger: SigningKey,
    trust: Trust,
    tmp_path: Path,
) -> None:
    signed = signed_image(registry, small_image, "team/skopeo", signer, trust)
    dest = Trust(tmp_path / "dest")
    # someone else's signature of the same image is there already: ours comes after it
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(small_image.manifest)
    theirs = dest.lookaside / "mirror" / f"app@{signed.digest.replace(':', '=')}" / "signature-1"
    theirs.parent.mkdir(parents=True)
    sign: list[str | Path] = [
        "standalone-sign",
        manifest,
        signed.reference,
        stranger.fingerprint,
        "-o",
        theirs,
    ]
    subprocess.run(
        ["skopeo", *sign],
        env={**os.environ, "GNUPGHOME": str(stranger.home)},
        check=True,
        capture_output=True,
    )
    destination = f"{other_registry.host}/mirror/app:v1"
    summary = push(trust, dest.registries_d, signed.reference, destination)
    assert summary["signatures"]["simpleWritten"] == 1
    assert lookaside_files(dest, "mirror/app", signed.digest) == ["signature-1", "signature-2"]

    # (Debian's skopeo is built without sigstore: it judges the simple signatures only)
    identity = {"type": "exactRepository", "dockerRepository": f"{registry.host}/team/skopeo"}

    def skopeo_copy(key: SigningKey, name: str) -> subprocess.CompletedProcess[str]:
        policy = dest.policy([signed_by(key, signedIdentity=identity)], name)
        copies = tmp_path / "copies"
        copies.mkdir(exist_ok=True)
        return skopeo_verified_copy(policy, dest.registries_d, destination, copies / name)

    accepted = skopeo_copy(signer, "signer")
    assert accepted.returncode == 0, accepted.stderr
    outsider = SigningKey.generate(tmp_path / "outsider", "nobody trusted")
    try:
        refused = skopeo_copy(outsider, "outsider")
    finally:
        outsider.close()
    assert refused.returncode != 0
    assert "None of the signatures were accepted" in refused.stderr, refused.stderr
    assert refused.stderr.count("Invalid GPG signature") == 2  # it read both, 1 and 2


def test_the_signature_of_a_platform_manifest_goes_with_its_index(
    registry: Registry,
    other_registry: Registry,
    multiarch_image: OciIndex,
    trust: Trust,
    tmp_path: Path,
) -> None:
    pushed = skopeo_push(multiarch_image, registry, "cosign/multi", "1")
    amd64 = multiarch_image.images[0].digest
    key = CosignKey(trust.root / "cosign")
    payload = cosign_payload(f"{registry.host}/cosign/multi", amd64)
    attach(registry, "cosign/multi", amd64, [(payload, key.sign(payload))])
    identity = {"type": "exactRepository", "dockerRepository": f"{registry.host}/cosign/multi"}
    policy = trust.policy([sigstore_signed(key, signedIdentity=identity)])
    code, output = trust.pull(policy, pushed.reference)
    assert code == 0, output
    # (an index is pushed whole: the unsigned arm64 image too, under no policy)
    anything = trust.policy([{"type": "insecureAcceptAnything"}], "anything.json")
    code, output = trust.pull(anything, pushed.reference, "--arch", "arm64")
    assert code == 0, output
    dest = Trust(tmp_path / "dest")
    destination = f"{other_registry.host}/mirror/multi:1"
    summary = push(trust, dest.registries_d, pushed.reference, destination)
    assert summary["digest"] == pushed.digest
    assert summary["signatures"]["sigstore"] == 1
    assert inspect_raw(other_registry, f"mirror/multi:sha256-{amd64[7:]}.sig")
    code, output = dest.pull(
        dest.policy([sigstore_signed(key, signedIdentity=identity)]), destination
    )
    assert code == 0, output


def test_an_http_lookaside_is_refused_before_anything_is_pushed(
    registry: Registry,
    other_registry: Registry,
    small_image: OciImage,
    signer: SigningKey,
    trust: Trust,
    tmp_path: Path,
) -> None:
    signed = signed_image(registry, small_image, "team/http", signer, trust)
    registries_d = tmp_path / "http.d"
    registries_d.mkdir()
    (registries_d / "default.yaml").write_text(
        "default-docker:\n  lookaside: https://signatures.example\n"
    )
    destination = f"{other_registry.host}/mirror/app:v1"
    result = osbuilder(
        "push",
        "--cache",
        str(trust.store.root),
        "--registries-d",
        str(registries_d),
        signed.reference,
        "--to",
        destination,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "cannot write the simple signatures" in result.stderr
    assert "https://signatures.example/mirror/app" in result.stderr
    assert not list(other_registry.root.rglob("_manifests"))  # nothing pushed


def test_a_signature_pulled_from_a_registry_now_gone_still_travels(
    other_registry: Registry,
    small_image: OciImage,
    signer: SigningKey,
    trust: Trust,
    tmp_path: Path,
) -> None:
    """A sigstore signature fetched on pull is kept whole (its manifest's config too), so
    the image and its signature push elsewhere with the source registry gone."""
    workdir = tmp_path / "gone-registry"
    workdir.mkdir()
    with running_registry(workdir) as registry:
        signed = signed_image(registry, small_image, "team/gone", signer, trust)
    dest = Trust(tmp_path / "dest")
    result = osbuilder(
        "push",
        "--retries",
        "0",
        "--cache",
        str(trust.store.root),
        "--registries-d",
        str(dest.registries_d),
        signed.reference,
        "--to",
        f"{other_registry.host}/mirror/app:v1",
    )
    assert result.returncode == 0, result.stderr
    assert "1 sigstore signature pushed" in result.stdout
    tag = f"mirror/app:sha256-{signed.digest[7:]}.sig"
    assert json.loads(inspect_raw(other_registry, tag))["layers"]
