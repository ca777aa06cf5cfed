"""cosign key pairs: what osbuilder writes has cosign's shape and reads back; what cosign
wrote (keys from sigstore's repositories) osbuilder reads; no key is ever overwritten, and
a failure leaves no file."""

from __future__ import annotations

import base64
import errno
import json
import logging
import os
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from osbuilder.cli import main
from osbuilder.errors import UserError, WriteFailed
from osbuilder.trust import keys
from osbuilder.trust.keys import (
    PASSWORD_PROMPT,
    PASSWORD_PROMPT_AGAIN,
    PASSWORD_VARIABLE,
    InvalidPrivateKey,
    KeyExists,
    decrypt_private_key,
    encrypt_private_key,
    generate_key_pair,
    key_password,
    load_private_key,
    pem_encode,
    public_key_pem,
)
from osbuilder.trust.sigstore import load_public_key_file

COSIGN = Path(__file__).resolve().parents[2] / "data" / "trust" / "cosign"
PASSWORD = b"correct horse battery staple"


def sealed_document(pem: bytes) -> dict[str, object]:
    """The JSON inside a .key file's PEM block."""
    body = b"".join(pem.strip().splitlines()[1:-1])
    document: dict[str, object] = json.loads(base64.b64decode(body))
    return document


def shape(value: object) -> object:
    """`value` with every string replaced by its type and every number kept: the structure
    and order of a JSON document, without its random bytes."""
    if isinstance(value, dict):
        return [(key, shape(item)) for key, item in value.items()]
    return "str" if isinstance(value, str) else value


def same_public_key(key: keys.PrivateKey, pub: Path) -> bool:
    return public_key_pem(key) == pub.read_bytes()


def test_a_generated_pair_reads_back_with_its_password(tmp_path: Path) -> None:
    files = generate_key_pair(tmp_path / "signer", PASSWORD)
    assert files == (tmp_path / "signer.key", tmp_path / "signer.pub")
    key = load_private_key(files.private, PASSWORD)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)  # cosign generate-key-pair's curve
    assert same_public_key(key, files.public)
    assert isinstance(load_public_key_file(files.public).key, ec.EllipticCurvePublicKey)


def test_an_empty_password_still_encrypts(tmp_path: Path) -> None:
    # COSIGN_PASSWORD="" encrypts with the empty password: the key is never in the clear.
    files = generate_key_pair(tmp_path / "signer", b"")
    text = files.private.read_bytes()
    assert text.startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    assert same_public_key(load_private_key(files.private, b""), files.public)
    with pytest.raises(InvalidPrivateKey, match="wrong password"):
        load_private_key(files.private, b"x")


def test_the_key_file_has_the_shape_of_cosigns(tmp_path: Path) -> None:
    files = generate_key_pair(tmp_path / "signer", PASSWORD)
    ours = files.private.read_bytes()
    cosigns = (COSIGN / "cosign-keys-test-sigstore.key").read_bytes()  # N=32768 too
    # PEM as Go writes it: the type, base64 in lines of 64, nothing else.
    lines = ours.decode().splitlines()
    assert lines[0] == "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"
    assert lines[-1] == "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----"
    assert all(len(line) == 64 for line in lines[1:-2]) and 0 < len(lines[-2]) <= 64
    assert ours.endswith(b"-----\n")
    # The JSON: the same names, nesting, order and parameters as cosign's.
    document, theirs = sealed_document(ours), sealed_document(cosigns)
    assert shape(document) == shape(theirs)
    assert shape(document) == [
        ("kdf", [("name", "str"), ("params", [("N", 32768), ("r", 8), ("p", 1)]), ("salt", "str")]),
        ("cipher", [("name", "str"), ("nonce", "str")]),
        ("ciphertext", "str"),
    ]
    body = b"".join(ours.strip().splitlines()[1:-1])
    assert b" " not in base64.b64decode(body)  # compact, as Go's json.Marshal
    kdf, cipher = document["kdf"], document["cipher"]
    assert isinstance(kdf, dict) and isinstance(cipher, dict)
    assert (kdf["name"], cipher["name"]) == ("scrypt", "nacl/secretbox")
    assert len(base64.b64decode(kdf["salt"], validate=True)) == 32
    assert len(base64.b64decode(cipher["nonce"], validate=True)) == 24
    ciphertext = base64.b64decode(str(document["ciphertext"]), validate=True)
    pkcs8 = load_private_key(files.private, PASSWORD).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert len(ciphertext) == 16 + len(pkcs8)  # Poly1305's tag, then the sealed PKCS#8 DER


