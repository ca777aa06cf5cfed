"""Simple signing with real skopeo: what `skopeo standalone-sign` writes, osbuilder
verifies with gpgv, under the signer's keys only."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from osbuilder.trust.payload import MAX_PAYLOAD_SIZE, InvalidSignature
from osbuilder.trust.simplesign import (
    InvalidKeys,
    load_keyring_file,
    openpgp_keys,
    verify_simple,
    verify_simple_signature,
)
from tests.integration.debrepo import SigningKey

pytestmark = pytest.mark.integration

REFERENCE = "registry.example/osbuilder/redis:7"


def skopeo_sign(key: SigningKey, manifest: Path, output: Path) -> bytes:
    subprocess.run(
        ["skopeo", "standalone-sign", manifest, REFERENCE, key.fingerprint, "--output", output],
        env={**os.environ, "GNUPGHOME": str(key.home)},
        check=True,
        capture_output=True,
    )
    return output.read_bytes()


def digest_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_skopeo_signature_verifies(signer: SigningKey, manifest: Path, tmp_path: Path) -> None:
    signature = skopeo_sign(signer, manifest, tmp_path / "signature-1")
    verified = verify_simple(signature, [load_keyring_file(signer.keyring)], digest_of(manifest))
    assert verified.payload.docker_reference == REFERENCE
    assert verified.payload.manifest_digest == digest_of(manifest)
    assert verified.payload.creator is not None and verified.payload.creator.startswith("atomic")
    assert verified.fingerprint == signer.fingerprint
    assert verified.signing_fingerprint == signer.fingerprint  # no subkey: the primary signs


def test_armored_key_data_verifies_too(
    signer: SigningKey, stranger: SigningKey, manifest: Path, tmp_path: Path
) -> None:
    signature = skopeo_sign(signer, manifest, tmp_path / "signature-1")
    armored = signer.gpg("--armor", "--export", signer.fingerprint).stdout
    assert armored.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    keys = [load_keyring_file(stranger.keyring), openpgp_keys(armored, "keyData")]
    verified = verify_simple(signature, keys, digest_of(manifest))
    assert verified.fingerprint == signer.fingerprint


def test_another_keyring_refuses_it(
    signer: SigningKey, stranger: SigningKey, manifest: Path, tmp_path: Path
) -> None:
    signature = skopeo_sign(signer, manifest, tmp_path / "signature-1")
    with pytest.raises(InvalidSignature) as error:
        verify_simple(signature, [load_keyring_file(stranger.keyring)], digest_of(manifest))
    message = str(error.value)
    assert message.startswith(f"the signature is by key {signer.fingerprint[-16:]}, ")
    assert f"not among the trusted keys ({stranger.keyring})" in message


def test_a_signature_for_another_manifest_says_so(
    signer: SigningKey, manifest: Path, tmp_path: Path
) -> None:
    signature = skopeo_sign(signer, manifest, tmp_path / "signature-1")
    other = "sha256:" + "0" * 64
    with pytest.raises(InvalidSignature) as error:
        verify_simple(signature, [load_keyring_file(signer.keyring)], other)
    assert str(error.value) == (
        f"the signature is for manifest {digest_of(manifest)}, expected {other}"
    )


def test_a_modified_signature_is_refused(
    signer: SigningKey, manifest: Path, tmp_path: Path
) -> None:
    signature = bytearray(skopeo_sign(signer, manifest, tmp_path / "signature-1"))
    signature[len(signature) // 2] ^= 0x01
    with pytest.raises(InvalidSignature):
        verify_simple_signature(bytes(signature), [load_keyring_file(signer.keyring)])


def test_a_signed_non_payload_is_refused(signer: SigningKey, tmp_path: Path) -> None:
    (tmp_path / "text").write_bytes(b"hello")
    signed = signer.gpg("--local-user", signer.fingerprint, "--output", "-", "--sign",
                        str(tmp_path / "text")).stdout  # fmt: skip
    with pytest.raises(InvalidSignature, match="signature payload: expected JSON"):
        verify_simple_signature(signed, [load_keyring_file(signer.keyring)])


def test_a_compressed_oversized_payload_is_cut_off(signer: SigningKey, tmp_path: Path) -> None:
    # A few KiB of signature that gpgv would decompress into far more than a payload.
    big = tmp_path / "big"
    big.write_bytes(b" " * (MAX_PAYLOAD_SIZE * 2))
    signed = signer.gpg("--local-user", signer.fingerprint, "--compress-level", "9",
                        "--output", "-", "--sign", str(big)).stdout  # fmt: skip
    assert len(signed) < MAX_PAYLOAD_SIZE // 100
    with pytest.raises(InvalidSignature, match="expected a payload of at most"):
        verify_simple_signature(signed, [load_keyring_file(signer.keyring)])


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        (b"", "expected a binary OpenPGP signed message"),
        (b"-----BEGIN PGP MESSAGE-----\n", "expected a binary OpenPGP signed message"),
        (b"\x90" + b"\0" * (MAX_PAYLOAD_SIZE + 70_000), "expected at most"),
        (b"\xa3\x01garbage", "OpenPGP signature: not verified"),
    ],
)
def test_malformed_signatures_are_refused(
    signer: SigningKey, signature: bytes, message: str
) -> None:
    with pytest.raises(InvalidSignature, match=message):
        verify_simple_signature(signature, [load_keyring_file(signer.keyring)])


def test_no_keys_is_an_error_not_an_accept() -> None:
    with pytest.raises(InvalidSignature, match="no OpenPGP key"):
        verify_simple_signature(b"\x90", [])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "expected OpenPGP public keys"),
        (b"hello", "expected OpenPGP public keys"),
        (b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n", "has no END line"),
        (
            b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!\n-----END PGP PUBLIC KEY BLOCK-----\n",
            "not valid base64",
        ),
    ],
)
def test_unusable_keys_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(InvalidKeys, match=message):
        openpgp_keys(data, "keyData")


def test_a_missing_keyring_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidKeys, match="cannot read the keyring: No such file"):
        load_keyring_file(tmp_path / "missing.gpg")


def test_a_subkey_signature_names_its_primary_key(
    signer: SigningKey, manifest: Path, tmp_path: Path
) -> None:
    # gpg signs with the newest signing subkey; a policy names the primary key.
    signer.gpg("--passphrase", "", "--quick-add-key", signer.fingerprint, "ed25519", "sign")
    keyring = tmp_path / "with-subkey.gpg"
    keyring.write_bytes(signer.gpg("--export", signer.fingerprint).stdout)
    signature = skopeo_sign(signer, manifest, tmp_path / "signature-1")
    verified = verify_simple(signature, [load_keyring_file(keyring)], digest_of(manifest))
    assert verified.fingerprint == signer.fingerprint
    assert verified.signing_fingerprint != signer.fingerprint
    # The primary key alone does not verify what its subkey signed.
    with pytest.raises(InvalidSignature, match="not among the trusted keys"):
        verify_simple(signature, [load_keyring_file(signer.keyring)], digest_of(manifest))


def test_a_signature_by_an_expired_key_is_refused(
    signer: SigningKey, manifest: Path, tmp_path: Path
) -> None:
    # A signing subkey that expires in a few seconds: time enough to sign with it.
    lifetime = 4
    created = time.monotonic()
    signer.gpg(
        "--passphrase", "", "--quick-add-key", signer.fingerprint, "ed25519", "sign",
        f"seconds={lifetime}",
    )  # fmt: skip
    keyring = tmp_path / "with-subkey.gpg"
    keyring.write_bytes(signer.gpg("--export", signer.fingerprint).stdout)
    signature = skopeo_sign(signer, manifest, tmp_path / "signature-1")
    time.sleep(max(0.0, created + lifetime + 1.5 - time.monotonic()))
    with pytest.raises(InvalidSignature, match="not valid: its key expired"):
        verify_simple(signature, [load_keyring_file(keyring)], digest_of(manifest))
