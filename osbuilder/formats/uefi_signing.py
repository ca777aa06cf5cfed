"""Signing the unified kernel image for UEFI Secure Boot (`build --secure-boot-key KEY
--secure-boot-cert CERT`).

The key and certificate (PEM) are read and checked before the build writes anything: both
readable, an unencrypted RSA key (what UEFI firmware verifies), and the certificate's public
key the key's own. The signature is Authenticode's, as sbsign makes it, but made by
osslsigncode: sbsign stamps each signature with the current time (two signings of the same
image differ), osslsigncode takes the time to stamp (SOURCE_DATE_EPOCH), and RSA's PKCS#1
v1.5 signatures are deterministic, so the same key signs the same image to the same bytes.
The key's bytes never reach a log or an error: only its path does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from msgspec import Struct

from osbuilder.errors import UserError
from osbuilder.formats.catalog import FORMATS, Format
from osbuilder.runner import run

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa

KEY_OPTION = "--secure-boot-key"
CERT_OPTION = "--secure-boot-cert"


class SigningIdentity(Struct, frozen=True):
    """A checked key and certificate to sign EFI images with."""

    key: Path
    cert: Path


def signable_formats() -> list[Format]:
    """The formats that carry a unified kernel image: the ones UEFI boots."""
    return [record for record in FORMATS.values() if record.medium == "UEFI"]


def checked_identity(key: Path, cert: Path) -> SigningIdentity:
    """`key` and `cert` once both are read and match, else a UserError naming the file."""
    certificate = read_certificate(cert, CERT_OPTION)
    private_key = _private_key(key)
    if _public_bytes(private_key.public_key()) != _public_bytes(certificate.public_key()):
        raise UserError(
            f"{KEY_OPTION} {key}: not the key of {CERT_OPTION} {cert} (their public keys "
            "differ); give the certificate made for this key"
        )
    return SigningIdentity(key, cert)


def sign_efi_image(identity: SigningIdentity, image: Path, signed: Path, epoch: int) -> None:
    """Write `image` signed by `identity` to `signed`, stamped with the time `epoch`."""
    run(
        [
            "osslsigncode",
            "sign",
            "-certs",
            identity.cert,
            "-key",
            identity.key,
            "-h",
            "sha256",
            "-time",
            str(epoch),
            "-in",
            image,
            "-out",
            signed,
        ]
    )


def _read(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"{option} {path}: cannot read: {exc.strerror}") from None


def read_certificate(path: Path, option: str) -> x509.Certificate:
    """The PEM certificate `path` given as `option`, or a UserError saying why not."""
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(_read(path, option))
    except ValueError:
        raise UserError(
            f"{option} {path}: not a PEM X.509 certificate (-----BEGIN CERTIFICATE-----); "
            "see docs/verified-boot.md for making one"
        ) from None


def _private_key(path: Path) -> rsa.RSAPrivateKey:
    # (cryptography's errors name no bytes of the key; ours name its path only)
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = _read(path, KEY_OPTION)
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:
        raise UserError(
            f"{KEY_OPTION} {path}: the key is encrypted; give an unencrypted copy "
            "(openssl pkey -in KEY -out PLAIN.key), kept private"
        ) from None
    except (ValueError, UnicodeDecodeError):
        raise UserError(
            f"{KEY_OPTION} {path}: not a PEM private key (-----BEGIN PRIVATE KEY-----); "
            "see docs/verified-boot.md for making one"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise UserError(
            f"{KEY_OPTION} {path}: not an RSA key; UEFI firmware verifies RSA signatures "
            "(openssl req -newkey rsa:2048 ...)"
        )
    return key


def _public_bytes(key: object) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    if not isinstance(key, rsa.RSAPublicKey):
        return b""  # (a certificate of another kind of key matches no RSA key)
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
