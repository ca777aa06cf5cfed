"""Simple signing with real gpg: what osbuilder signs, osbuilder's verifier (gpgv) and
real skopeo (`standalone-verify`, containers/image's verifier) accept."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from osbuilder.errors import UserError
from osbuilder.trust.payload import SIMPLE_SIGNING_TYPE, InvalidSignature, parse_payload
from osbuilder.trust.sign import payload_bytes, sign_simple
from osbuilder.trust.simplesign import load_keyring_file, verify_simple
from tests.integration.debrepo import SigningKey

pytestmark = pytest.mark.integration

REFERENCE = "registry.example/osbuilder/redis:7"


def digest_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_simple_signature_verifies_with_gpgv_and_with_skopeo(
    signer: SigningKey, manifest: Path, tmp_path: Path
) -> None:
    digest = digest_of(manifest)
    payload = payload_bytes(REFERENCE, digest, SIMPLE_SIGNING_TYPE)
    signature = sign_simple(payload, signer.fingerprint, gnupg_home=signer.home)

    verified = verify_simple(signature, [load_keyring_file(signer.keyring)], digest)
    assert verified.payload == parse_payload(payload)
    assert verified.fingerprint == signer.fingerprint

    (tmp_path / "signature-1").write_bytes(signature)
    result = subprocess.run(
        ["skopeo", "standalone-verify", manifest, REFERENCE, signer.fingerprint,
         tmp_path / "signature-1"],
        env={**os.environ, "GNUPGHOME": str(signer.home)},
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # (skopeo 1.9's words; later ones name the fingerprint too)
    assert result.stdout.startswith("Signature verified")
    assert result.stdout.endswith(f"digest {digest}\n")


def test_skopeo_refuses_it_for_another_name_or_manifest(
    signer: SigningKey, manifest: Path, tmp_path: Path
) -> None:
    payload = payload_bytes(REFERENCE, digest_of(manifest), SIMPLE_SIGNING_TYPE)
    (tmp_path / "signature-1").write_bytes(
        sign_simple(payload, signer.fingerprint, gnupg_home=signer.home)
    )
    other = tmp_path / "other.json"
    other.write_bytes(manifest.read_bytes() + b"\n")
    for image, name in ((manifest, "registry.example/osbuilder/redis:8"), (other, REFERENCE)):
        result = subprocess.run(
            ["skopeo", "standalone-verify", image, name, signer.fingerprint,
             tmp_path / "signature-1"],
            env={**os.environ, "GNUPGHOME": str(signer.home)},
            capture_output=True,
            check=False,
        )  # fmt: skip
        assert result.returncode != 0


def test_another_keyring_refuses_it(
    signer: SigningKey, stranger: SigningKey, manifest: Path
) -> None:
    digest = digest_of(manifest)
    payload = payload_bytes(REFERENCE, digest, SIMPLE_SIGNING_TYPE)
    signature = sign_simple(payload, signer.fingerprint, gnupg_home=signer.home)
    with pytest.raises(InvalidSignature, match="not among the trusted keys"):
        verify_simple(signature, [load_keyring_file(stranger.keyring)], digest)


def test_gnupghome_is_honoured_when_no_home_is_given(
    signer: SigningKey, manifest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GNUPGHOME", str(signer.home))
    digest = digest_of(manifest)
    signature = sign_simple(
        payload_bytes(REFERENCE, digest, SIMPLE_SIGNING_TYPE), signer.fingerprint
    )
    assert verify_simple(signature, [load_keyring_file(signer.keyring)], digest).fingerprint == (
        signer.fingerprint
    )


def test_the_signature_is_binary_whatever_gpg_conf_says(signer: SigningKey, manifest: Path) -> None:
    (signer.home / "gpg.conf").write_text("armor\n")
    digest = digest_of(manifest)
    # Lower case and spaced, as gpg prints fingerprints for people.
    spaced = " ".join(signer.fingerprint.lower()[i : i + 4] for i in range(0, 40, 4))
    signature = sign_simple(
        payload_bytes(REFERENCE, digest, SIMPLE_SIGNING_TYPE), spaced, gnupg_home=signer.home
    )
    assert signature[0] & 0x80
    verify_simple(signature, [load_keyring_file(signer.keyring)], digest)


def test_a_signing_subkey_signs_and_the_signature_names_the_primary(
    signer: SigningKey, manifest: Path, tmp_path: Path
) -> None:
    signer.gpg("--passphrase", "", "--quick-add-key", signer.fingerprint, "ed25519", "sign")
    keyring = tmp_path / "with-subkey.gpg"
    keyring.write_bytes(signer.gpg("--export", signer.fingerprint).stdout)
    digest = digest_of(manifest)
    signature = sign_simple(
        payload_bytes(REFERENCE, digest, SIMPLE_SIGNING_TYPE),
        signer.fingerprint,
        gnupg_home=signer.home,
    )
    verified = verify_simple(signature, [load_keyring_file(keyring)], digest)
    assert verified.fingerprint == signer.fingerprint
    assert verified.signing_fingerprint != signer.fingerprint


def test_an_unknown_fingerprint_fails_with_one_line(signer: SigningKey) -> None:
    unknown = "0123456789ABCDEF0123456789ABCDEF01234567"
    with pytest.raises(UserError) as error:
        sign_simple(b"{}", unknown, gnupg_home=signer.home)
    assert str(error.value) == (
        f"cannot sign with OpenPGP key {unknown} from {signer.home}: gpg has no secret key "
        "for it (the key is missing, or only its public part is there) "
        '(gpg: "signing failed: No secret key")'
    )


def test_a_public_key_alone_cannot_sign(signer: SigningKey, stranger: SigningKey) -> None:
    stranger.gpg("--import", str(signer.keyring))
    with pytest.raises(UserError, match="gpg has no secret key for it") as error:
        sign_simple(b"{}", signer.fingerprint, gnupg_home=stranger.home)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("value", ["B5379958CDEBB80C", "not a key", "0x" + "G" * 40])
def test_only_a_full_fingerprint_names_the_key(value: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="expected a full OpenPGP fingerprint"):
        sign_simple(b"{}", value, gnupg_home=tmp_path)
