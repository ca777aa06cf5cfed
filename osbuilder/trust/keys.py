"""Sigstore key pairs in cosign's files: what `cosign generate-key-pair` writes and reads.

PREFIX.pub is the public key, a PEM "PUBLIC KEY" block (SubjectPublicKeyInfo): what a
policy's sigstoreSigned keyPath names, and sigstore.load_public_key reads.

PREFIX.key is the private key, encrypted with a password: a PEM block "ENCRYPTED SIGSTORE
PRIVATE KEY" (cosign before 2.0 wrote "ENCRYPTED COSIGN PRIVATE KEY", still read) holding
the JSON document of go-securesystemslib's `encrypted` package, which cosign uses:

    {"kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": B64},
     "cipher": {"name": "nacl/secretbox", "nonce": B64},
     "ciphertext": B64}

B64 is standard base64 with padding, as Go's encoding/json writes bytes. scrypt turns the
password and the 32-byte random salt into a 32-byte key; NaCl's secretbox (XSalsa20 and
Poly1305) seals the private key's PKCS#8 DER under it with the 24-byte random nonce.

Keys are written with N=32768, the parameters every cosign release reads: cosign since
mid-2023 writes N=65536, but before that it refused anything but 32768. Reading accepts the
three sets go-securesystemslib does (N=32768, 65536 or 131072, r=8, p=1) and no other, so
that a key file cannot make the derivation cost gigabytes or hours.

Neither a key nor a password is ever put in a message or a log.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import json
import os
import re
import secrets
import sys
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from osbuilder.atomicfile import file_set
from osbuilder.errors import UserError, cannot_write
from osbuilder.trust.bounded import read_bounded
from osbuilder.trust.sigstore import key_kind_problem
from osbuilder.trust.strictjson import InvalidJSON, load_strict

SIGSTORE_PRIVATE_KEY_TYPE = "ENCRYPTED SIGSTORE PRIVATE KEY"
COSIGN_PRIVATE_KEY_TYPE = "ENCRYPTED COSIGN PRIVATE KEY"  # cosign before 2.0
PUBLIC_KEY_TYPE = "PUBLIC KEY"

KDF_NAME = "scrypt"
CIPHER_NAME = "nacl/secretbox"
SCRYPT_PARAMETERS = (32768, 8, 1)  # N, r, p written: see the module's docstring
ACCEPTED_SCRYPT_PARAMETERS = frozenset({(32768, 8, 1), (65536, 8, 1), (131072, 8, 1)})
SALT_SIZE = 32
NONCE_SIZE = SecretBox.NONCE_SIZE  # 24
BOX_KEY_SIZE = SecretBox.KEY_SIZE  # 32

PASSWORD_VARIABLE = "OSBUILDER_KEY_PASSWORD"
# cosign's prompts, so that a user of both sees the same question.
PASSWORD_PROMPT = "Enter password for private key: "
PASSWORD_PROMPT_AGAIN = "Enter password for private key again: "

# A P-256 key file is about 650 bytes, an RSA-4096 one under 4 KiB.
MAX_PRIVATE_KEY_FILE_SIZE = 64 * 1024


PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey

# A PEM block as Go's encoding/pem finds one: the first BEGIN line, through its END line.
_PEM_BLOCK = re.compile(
    rb"^-----BEGIN ([A-Z0-9 ]+)-----[ \t]*\r?\n(.*?)^-----END \1-----", re.MULTILINE | re.DOTALL
)


class InvalidPrivateKey(UserError):
    """A private key file that cannot be read, decrypted or used."""


class KeyExists(UserError):
    """A key file is in the way of a new key pair."""


class KeyFiles(NamedTuple):
    """The two files of a key pair."""

    private: Path
    public: Path


def key_files(prefix: Path) -> KeyFiles:
    """PREFIX.key and PREFIX.pub, as cosign names them."""
    return KeyFiles(prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub"))


def check_key_files_free(files: KeyFiles) -> None:
    """KeyExists if either file exists (or is a dangling symlink): a key is never replaced,
    since the old one may be the only copy of what signed images still in use."""
    for path in files:
        if os.path.lexists(path):
            raise KeyExists(_exists_message(path))


def _exists_message(path: Path) -> str:
    return f"{path} already exists: osbuilder never overwrites a key file; choose another name"


def generate_key_pair(prefix: Path, password: bytes) -> KeyFiles:
    """Make an ECDSA P-256 key pair, as `cosign generate-key-pair` does, and write it to
    PREFIX.key (encrypted with `password`, which may be empty; mode 0600) and PREFIX.pub.

    Both files appear together or not at all, and neither replaces an existing file
    (KeyExists).
    """
    files = key_files(prefix)
    check_key_files_free(files)  # before the work: and the writing checks again
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = encrypt_private_key(key, password)
    public_pem = public_key_pem(key)
    writing = files.private  # which file a failure is about, for the message
    try:
        with file_set() as written:
            with written.create(files.private, 0o600, exclusive=True) as out:
                out.write(private_pem)
            writing = files.public
            with written.create(files.public, exclusive=True) as out:
                out.write(public_pem)
    except FileExistsError:
        # Someone made one of the files meanwhile: name it (the error names a temporary).
        clash = next((path for path in files if os.path.lexists(path)), files.private)
        raise KeyExists(_exists_message(clash)) from None
    except OSError as exc:
        # An error may name a temporary (.NAME.key.TOKEN.partial): say which file it was to be.
        named = Path(exc.filename).name if isinstance(exc.filename, str) else ""
        for path in files:
            if named.startswith(f".{path.name}."):
                writing = path
        raise cannot_write(writing, exc, "choose a name in another directory") from None
    return files


def public_key_pem(key: PrivateKey) -> bytes:
    """The public half of `key` as PREFIX.pub holds it."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def encrypt_private_key(key: PrivateKey, password: bytes) -> bytes:
    """`key` as the PEM text of a cosign .key file, sealed with `password`."""
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    salt = secrets.token_bytes(SALT_SIZE)
    nonce = secrets.token_bytes(NONCE_SIZE)
    n, r, p = SCRYPT_PARAMETERS
    box = SecretBox(_derive(password, salt, n, r, p))
    ciphertext = box.encrypt(der, nonce).ciphertext  # Poly1305 tag, then the encrypted bytes
    # The fields in the order of go-securesystemslib's structs, compact, as Go writes them.
    document = {
        "kdf": {"name": KDF_NAME, "params": {"N": n, "r": r, "p": p}, "salt": _b64(salt)},
        "cipher": {"name": CIPHER_NAME, "nonce": _b64(nonce)},
        "ciphertext": _b64(ciphertext),
    }
    return pem_encode(SIGSTORE_PRIVATE_KEY_TYPE, json.dumps(document, separators=(",", ":")))


