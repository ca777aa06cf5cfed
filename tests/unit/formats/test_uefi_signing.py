"""Signing the unified kernel image for Secure Boot: the checks of the key and certificate,
and signatures that sbverify accepts, made the same way twice."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from osbuilder.errors import UserError
from osbuilder.formats.uefi_signing import checked_identity, sign_efi_image
from osbuilder.formats.uki import EFI_STUB
from tests.conftest import REPO
from tests.uefi_keys import KeyPair, make_key_pair

EPOCH = 1_700_000_000


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[KeyPair, KeyPair]:
    """Two key pairs: the one that signs, and another."""
    directory = tmp_path_factory.mktemp("keys")
    return make_key_pair(directory, "db"), make_key_pair(directory, "other")


def sbverify(cert: Path, image: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sbverify", "--cert", str(cert), str(image)], capture_output=True, text=True, check=False
    )


def test_the_same_key_signs_the_same_image_to_the_same_bytes(
    keys: tuple[KeyPair, KeyPair], tmp_path: Path
) -> None:
    db, other = keys
    identity = checked_identity(db.key, db.cert)
    first, second = tmp_path / "first.efi", tmp_path / "second.efi"
    sign_efi_image(identity, EFI_STUB, first, EPOCH)
    sign_efi_image(identity, EFI_STUB, second, EPOCH)  # (a later second: the same time stamp)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != EFI_STUB.read_bytes()
    assert sbverify(db.cert, first).returncode == 0
    refused = sbverify(other.cert, first)
    assert refused.returncode != 0 and "Signature verification failed" in refused.stdout


def test_sbsign_stamps_the_time_which_is_why_osbuilder_does_not_sign_with_it(
    keys: tuple[KeyPair, KeyPair], tmp_path: Path
) -> None:
    db, _ = keys
    signed = []
    for name in ("first.efi", "second.efi"):
        subprocess.run(
            ["sbsign", "--key", db.key, "--cert", db.cert, "--output", tmp_path / name, EFI_STUB],
            check=True,
            capture_output=True,
        )
        signed.append((tmp_path / name).read_bytes())
        if name == "first.efi":
            subprocess.run(["sleep", "1.1"], check=True)  # (signingTime counts seconds)
    assert signed[0] != signed[1]


def test_a_key_of_another_certificate_is_refused_naming_both(
    keys: tuple[KeyPair, KeyPair],
) -> None:
    db, other = keys
    with pytest.raises(UserError) as refused:
        checked_identity(db.key, other.cert)
    assert str(refused.value) == (
        f"--secure-boot-key {db.key}: not the key of --secure-boot-cert {other.cert} (their "
        "public keys differ); give the certificate made for this key"
    )


def test_what_is_not_a_pem_key_or_certificate_is_refused_by_its_file(
    keys: tuple[KeyPair, KeyPair], tmp_path: Path
) -> None:
    db, _ = keys
    missing = tmp_path / "missing.key"
    with pytest.raises(UserError, match=rf"^--secure-boot-key {missing}: cannot read: "):
        checked_identity(missing, db.cert)
    with pytest.raises(UserError, match=rf"^--secure-boot-key {db.cert}: not a PEM private key"):
        checked_identity(db.cert, db.cert)
    with pytest.raises(UserError, match=rf"^--secure-boot-cert {db.key}: not a PEM X.509"):
        checked_identity(db.key, db.key)


def test_an_encrypted_or_elliptic_curve_key_is_refused(
    keys: tuple[KeyPair, KeyPair], tmp_path: Path
) -> None:
    db, _ = keys
    key = serialization.load_pem_private_key(db.key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(UserError, match="the key is encrypted; give an unencrypted copy"):
        checked_identity(encrypted, db.cert)
    curve = tmp_path / "curve.key"
    curve.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(UserError, match="not an RSA key; UEFI firmware verifies RSA"):
        checked_identity(curve, db.cert)


def build(tmp_path: Path, *options: str | Path) -> subprocess.CompletedProcess[str]:
    """`osbuilder --debug build` of examples/redis.yml into tmp_path/out, from an empty
    store."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "osbuilder",
            "--debug",
            "build",
            "--offline",
            "--cache",
            str(tmp_path / "store"),
            "-o",
            str(tmp_path / "out"),
            *map(str, options),
            str(REPO / "examples/redis.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def key_body(pair: KeyPair) -> list[str]:
    """The lines of the key's PEM between its armour."""
    return [line for line in pair.key.read_text().splitlines() if not line.startswith("-----")]


SIGNED_BY_DB = ("--secure-boot-key", "{db.key}", "--secure-boot-cert", "{db.cert}")


@pytest.mark.parametrize(
    ("formats", "error"),
    [
        (
            ("-f", "raw-efi", "--secure-boot-key", "{db.key}"),
            "osbuilder: --secure-boot-key and --secure-boot-cert go together: add "
            "--secure-boot-cert",
        ),
        (
            (
                "-f",
                "raw-efi",
                "--secure-boot-key",
                "{db.key}",
                "--secure-boot-cert",
                "{other.cert}",
            ),
            "osbuilder: --secure-boot-key {db.key}: not the key of --secure-boot-cert "
            "{other.cert} (their public keys differ); give the certificate made for this key",
        ),
        (
            ("-f", "raw-efi", "-f", "kernel+initrd", *SIGNED_BY_DB),
            "osbuilder: --secure-boot-key: kernel+initrd has no unified kernel image to sign; "
            "build it without the key (the signed formats: iso-efi, iso-efi-initrd, raw-efi, "
            "qcow2-efi)",
        ),
    ],
)
def test_a_build_refuses_what_it_cannot_sign_in_one_line_writing_nothing(
    keys: tuple[KeyPair, KeyPair], tmp_path: Path, formats: tuple[str, ...], error: str
) -> None:
    db, other = keys
    result = build(tmp_path, *(option.format(db=db, other=other) for option in formats))
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == error.format(db=db, other=other)
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    # (--debug logs the commands run and the errors met: never a line of the key)
    assert not any(line in result.stderr for line in key_body(db))


def test_signing_logs_the_command_with_the_keys_path_never_its_bytes(
    keys: tuple[KeyPair, KeyPair], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db, _ = keys
    caplog.set_level(logging.DEBUG)  # (what --debug shows)
    sign_efi_image(checked_identity(db.key, db.cert), EFI_STUB, tmp_path / "signed.efi", EPOCH)
    assert f"-key {db.key}" in caplog.text
    assert not any(line in caplog.text for line in key_body(db))
