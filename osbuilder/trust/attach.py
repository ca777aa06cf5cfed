"""Signing an image of the content store, and keeping the signature beside it.

`--sign-key KEY` (a cosign key) adds a sigstore signature to the image's `.sig`
attachment, exactly the manifest cosign would push; `--sign-by FPR` (an OpenPGP key in
gpg's keyring) adds a simple signature to its `.simplesig` attachment (stored.py). The
payload names the image as the store names it (`docker.io/osbuilder/redis:TAG`), which
a policy's default signedIdentity, matchRepoDigestOrExact, accepts for that reference.
Signing twice with the same key adds nothing. `push` then carries the signatures where
they are published (the registry, the lookaside); a build verifies them from the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from osbuilder.errors import UserError
from osbuilder.oci import mediatypes
from osbuilder.oci.model import Descriptor
from osbuilder.oci.reference import ImageReference, parse_reference
from osbuilder.oci.store import ContentStore
from osbuilder.trust.keys import PrivateKey, key_password, load_private_key
from osbuilder.trust.payload import COSIGN_TYPE, SIMPLE_SIGNING_TYPE
from osbuilder.trust.sign import (
    append_sigstore_signature,
    payload_bytes,
    sign_sigstore,
    sign_simple,
    sigstore_signature_manifest,
)
from osbuilder.trust.stored import add_simple_signatures, sigstore_name


@dataclass(frozen=True)
class Signer:
    """The keys `--sign-key` and `--sign-by` name (either, both, or neither)."""

    sigstore_key: PrivateKey | None = None
    openpgp_fingerprint: str | None = None
    gnupg_home: Path | None = None  # None: gpg's own ($GNUPGHOME, ~/.gnupg)

    def __bool__(self) -> bool:
        return self.sigstore_key is not None or self.openpgp_fingerprint is not None


def load_signer(sign_key: Path | None, sign_by: str | None) -> Signer:
    """The signer of the command line; the key's password from $OSBUILDER_KEY_PASSWORD or
    the terminal, asked once, before any work."""
    key = None
    if sign_key is not None:
        key = load_private_key(sign_key, key_password(prompt_twice=False))
    return Signer(key, sign_by)


@dataclass(frozen=True)
class Signed:
    """What signing one image did: how many signatures were added (0: it had them)."""

    reference: str
    digest: str
    sigstore: int = 0
    simple: int = 0


def sign_stored(
    store: ContentStore, name: str, signer: Signer, *, identity_ref: ImageReference | None = None
) -> Signed:
    """Sign the image the store names `name` with each of `signer`'s keys (as
    `identity_ref`, default `name`)."""
    ref = parse_reference(name)
    with store.using():
        descriptor = store.lookup(str(ref))
        if descriptor is None:
            raise UserError(f"{ref.familiar()} is not in the content store: pull or build it first")
        return sign_digest(store, ref, descriptor.digest, signer, identity_ref=identity_ref)


def sign_digest(
    store: ContentStore,
    ref: ImageReference,
    digest: str,
    signer: Signer,
    *,
    identity_ref: ImageReference | None = None,
) -> Signed:
    """Sign `digest`, attaching the signatures in `ref`'s repository, as the image named
    `identity_ref` (default: `ref`; a push signs the name it publishes under)."""
    named = identity_ref or ref
    identity = f"{named.registry}/{named.repository}" + (
        f":{named.tag}" if named.tag else f"@{digest}"
    )
    sigstore = simple = 0
    if signer.sigstore_key is not None:
        sigstore = _add_sigstore(store, ref, digest, identity, signer.sigstore_key)
    if signer.openpgp_fingerprint is not None:
        payload = payload_bytes(identity, digest, SIMPLE_SIGNING_TYPE)
        signature = sign_simple(payload, signer.openpgp_fingerprint, gnupg_home=signer.gnupg_home)
        simple = add_simple_signatures(store, ref, digest, [signature])
    return Signed(identity, digest, sigstore, simple)


def _add_sigstore(
    store: ContentStore, ref: ImageReference, digest: str, identity: str, key: PrivateKey
) -> int:
    payload = payload_bytes(identity, digest, COSIGN_TYPE)
    signature = sign_sigstore(payload, key)
    name = sigstore_name(ref, digest)
    held = store.lookup(name)
    if held is None:
        made = sigstore_signature_manifest([(payload, signature)])
    else:
        manifest = store.read_blob(held.digest)
        config = store.read_blob(store.manifest(held.digest).config.digest)
        appended = append_sigstore_signature(
            manifest, config, payload, signature, key=key.public_key()
        )
        if appended is None:
            return 0  # signed by this key already
        made = appended
    for blob in (made.config, *made.layers):
        store.put_bytes(blob)
    store.put_bytes(made.manifest, made.digest)
    store.tag(name, Descriptor(mediatypes.OCI_MANIFEST, made.digest, len(made.manifest)))
    return 1