def pem_encode(block_type: str, data: bytes | str) -> bytes:
    """A PEM block as Go's encoding/pem writes it: base64 in lines of 64, no headers."""
    raw = data.encode() if isinstance(data, str) else data
    text = base64.b64encode(raw).decode()
    lines = "".join(text[i : i + 64] + "\n" for i in range(0, len(text), 64))
    return f"-----BEGIN {block_type}-----\n{lines}-----END {block_type}-----\n".encode()


def load_private_key(path: Path, password: bytes) -> PrivateKey:
    """The private key of a cosign .key file, decrypted with `password`.

    InvalidPrivateKey, naming the file, when it cannot be read, is not a cosign key, the
    password is wrong, or the key is of a kind sigstore does not sign with.
    """
    pem = read_bounded(path, MAX_PRIVATE_KEY_FILE_SIZE, "the private key", InvalidPrivateKey)
    return decrypt_private_key(pem, password, str(path))


def decrypt_private_key(pem: bytes, password: bytes, origin: str) -> PrivateKey:
    """load_private_key of a .key file's text; `origin` names it in errors."""
    if len(pem) > MAX_PRIVATE_KEY_FILE_SIZE:
        raise InvalidPrivateKey(
            f"{origin}: expected a cosign private key of at most {MAX_PRIVATE_KEY_FILE_SIZE} "
            f"bytes, found more"
        )
    match = _PEM_BLOCK.search(pem)
    if match is None:
        raise InvalidPrivateKey(
            f"{origin}: expected a cosign private key (a PEM block "
            f"{SIGSTORE_PRIVATE_KEY_TYPE}), found none"
        )
    block_type = match[1].decode()
    if block_type not in (SIGSTORE_PRIVATE_KEY_TYPE, COSIGN_PRIVATE_KEY_TYPE):
        raise InvalidPrivateKey(
            f"{origin}: expected a cosign private key (a PEM block {SIGSTORE_PRIVATE_KEY_TYPE}), "
            f"found a {block_type} block (cosign import-key-pair converts one)"
        )
    document = _sealed_document(match[2], origin)
    n, r, p, salt = _kdf(document, origin)
    nonce, ciphertext = _cipher(document, origin)
    try:
        der = SecretBox(_derive(password, salt, n, r, p)).decrypt(ciphertext, nonce)
    except CryptoError:
        raise InvalidPrivateKey(
            f"{origin}: cannot decrypt the private key: wrong password (or a damaged file)"
        ) from None
    return _private_key(der, origin)


def _derive(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=BOX_KEY_SIZE, n=n, r=r, p=p).derive(password)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _malformed(origin: str, what: str) -> InvalidPrivateKey:
    return InvalidPrivateKey(f"{origin}: the encrypted private key is malformed: {what}")


