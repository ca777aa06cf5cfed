"""`osbuilder key generate`: a sigstore key pair in cosign's files, to sign images with."""

from __future__ import annotations

import argparse
from pathlib import Path

from osbuilder.errors import ExitCode


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    key = sub.add_parser(
        "key",
        parents=[common],
        help="make signing keys",
        description="Make the keys osbuilder signs images with. They are cosign's: cosign "
        "signs and verifies with them too, and a policy's sigstoreSigned keyPath names the "
        "public one.",
    )
    key_sub = key.add_subparsers(title="key commands", metavar="COMMAND")
    generate = key_sub.add_parser(
        "generate",
        parents=[common],
        help="make a key pair: NAME.key (private, encrypted) and NAME.pub",
        description="Make an ECDSA P-256 key pair as `cosign generate-key-pair` does: "
        "NAME.key, the private key encrypted with a password (scrypt and NaCl secretbox; "
        "mode 0600), and NAME.pub, the public key. The password is "
        "$OSBUILDER_KEY_PASSWORD if set (it may be empty), else asked twice on the "
        "terminal. Existing files are never overwritten.",
    )
    generate.add_argument(
        "name", type=Path, metavar="NAME", help="the files' path without .key and .pub"
    )
    generate.set_defaults(handler=_generate)


def _generate(args: argparse.Namespace) -> int:
    from osbuilder.trust.keys import (
        check_key_files_free,
        generate_key_pair,
        key_files,
        key_password,
    )

    # Before the password is asked: typing it twice for nothing would be a poor answer.
    check_key_files_free(key_files(args.name))
    files = generate_key_pair(args.name, key_password(prompt_twice=True))
    print(f"private key: {files.private}")
    print(f"public key: {files.public}")
    return ExitCode.OK