def test_every_key_gets_its_own_salt_and_nonce(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    first = sealed_document(encrypt_private_key(key, PASSWORD))
    second = sealed_document(encrypt_private_key(key, PASSWORD))
    for part, field in (("kdf", "salt"), ("cipher", "nonce")):
        a, b = first[part], second[part]
        assert isinstance(a, dict) and isinstance(b, dict)
        assert a[field] != b[field]


def test_the_public_key_file_is_a_pem_subject_public_key_info(tmp_path: Path) -> None:
    files = generate_key_pair(tmp_path / "signer", PASSWORD)
    text = files.public.read_text()
    assert text.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert text.endswith("-----END PUBLIC KEY-----\n")
    serialization.load_pem_public_key(text.encode())


def test_a_cosign_generated_pair_reads_and_its_public_key_matches() -> None:
    # sigstore/policy-controller's example pair, made by cosign generate-key-pair (2022).
    key = load_private_key(COSIGN / "policy-controller-cosign.key", b"")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert same_public_key(key, COSIGN / "policy-controller-cosign.pub")


@pytest.mark.parametrize(
    ("name", "password"),
    [
        ("policy-controller-cosign.key", b""),  # ENCRYPTED COSIGN PRIVATE KEY, N=32768
        ("sigstore-rs-cosign-generated-empty-password.key", b""),  # today's cosign, N=65536
        ("cosign-keys-test-sigstore.key", b"hello"),  # cosign's own test key
    ],
)
def test_keys_cosign_wrote_read_and_refuse_a_wrong_password(name: str, password: bytes) -> None:
    key = load_private_key(COSIGN / name, password)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    with pytest.raises(InvalidPrivateKey) as error:
        load_private_key(COSIGN / name, password + b"!")
    assert str(error.value) == (
        f"{COSIGN / name}: cannot decrypt the private key: wrong password (or a damaged file)"
    )


def test_a_key_cosign_refuses_is_refused_too() -> None:
    # Its decrypted bytes are an SEC 1 key, not PKCS#8: cosign's tests expect a refusal.
    with pytest.raises(InvalidPrivateKey, match="not PKCS#8, which cosign requires"):
        load_private_key(COSIGN / "cosign-keys-test-sec1.key", b"hello")


def test_no_message_or_log_holds_the_password_or_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    files = generate_key_pair(tmp_path / "signer", PASSWORD)
    key = load_private_key(files.private, PASSWORD)
    secret = key.private_numbers().private_value
    with pytest.raises(InvalidPrivateKey) as error:
        load_private_key(files.private, b"tried 12345")
    message = str(error.value)
    assert "\n" not in message
    body = files.private.read_text().splitlines()[1]
    for text in (message, caplog.text):
        assert PASSWORD.decode() not in text and "tried 12345" not in text
        assert body not in text and str(secret) not in text and f"{secret:x}" not in text


def test_an_existing_key_file_is_never_overwritten(tmp_path: Path) -> None:
    key = tmp_path / "signer.key"
    key.write_bytes(b"the only copy of last year's key")
    with pytest.raises(KeyExists) as error:
        generate_key_pair(tmp_path / "signer", PASSWORD)
    assert str(error.value) == (
        f"{key} already exists: osbuilder never overwrites a key file; choose another name"
    )
    assert key.read_bytes() == b"the only copy of last year's key"
    assert os.listdir(tmp_path) == ["signer.key"]  # and no .pub without its key


def test_an_existing_public_key_or_a_dangling_link_is_in_the_way_too(tmp_path: Path) -> None:
    (tmp_path / "a.pub").write_bytes(b"someone's")
    (tmp_path / "b.key").symlink_to(tmp_path / "nowhere")
    for name in ("a", "b"):
        with pytest.raises(KeyExists):
            generate_key_pair(tmp_path / name, PASSWORD)
    assert sorted(os.listdir(tmp_path)) == ["a.pub", "b.key"]
    assert not (tmp_path / "nowhere").exists()


def test_a_file_made_meanwhile_is_not_overwritten_and_the_pair_is_taken_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process makes NAME.pub after the check: the key already linked into place
    goes again, and the other's file stays."""
    checked = keys.check_key_files_free

    def check_then_someone_writes(files: keys.KeyFiles) -> None:
        checked(files)
        files.public.write_bytes(b"theirs")

    monkeypatch.setattr(keys, "check_key_files_free", check_then_someone_writes)
    with pytest.raises(KeyExists, match=r"signer\.pub already exists"):
        generate_key_pair(tmp_path / "signer", PASSWORD)
    assert os.listdir(tmp_path) == ["signer.pub"]
    assert (tmp_path / "signer.pub").read_bytes() == b"theirs"


def test_modes_the_key_0600_whatever_the_umask(tmp_path: Path) -> None:
    umask = os.umask(0)
    try:
        files = generate_key_pair(tmp_path / "signer", PASSWORD)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(files.private.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.public.stat().st_mode) == 0o666  # the umask's to restrict
    umask = os.umask(0o022)
    try:
        files = generate_key_pair(tmp_path / "other", PASSWORD)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(files.private.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.public.stat().st_mode) == 0o644


def test_a_failed_write_leaves_no_file_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync, calls = os.fsync, []

    def disk_full_on_the_second_file(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", disk_full_on_the_second_file)
    with pytest.raises(WriteFailed) as error:
        generate_key_pair(tmp_path / "signer", PASSWORD)
    assert str(error.value).startswith(
        f"{tmp_path / 'signer.pub'}: cannot write: No space left on device (free some space"
    )
    assert os.listdir(tmp_path) == []


def test_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(WriteFailed) as error:
        generate_key_pair(tmp_path / "missing" / "signer", PASSWORD)
    assert str(error.value) == (
        f"{tmp_path / 'missing' / 'signer.key'}: cannot write: No such file or directory "
        f"({tmp_path / 'missing'} does not exist)"
    )


def seal(document: dict[str, object], block: str = "ENCRYPTED SIGSTORE PRIVATE KEY") -> bytes:
    return pem_encode(block, json.dumps(document))


def cosign_document() -> dict[str, object]:
    return sealed_document((COSIGN / "cosign-keys-test-sigstore.key").read_bytes())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"", r"expected a cosign private key \(a PEM block ENCRYPTED SIGSTORE PRIVATE KEY\)"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "found a PUBLIC KEY"),
        (
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            r"found a PRIVATE KEY block \(cosign import-key-pair converts one\)",
        ),
        (
            b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n!!\n"
            b"-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
            "its PEM block is not base64",
        ),
        (pem_encode("ENCRYPTED SIGSTORE PRIVATE KEY", b"not json"), "not valid JSON"),
        (pem_encode("ENCRYPTED SIGSTORE PRIVATE KEY", b"[]"), "expected a JSON object"),
        (
            pem_encode("ENCRYPTED SIGSTORE PRIVATE KEY", b'{"kdf":{},"kdf":{}}'),
            "duplicate key 'kdf'",
        ),
        (b"x" * (keys.MAX_PRIVATE_KEY_FILE_SIZE + 1), "found more"),
    ],
)
def test_what_is_not_a_cosign_key_is_one_clear_line(text: bytes, message: str) -> None:
    with pytest.raises(InvalidPrivateKey, match=message) as error:
        decrypt_private_key(text, b"", "signer.key")
    assert str(error.value).startswith("signer.key: ")
    assert "\n" not in str(error.value)


