"""The signature policy applied on every pull, with a real registry and real skopeo.

skopeo signs (`copy --sign-by`, into the lookaside registries.d names) and osbuilder
verifies under containers-policy.json; sigstore signatures are attached as cosign
attaches them (the tag `sha256-HEX.sig`) and read back from the registry. Each way a
signature can fail is refused with one line naming the image and what was wrong, and
nothing is named in the store.
"""

from __future__ import annotations

import shutil

import pytest

from osbuilder.trust.simplesign import MAX_SIGNATURE_SIZE
from tests.integration.debrepo import SigningKey
from tests.integration.images import OciImage, OciIndex, push
from tests.integration.registry import Registry
from tests.integration.signing import (
    CosignKey,
    Trust,
    attach,
    cosign_payload,
    signatures_in,
    signed_by,
    sigstore_signed,
    skopeo_signed_push,
    stored_names,
)

pytestmark = pytest.mark.integration


# --- simple signing: skopeo signs, osbuilder verifies -------------------------------------------


def test_an_image_skopeo_signed_pulls_under_a_signedby_policy(
    registry: Registry, small_image: OciImage, signer: SigningKey, trust: Trust
) -> None:
    reference = skopeo_signed_push(small_image, registry, "team/signed", signer, trust.registries_d)
    assert signatures_in(trust, "team/signed", small_image.digest)
    code, output = trust.pull(trust.policy([signed_by(signer)]), reference)
    assert code == 0, output
    assert reference in stored_names(trust.store)
    # the signature travels with the image: in the store, as an artifact named after it
    assert f"{registry.host}/team/signed:sha256-{small_image.digest[7:]}.simplesig" in (
        stored_names(trust.store)
    )
    # and the verdict is recorded: with the lookaside gone, offline, it still pulls
    shutil.rmtree(trust.lookaside)
    code, output = trust.pull(trust.policy([signed_by(signer)]), reference, "--offline")
    assert code == 0, output


def test_a_signature_by_another_key_is_refused(
    registry: Registry,
    small_image: OciImage,
    signer: SigningKey,
    stranger: SigningKey,
    trust: Trust,
) -> None:
    reference = skopeo_signed_push(
        small_image, registry, "team/other", stranger, trust.registries_d
    )
    code, output = trust.pull(trust.policy([signed_by(signer)]), reference)
    assert code == 1
    assert output.count("\n") == 1, output
    assert f"{registry.host}/team/other:" in output
    assert f"by key {stranger.fingerprint[-16:]}" in output or stranger.fingerprint in output
    assert str(signer.keyring) in output
    assert reference not in stored_names(trust.store)


def test_an_unsigned_image_is_refused_and_not_named(
    registry: Registry, small_image: OciImage, signer: SigningKey, trust: Trust
) -> None:
    pushed = push(small_image, registry, "team/unsigned", "1")
    code, output = trust.pull(trust.policy([signed_by(signer)]), pushed.reference)
    assert code == 1
    assert "no simple (OpenPGP) signature found" in output
    assert str(trust.lookaside) in output
    assert pushed.reference not in stored_names(trust.store)
    # nothing of its layers was downloaded either: refused before them
    assert not any(trust.store.has_blob(layer.descriptor.digest) for layer in small_image.layers)


def test_a_signature_of_another_image_is_refused(
    registry: Registry,
    small_image: OciImage,
    multiarch_image: OciIndex,
    signer: SigningKey,
    trust: Trust,
) -> None:
    skopeo_signed_push(small_image, registry, "team/a", signer, trust.registries_d)
    other = push(multiarch_image, registry, "team/a", "other")
    # the signature of the first image, put where the second one's would be
    source = signatures_in(trust, "team/a", small_image.digest)[0]
    target = source.parent.parent / f"a@{other.digest.replace(':', '=')}" / "signature-1"
    target.parent.mkdir(parents=True)
    shutil.copy(source, target)
    code, output = trust.pull(trust.policy([signed_by(signer)]), other.reference)
    assert code == 1, output
    assert small_image.digest in output and other.digest in output


