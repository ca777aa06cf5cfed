"""Verifying "simple signing" signatures: OpenPGP signed messages carrying the payload.

This is the format `skopeo copy --sign-by` and `skopeo standalone-sign` write to a
lookaside store: a binary OpenPGP message (one-pass signature, literal data, signature,
usually compressed) whose literal data is the JSON payload (payload.py, type "atomic
container signature").

The OpenPGP work is gpgv's, through the runner: it is GnuPG's verifier with no trust
model and no agent, which takes exactly the keyrings it is given as trusted, so "signed
by a key not given" is its plain refusal. Each verification runs in a throwaway home
directory, so the user's gpg state is neither read nor changed. gpgv's verdict is read
from its machine-readable status lines, never from its exit code or messages alone.
"""

from __future__ import annotations

import base64
import binascii
import signal
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from osbuilder import runner
from osbuilder.errors import UserError
from osbuilder.trust.bounded import read_bounded
from osbuilder.trust.payload import (
    MAX_PAYLOAD_SIZE,
    SIMPLE_SIGNING_TYPE,
    InvalidSignature,
    SignedPayload,
    check_digest,
    parse_payload,
    refuse_oversized,
)

# A signature is the payload (a few hundred bytes, at most MAX_PAYLOAD_SIZE) plus some
# packets; anything larger is refused before gpgv sees it.
MAX_SIGNATURE_SIZE = MAX_PAYLOAD_SIZE + 64 * 1024
# Distributions' keyrings hold dozens of keys; this is far above any of them.
MAX_KEYRING_SIZE = 16 * 1024 * 1024
GPGV_TIMEOUT = 60.0

_ARMOR_BEGIN = b"-----BEGIN PGP PUBLIC KEY BLOCK-----"
_ARMOR_END = b"-----END PGP PUBLIC KEY BLOCK-----"

# Status keywords that mean some signature in the message did not verify cleanly:
# bad, by an unknown key, expired, by an expired or revoked key, or no OpenPGP data.
_REFUSING = {"BADSIG", "ERRSIG", "NO_PUBKEY", "EXPSIG", "EXPKEYSIG", "REVKEYSIG", "NODATA"}


class InvalidKeys(UserError):
    """An OpenPGP keyring file or key data that cannot be used."""


@dataclass(frozen=True)
class OpenPGPKeys:
    """Trusted OpenPGP public keys, binary (as `gpg --export` writes them), with where
    they came from for messages."""

    data: bytes
    origin: str


@dataclass(frozen=True)
class VerifiedSimpleSignature:
    payload: SignedPayload
    fingerprint: str  # the primary key's: what a user names and a policy lists
    signing_fingerprint: str  # the key that made the signature: a subkey, or the primary


def openpgp_keys(data: bytes, origin: str) -> OpenPGPKeys:
    """Keys from binary or ASCII-armored public key data (a keyring file, a policy's
    keyData); `origin` names them in errors."""
    if len(data) > MAX_KEYRING_SIZE:
        raise InvalidKeys(
            f"{origin}: expected an OpenPGP keyring of at most {MAX_KEYRING_SIZE} bytes, "
            f"found {len(data)}"
        )
    if data.lstrip().startswith(_ARMOR_BEGIN):
        data = _dearmor(data, origin)
    # Every OpenPGP packet's first byte has its high bit set.
    if not data or not data[0] & 0x80:
        raise InvalidKeys(f"{origin}: expected OpenPGP public keys (binary or armored)")
    return OpenPGPKeys(data, origin)


def load_keyring_file(path: Path) -> OpenPGPKeys:
    """openpgp_keys of a file (a policy's keyPath), read with a bound."""
    data = read_bounded(path, MAX_KEYRING_SIZE, "the keyring", InvalidKeys)
    return openpgp_keys(data, str(path))


def _dearmor(text: bytes, origin: str) -> bytes:
    """The binary packets of every armored public key block in `text` (RFC 4880, 6.2):
    headers up to a blank line, base64, an optional "=" checksum line."""
    packets = b""
    rest = text
    while (start := rest.find(_ARMOR_BEGIN)) >= 0:
        end = rest.find(_ARMOR_END, start)
        if end < 0:
            raise InvalidKeys(f"{origin}: the armored key block has no END line")
        lines = rest[start + len(_ARMOR_BEGIN) : end].strip().splitlines()
        if b"" in (line.strip() for line in lines):  # headers end at the first blank line
            lines = lines[[line.strip() for line in lines].index(b"") + 1 :]
        body = b"".join(line.strip() for line in lines if not line.startswith(b"="))
        try:
            packets += base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidKeys(f"{origin}: the armored key block is not valid base64") from None
        rest = rest[end + len(_ARMOR_END) :]
    return packets