def test_expensive_or_odd_scrypt_parameters_are_refused_before_any_work() -> None:
    document = cosign_document()
    kdf = document["kdf"]
    assert isinstance(kdf, dict)
    kdf["params"] = {"N": 1 << 30, "r": 8, "p": 1}  # a gigabyte-and-hours derivation
    with pytest.raises(InvalidPrivateKey) as error:
        decrypt_private_key(seal(document), b"hello", "signer.key")
    assert str(error.value) == (
        "signer.key: unsupported scrypt parameters N=1073741824 r=8 p=1 (cosign's are "
        "N=32768, 65536 or 131072 with r=8 p=1)"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["kdf"].update(name="argon2"), "kdf.name: expected 'scrypt'"),
        (lambda d: d["cipher"].update(name="aes"), "cipher.name: expected 'nacl/secretbox'"),
        (lambda d: d["cipher"].update(nonce="AAAA"), "cipher.nonce: expected 24 bytes, found 3"),
        (lambda d: d["kdf"].update(salt=1), "kdf.salt: missing or not a string"),
        (lambda d: d["kdf"]["params"].update(N=True), "kdf.params.N: missing or not an integer"),
        (lambda d: d.pop("ciphertext"), "ciphertext: missing or not a string"),
        (lambda d: d.update(ciphertext="%%"), "ciphertext: not base64"),
    ],
)
def test_a_malformed_sealed_document_names_the_field(change: object, message: str) -> None:
    document = cosign_document()
    change(document)  # type: ignore[operator]
    with pytest.raises(InvalidPrivateKey, match=re.escape(message)):
        decrypt_private_key(seal(document), b"hello", "signer.key")


