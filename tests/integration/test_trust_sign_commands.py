"""osbuilder signs, the real tools verify: `push --sign-by` and `sign --sign-by` write
simple signatures that `skopeo copy --policy` accepts under `signedBy` (and refuses under
another key); `push --sign-key` and `sign --sign-key` attach cosign signatures that a
fresh osbuilder verifies from the registry under `sigstoreSigned`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.debrepo import SigningKey
from tests.integration.helpers import osbuilder
from tests.integration.images import OciImage, inspect_raw, push
from tests.integration.registry import Registry
from tests.integration.signing import Trust, signed_by, skopeo_verified_copy

pytestmark = pytest.mark.integration

PASSWORD = {"OSBUILDER_KEY_PASSWORD": "correct horse"}


def cosign_key(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    made = osbuilder("key", "generate", str(directory / "cosign"), env=PASSWORD)
    assert made.returncode == 0, made.stderr
    return directory / "cosign"


def skopeo_accepts(
    trust: Trust, key: SigningKey, reference: str, into: Path
) -> subprocess.CompletedProcess[str]:
    policy = trust.policy([signed_by(key)], f"skopeo-{key.fingerprint[-8:]}.json")
    return skopeo_verified_copy(policy, trust.registries_d, reference, into)


def test_push_sign_by_is_accepted_by_skopeo_and_refused_under_another_key(
    registry: Registry,
    small_image: OciImage,
    signer: SigningKey,
    stranger: SigningKey,
    trust: Trust,
    tmp_path: Path,
) -> None:
    source = push(small_image, registry, "src/app", "1")
    accept = trust.policy([{"type": "insecureAcceptAnything"}], "accept.json")
    assert trust.pull(accept, source.reference)[0] == 0
    destination = f"{registry.host}/signed/app:1"
    pushed = osbuilder(
        "push", "--cache", str(trust.store.root), "--registries-d", str(trust.registries_d),
        "--sign-by", signer.fingerprint, source.reference, "--to", destination,
        env={"GNUPGHOME": str(signer.home)},
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    assert "1 simple signature written" in pushed.stdout
    accepted = skopeo_accepts(trust, signer, destination, tmp_path / "accepted")
    assert accepted.returncode == 0, accepted.stderr
    refused = skopeo_accepts(trust, stranger, destination, tmp_path / "refused")
    assert refused.returncode != 0 and "Source image rejected" in refused.stderr
    # the identity signed is the name pushed: the source's name is not signed
    assert skopeo_accepts(trust, signer, source.reference, tmp_path / "source").returncode != 0


def test_sign_by_signs_an_image_already_pushed(
    registry: Registry, small_image: OciImage, signer: SigningKey, trust: Trust, tmp_path: Path
) -> None:
    pushed = push(small_image, registry, "later/app", "1")
    signed = osbuilder(
        "sign", "--cache", str(trust.store.root), "--registries-d", str(trust.registries_d),
        "--sign-by", signer.fingerprint, pushed.reference,
        env={"GNUPGHOME": str(signer.home)},
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    assert signed.stdout.startswith(f"{pushed.reference}@{pushed.digest} (")
    accepted = skopeo_accepts(trust, signer, pushed.reference, tmp_path / "copy")
    assert accepted.returncode == 0, accepted.stderr
    # and osbuilder itself, from a fresh store
    fresh = Trust(tmp_path / "fresh")
    (fresh.registries_d / "default.yaml").write_text(
        (trust.registries_d / "default.yaml").read_text()
    )
    code, output = fresh.pull(fresh.policy([signed_by(signer)]), pushed.reference)
    assert code == 0, output


def test_push_sign_key_attaches_a_cosign_signature_osbuilder_verifies(
    registry: Registry, small_image: OciImage, trust: Trust, tmp_path: Path
) -> None:
    key = cosign_key(tmp_path)
    source = push(small_image, registry, "src/cosign", "1")
    accept = trust.policy([{"type": "insecureAcceptAnything"}], "accept.json")
    assert trust.pull(accept, source.reference)[0] == 0
    destination = f"{registry.host}/signed/cosign:1"
    command = ("push", "--cache", str(trust.store.root), "--sign-key", f"{key}.key")
    pushed = osbuilder(*command, source.reference, "--to", destination, env=PASSWORD)
    assert pushed.returncode == 0, pushed.stderr
    assert "1 sigstore signature pushed" in pushed.stdout
    tag = f"signed/cosign:sha256-{source.digest[7:]}.sig"
    layers = json.loads(inspect_raw(registry, tag))["layers"]
    assert len(layers) == 1
    # pushed again: the same key's signature is not added twice
    again = osbuilder(*command, source.reference, "--to", destination, env=PASSWORD)
    assert again.returncode == 0, again.stderr
    assert len(json.loads(inspect_raw(registry, tag))["layers"]) == 1
    fresh = Trust(tmp_path / "fresh")
    policy = fresh.policy([{"type": "sigstoreSigned", "keyPath": f"{key}.pub"}])
    code, output = fresh.pull(policy, destination)
    assert code == 0, output
    other = cosign_key(tmp_path / "other")
    policy = fresh.policy([{"type": "sigstoreSigned", "keyPath": f"{other}.pub"}], "o.json")
    code, output = Trust(tmp_path / "fresh2").pull(policy, destination)
    assert code == 1 and "does not verify with the trusted keys" in output


def test_sign_key_appends_to_the_signatures_in_the_registry(
    registry: Registry, small_image: OciImage, trust: Trust, tmp_path: Path
) -> None:
    first, second = cosign_key(tmp_path / "a"), cosign_key(tmp_path / "b")
    pushed = push(small_image, registry, "later/cosign", "1")
    for key in (first, second, first):
        signed = osbuilder(
            "sign", "--cache", str(tmp_path / f"store-{key.parent.name}"),
            "--sign-key", f"{key}.key", pushed.reference, env=PASSWORD,
        )  # fmt: skip
        assert signed.returncode == 0, signed.stderr
    tag = f"later/cosign:sha256-{pushed.digest[7:]}.sig"
    assert len(json.loads(inspect_raw(registry, tag))["layers"]) == 2  # one per key
    for key in (first, second):
        checker = Trust(tmp_path / f"check-{key.parent.name}")
        policy = checker.policy([{"type": "sigstoreSigned", "keyPath": f"{key}.pub"}])
        code, output = checker.pull(policy, pushed.reference)
        assert code == 0, output


def test_sign_without_a_key_or_with_a_wrong_password_is_one_line(
    registry: Registry, small_image: OciImage, tmp_path: Path
) -> None:
    pushed = push(small_image, registry, "later/nokey", "1")
    result = osbuilder("sign", "--cache", str(tmp_path / "s"), pushed.reference)
    assert result.returncode == 1
    assert result.stderr == (
        "osbuilder: name a key to sign with: --sign-key KEY.key or --sign-by FINGERPRINT\n"
    )
    key = cosign_key(tmp_path)
    env = {**os.environ, "OSBUILDER_KEY_PASSWORD": "wrong"}
    result = osbuilder(
        "sign", "--cache", str(tmp_path / "s"), "--sign-key", f"{key}.key", pushed.reference,
        env=env,
    )  # fmt: skip
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "wrong password" in result.stderr