def verify_simple_signature(
    signature: bytes, keys: Sequence[OpenPGPKeys]
) -> VerifiedSimpleSignature:
    """Verify `signature` with gpgv against `keys` only, then parse its payload.

    InvalidSignature when it is malformed, signed by another key, or not verifiable. The
    payload's digest is not checked here: see verify_simple.
    """
    if not keys:
        raise InvalidSignature("no OpenPGP key to verify the signature with")
    refuse_oversized("OpenPGP signature", len(signature), MAX_SIGNATURE_SIZE)
    # The lookaside format is binary; armored or clear-signed text is not what skopeo writes.
    if not signature or not signature[0] & 0x80:
        raise InvalidSignature("OpenPGP signature: expected a binary OpenPGP signed message")
    with tempfile.TemporaryDirectory(prefix="osbuilder-gpgv-") as temporary:
        directory = Path(temporary)
        home = directory / "home"
        home.mkdir(mode=0o700)
        message = directory / "signature"
        message.write_bytes(signature)
        output = directory / "payload"
        command: list[str | Path] = [
            # The payload is decompressed by gpgv: a file size limit keeps a compressed
            # bomb from filling the disk (gpgv dies of SIGXFSZ past it).
            "prlimit",
            f"--fsize={MAX_PAYLOAD_SIZE + 1}",
            "--",
            "gpgv",
            "--homedir",
            home,
            "--status-fd",
            "1",
            "--output",
            output,
        ]
        for number, key in enumerate(keys):
            keyring = directory / f"keyring-{number}.gpg"
            keyring.write_bytes(key.data)
            command += ["--keyring", keyring]
        command += ["--", message]
        result = runner.run(command, timeout=GPGV_TIMEOUT, check=False, env={"LC_ALL": "C"})
        if result.returncode == -signal.SIGXFSZ:
            raise InvalidSignature(
                f"OpenPGP signature: expected a payload of at most {MAX_PAYLOAD_SIZE} bytes, "
                "found more"
            )
        status = _status(result.stdout)
        stderr = result.stderr.decode(errors="replace").strip()
        primary, signing = _verdict(status, result.returncode, stderr, keys)
        with output.open("rb") as stream:
            payload = stream.read(MAX_PAYLOAD_SIZE + 1)
    # Parsed only once verified: until then it is anyone's JSON.
    parsed = parse_payload(payload, signature_type=SIMPLE_SIGNING_TYPE)
    return VerifiedSimpleSignature(parsed, primary, signing)


def verify_simple(
    signature: bytes, keys: Sequence[OpenPGPKeys], expected_digest: str
) -> VerifiedSimpleSignature:
    """verify_simple_signature, then the payload must sign `expected_digest`.

    The identity (docker-reference) is the policy's to judge (signedIdentity).
    """
    verified = verify_simple_signature(signature, keys)
    check_digest(verified.payload, expected_digest)
    return verified


def _status(stdout: bytes) -> list[list[str]]:
    """gpgv's `[GNUPG:] KEYWORD ARGS...` lines, split."""
    lines = []
    for line in stdout.decode(errors="replace").splitlines():
        if line.startswith("[GNUPG:] "):
            lines.append(line.split(" ")[1:])
    return lines


def _verdict(
    status: list[list[str]], returncode: int, stderr: str, keys: Sequence[OpenPGPKeys]
) -> tuple[str, str]:
    """The (primary, signing) fingerprints of the one valid signature, else why not."""
    keywords = [line[0] for line in status if line]
    trusted = ", ".join(key.origin for key in keys)
    for line in status:
        if line[0] == "NO_PUBKEY" and len(line) > 1:
            raise InvalidSignature(
                f"the signature is by key {line[1]}, which is not among the trusted keys "
                f"({trusted})"
            )
    if "BADSIG" in keywords:
        raise InvalidSignature("the OpenPGP signature does not verify: the data was modified")
    if "EXPKEYSIG" in keywords or "REVKEYSIG" in keywords or "EXPSIG" in keywords:
        which = next(k for k in keywords if k in ("EXPKEYSIG", "REVKEYSIG", "EXPSIG"))
        what = {"EXPKEYSIG": "its key expired", "REVKEYSIG": "its key is revoked"}.get(
            which, "the signature expired"
        )
        raise InvalidSignature(f"the OpenPGP signature is not valid: {what}")
    valid = [line for line in status if line[0] == "VALIDSIG"]
    if (
        returncode != 0
        or _REFUSING & set(keywords)
        or keywords.count("NEWSIG") != 1  # one signature per message, as containers/image
        or keywords.count("GOODSIG") != 1
        or len(valid) != 1
        or len(valid[0]) < 11
    ):
        # gpgv's own lines say why; its advice about file order does not apply here.
        said = [line[6:] for line in stderr.splitlines() if line.startswith("gpgv: ")]
        detail = " | ".join(said[-2:]) or "no valid signature found"
        raise InvalidSignature(f"OpenPGP signature: not verified: {detail}")
    return valid[0][10], valid[0][1]