def test_a_missing_key_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(InvalidPrivateKey) as error:
        load_private_key(tmp_path / "signer.key", b"")
    assert str(error.value) == (
        f"{tmp_path / 'signer.key'}: cannot read the private key: No such file or directory"
    )


def test_the_password_comes_from_the_variable_even_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_VARIABLE, "s3cret")
    assert key_password(prompt_twice=True) == b"s3cret"
    monkeypatch.setenv(PASSWORD_VARIABLE, "")
    assert key_password(prompt_twice=True) == b""


def test_without_the_variable_or_a_terminal_the_error_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(PASSWORD_VARIABLE, raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(UserError) as error:
        key_password(prompt_twice=False)
    assert str(error.value) == (
        "no password for the private key: set OSBUILDER_KEY_PASSWORD (it may be empty), "
        "or run on a terminal to be asked"
    )


@pytest.mark.parametrize(
    ("typed", "twice", "result"),
    [
        (["pw"], False, b"pw"),
        (["pw", "pw"], True, b"pw"),
        (["pw", "wp"], True, "the two passwords entered differ"),
        ([], False, "no password entered for the private key"),
    ],
)
def test_on_a_terminal_the_password_is_asked(
    monkeypatch: pytest.MonkeyPatch, typed: list[str], twice: bool, result: bytes | str
) -> None:
    monkeypatch.delenv(PASSWORD_VARIABLE, raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    prompts: list[str] = []

    def getpass(prompt: str) -> str:
        prompts.append(prompt)
        if not typed:
            raise EOFError
        return typed.pop(0)

    monkeypatch.setattr("getpass.getpass", getpass)
    if isinstance(result, bytes):
        assert key_password(prompt_twice=twice) == result
        assert prompts == [PASSWORD_PROMPT, PASSWORD_PROMPT_AGAIN][: 2 if twice else 1]
    else:
        with pytest.raises(UserError, match=result):
            key_password(prompt_twice=twice)


def test_the_key_generate_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(PASSWORD_VARIABLE, "from the environment")
    prefix = tmp_path / "release"
    assert main(["key", "generate", str(prefix)]) == 0
    out, err = capsys.readouterr()
    assert out == f"private key: {prefix}.key\npublic key: {prefix}.pub\n"
    assert err == ""
    key = load_private_key(Path(f"{prefix}.key"), b"from the environment")
    assert same_public_key(key, Path(f"{prefix}.pub"))
    assert stat.S_IMODE(Path(f"{prefix}.key").stat().st_mode) == 0o600

    before = Path(f"{prefix}.key").read_bytes()
    assert main(["key", "generate", str(prefix)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"osbuilder: {prefix}.key already exists: osbuilder never overwrites a key file; "
        "choose another name\n"
    )
    assert Path(f"{prefix}.key").read_bytes() == before


def test_the_key_generate_command_without_a_password_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(PASSWORD_VARIABLE, raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["key", "generate", str(tmp_path / "signer")]) == 1
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "set OSBUILDER_KEY_PASSWORD" in err
    assert os.listdir(tmp_path) == []