def _sealed_document(body: bytes, origin: str) -> dict[str, Any]:
    try:
        data = base64.b64decode(b"".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(origin, "its PEM block is not base64") from None
    try:
        document = load_strict(data)
    except InvalidJSON as exc:
        raise _malformed(origin, str(exc)) from None
    if not isinstance(document, dict):
        raise _malformed(origin, "expected a JSON object")
    return document


_KINDS = {str: "a string", int: "an integer", dict: "an object"}


def _field(document: Any, key: str, kind: type, origin: str, where: str) -> Any:
    value = document.get(key) if isinstance(document, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _malformed(origin, f"{where}{key}: missing or not {_KINDS[kind]}")
    return value


def _bytes_field(document: Any, key: str, origin: str, where: str) -> bytes:
    text = _field(document, key, str, origin, where)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(origin, f"{where}{key}: not base64") from None


def _kdf(document: dict[str, Any], origin: str) -> tuple[int, int, int, bytes]:
    kdf = _field(document, "kdf", dict, origin, "")
    name = _field(kdf, "name", str, origin, "kdf.")
    if name != KDF_NAME:
        raise _malformed(origin, f"kdf.name: expected {KDF_NAME!r}, found {name[:40]!r}")
    params = _field(kdf, "params", dict, origin, "kdf.")
    n, r, p = (_field(params, key, int, origin, "kdf.params.") for key in ("N", "r", "p"))
    if (n, r, p) not in ACCEPTED_SCRYPT_PARAMETERS:
        raise InvalidPrivateKey(
            f"{origin}: unsupported scrypt parameters N={n} r={r} p={p} (cosign's are "
            "N=32768, 65536 or 131072 with r=8 p=1)"
        )
    return n, r, p, _bytes_field(kdf, "salt", origin, "kdf.")


def _cipher(document: dict[str, Any], origin: str) -> tuple[bytes, bytes]:
    cipher = _field(document, "cipher", dict, origin, "")
    name = _field(cipher, "name", str, origin, "cipher.")
    if name != CIPHER_NAME:
        raise _malformed(origin, f"cipher.name: expected {CIPHER_NAME!r}, found {name[:40]!r}")
    nonce = _bytes_field(cipher, "nonce", origin, "cipher.")
    if len(nonce) != NONCE_SIZE:
        raise _malformed(origin, f"cipher.nonce: expected {NONCE_SIZE} bytes, found {len(nonce)}")
    return nonce, _bytes_field(document, "ciphertext", origin, "")


def _der_element(der: bytes, offset: int) -> tuple[int, int, int] | None:
    """(tag, contents start, contents end) of the DER element at `offset`, if whole."""
    if offset + 2 > len(der):
        return None
    tag, length, start = der[offset], der[offset + 1], offset + 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or start + count > len(der):
            return None
        length, start = int.from_bytes(der[start : start + count], "big"), start + count
    end = start + length
    return (tag, start, end) if end <= len(der) else None


def _is_pkcs8(der: bytes) -> bool:
    """Whether `der` is a PKCS#8 PrivateKeyInfo: SEQUENCE { INTEGER, SEQUENCE, ... }.

    cosign parses the decrypted key as PKCS#8 only, and refuses an SEC 1 or PKCS#1 key
    (SEQUENCE { INTEGER, OCTET STRING or INTEGER, ... }); so does osbuilder, so that a key
    that works here works with cosign too.
    """
    outer = _der_element(der, 0)
    if outer is None or outer[0] != 0x30:
        return False
    version = _der_element(der, outer[1])
    if version is None or version[0] != 0x02:
        return False
    algorithm = _der_element(der, version[2])
    return algorithm is not None and algorithm[0] == 0x30


def _private_key(der: bytes, origin: str) -> PrivateKey:
    if not _is_pkcs8(der):
        raise InvalidPrivateKey(
            f"{origin}: the decrypted private key is not PKCS#8, which cosign requires"
        )
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidPrivateKey(
            f"{origin}: the decrypted private key is not one cryptography can read"
        ) from None
    problem = key_kind_problem(key, "private")
    if problem is not None:
        raise InvalidPrivateKey(f"{origin}: {problem}")
    assert isinstance(key, PrivateKey)  # (what key_kind_problem accepts)
    return key


def key_password(prompt_twice: bool) -> bytes:
    """The password of a private key: $OSBUILDER_KEY_PASSWORD when set (even empty, as
    cosign's COSIGN_PASSWORD), else asked on the terminal, twice for a new key.

    Without either, a UserError says to set the variable: a build in CI has no one to ask.
    """
    given = os.environb.get(PASSWORD_VARIABLE.encode())
    if given is not None:
        return given
    if not sys.stdin.isatty():
        raise UserError(
            f"no password for the private key: set {PASSWORD_VARIABLE} (it may be empty), "
            "or run on a terminal to be asked"
        )
    try:
        password = getpass.getpass(PASSWORD_PROMPT)
        if prompt_twice and getpass.getpass(PASSWORD_PROMPT_AGAIN) != password:
            raise UserError("the two passwords entered differ")
    except EOFError:
        raise UserError("no password entered for the private key") from None
    return password.encode()  # UTF-8, as cosign reads a terminal
