"""Secure Boot signing keys for the tests, made afresh (no key is committed)."""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from msgspec import Struct


class KeyPair(Struct, frozen=True):
    key: Path  # PEM, unencrypted
    cert: Path  # PEM, self-signed


def make_key_pair(directory: Path, name: str) -> KeyPair:
    """DIRECTORY/NAME.key and NAME.crt: an RSA-2048 key and its self-signed certificate,
    as `openssl req -x509 -newkey rsa:2048 -nodes` makes them."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, f"osbuilder test {name}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    pair = KeyPair(directory / f"{name}.key", directory / f"{name}.crt")
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pair