def test_an_identity_the_policy_does_not_accept_is_refused(
    registry: Registry, small_image: OciImage, signer: SigningKey, trust: Trust
) -> None:
    reference = skopeo_signed_push(small_image, registry, "team/id", signer, trust.registries_d)
    identity = {"type": "exactReference", "dockerReference": f"{registry.host}/team/id:2"}
    code, output = trust.pull(trust.policy([signed_by(signer, signedIdentity=identity)]), reference)
    assert code == 1
    assert f"the signature is for {reference}" in output and "exactReference" in output
    # matchRepository accepts the same signature
    identity = {"type": "matchRepository"}
    policy = trust.policy([signed_by(signer, signedIdentity=identity)], "repository.json")
    code, output = trust.pull(policy, reference)
    assert code == 0, output


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"not a signature", "expected a binary OpenPGP signed message"),
        (b"\x90" * (MAX_SIGNATURE_SIZE + 1), "expected a signature of at most"),
    ],
)
def test_a_malformed_or_oversized_signature_is_refused(
    registry: Registry,
    small_image: OciImage,
    signer: SigningKey,
    trust: Trust,
    content: bytes,
    expected: str,
) -> None:
    pushed = push(small_image, registry, "team/bad", "1")
    path = trust.lookaside / "team" / f"bad@{pushed.digest.replace(':', '=')}" / "signature-1"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    code, output = trust.pull(trust.policy([signed_by(signer)]), pushed.reference)
    assert code == 1
    assert expected in output and "Traceback" not in output


def test_a_stricter_policy_checks_a_recorded_image_again(
    registry: Registry,
    small_image: OciImage,
    signer: SigningKey,
    stranger: SigningKey,
    trust: Trust,
) -> None:
    reference = skopeo_signed_push(small_image, registry, "team/again", signer, trust.registries_d)
    code, output = trust.pull(trust.policy([{"type": "insecureAcceptAnything"}]), reference)
    assert code == 0, output
    code, output = trust.pull(trust.policy([signed_by(signer)], "signer.json"), reference)
    assert code == 0, output
    # recorded under the signer's key; a policy naming another key checks again and refuses
    code, output = trust.pull(trust.policy([signed_by(stranger)], "stranger.json"), reference)
    assert code == 1 and "not among the trusted keys" in output


def test_a_reject_scope_refuses_the_image(
    registry: Registry, small_image: OciImage, trust: Trust
) -> None:
    pushed = push(small_image, registry, "team/rejected", "1")
    code, output = trust.pull(trust.policy([{"type": "reject"}]), pushed.reference)
    assert code == 1 and "rejects this image" in output


# --- sigstore: signatures attached as cosign attaches them -----------------------------------


def test_a_cosign_attached_signature_verifies_from_the_registry(
    registry: Registry, small_image: OciImage, trust: Trust
) -> None:
    key = CosignKey(trust.root / "keys")
    pushed = push(small_image, registry, "cosign/app", "1")
    repository = "cosign/app"
    attach(
        registry,
        repository,
        pushed.digest,
        [(p := cosign_payload(pushed.reference, pushed.digest), key.sign(p))],
    )
    code, output = trust.pull(trust.policy([sigstore_signed(key)]), pushed.reference)
    assert code == 0, output
    names = stored_names(trust.store)
    assert f"{registry.host}/cosign/app:sha256-{pushed.digest[7:]}.sig" in names
    # another key: refused
    other = CosignKey(trust.root / "other")
    code, output = trust.pull(
        trust.policy([sigstore_signed(other)], "other.json"), pushed.reference
    )
    assert code == 1 and "does not verify with the trusted keys" in output


def test_a_multi_platform_image_is_covered_by_its_index_signature_or_its_platform_signature(
    registry: Registry, multiarch_image: OciIndex, trust: Trust
) -> None:
    key = CosignKey(trust.root / "keys")
    pushed = push(multiarch_image, registry, "cosign/multi", "1")
    amd64 = multiarch_image.images[0].digest
    policy = trust.policy([sigstore_signed(key, signedIdentity={"type": "matchRepository"})])
    # the amd64 manifest alone signed, as `cosign sign --recursive` signs each one
    payload = cosign_payload(f"{registry.host}/cosign/multi", amd64)
    attach(registry, "cosign/multi", amd64, [(payload, key.sign(payload))])
    code, output = trust.pull(policy, pushed.reference)
    assert code == 0, output
    # arm64 is not signed and not covered by the amd64 signature
    code, output = trust.pull(policy, pushed.reference, "--arch", "arm64")
    assert code == 1 and "no sigstore signature found" in output


def test_a_sigstore_signature_for_another_digest_is_refused(
    registry: Registry, small_image: OciImage, multiarch_image: OciIndex, trust: Trust
) -> None:
    key = CosignKey(trust.root / "keys")
    pushed = push(small_image, registry, "cosign/swap", "1")
    other = push(multiarch_image, registry, "cosign/swap", "2")
    payload = cosign_payload(pushed.reference, pushed.digest)
    attach(registry, "cosign/swap", other.digest, [(payload, key.sign(payload))])
    code, output = trust.pull(trust.policy([sigstore_signed(key)]), other.reference)
    assert code == 1 and pushed.digest in output
    assert other.reference not in stored_names(trust.store)
