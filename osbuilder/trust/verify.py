"""Applying the signature policy to an image, as skopeo applies it on every copy.

The requirements of the image's most specific scope must all be satisfied:
`insecureAcceptAnything` always is, `reject` never, and `signedBy` or
`sigstoreSigned` by at least one signature that verifies with one of the
requirement's keys, signs the image's manifest digest and claims an identity the
requirement's `signedIdentity` accepts for the reference pulled.

Which digest a signature must sign: the digest the reference resolves to (for a
multi-platform image, its index, which pins every platform's manifest by digest), as
containers/image checks it; or else the digest of the platform manifest osbuilder
takes from that index, as `cosign sign --recursive` signs each one. A signature of
some other platform's manifest covers nothing osbuilder uses.

Signatures are looked for in the store first and then where they are published
(sigstore: the registry's `sha256-HEX.sig` tag; simple: the lookaside registries.d
names), and kept in the store. An acceptance is recorded with a fingerprint of the
requirements and their keys, so that the next build, offline or not, need not verify
again, and a different policy verifies afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from osbuilder.errors import UserError
from osbuilder.oci.reference import ImageReference, parse_reference
from osbuilder.oci.store import ContentStore
from osbuilder.trust.payload import InvalidSignature, SignedPayload
from osbuilder.trust.policyfile import accepts_anything, default_policy_path, read_policy_file

# The policy's models (pydantic), registries.d and the verifiers are imported when a
# policy needs them: under a policy that accepts anything, a pull pays for none of them.
if TYPE_CHECKING:
    from osbuilder.oci.registry import RegistryClient
    from osbuilder.trust.policy import Policy, Requirement, SignedBy, SigstoreSigned
    from osbuilder.trust.registries import RegistriesConfig
    from osbuilder.trust.sigstore import SigstoreKey
    from osbuilder.trust.simplesign import OpenPGPKeys
    from osbuilder.trust.stored import SigstoreSignature

log = logging.getLogger(__name__)


class SignatureRefused(UserError):
    """The policy's requirements for an image are not met."""


@dataclass
class TrustConfig:
    """The policy and registries.d that judge images, and where they came from.

    The policy is validated when first needed: `osbuilder pull` judges an image while
    its layers download, and that is where the validator's start-up then goes.
    """

    source: Path | None  # the policy file; None: there is none
    raw: bytes | None  # its bytes; None: every requirement in it is insecureAcceptAnything
    registries_d: Path | None = None  # None: the default registries.d
    _policy: Policy | None = None
    _registries: RegistriesConfig | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def describe(self) -> str:
        return str(self.source) if self.source else "no policy file"

    @property
    def policy(self) -> Policy | None:
        """The validated policy; None when it accepts anything. PolicyError if invalid."""
        if self.raw is None or self.source is None:
            return None
        with self._lock:
            if self._policy is None:
                from osbuilder.trust.policy import parse_policy

                self._policy = parse_policy(self.raw, self.source)
            return self._policy

    @property
    def registries(self) -> RegistriesConfig:
        with self._lock:
            if self._registries is None:
                from osbuilder.trust.registries import load_registries_d

                self._registries = load_registries_d(self.registries_d)
            return self._registries

    def requirements(self, ref: ImageReference) -> list[Requirement]:
        """The requirements of `ref`'s scope; [] when the policy accepts anything."""
        policy = self.policy
        if policy is None:
            return []
        from osbuilder.trust.policy import requirements_for

        return requirements_for(policy, ref)


def load_trust(policy: Path | None = None, registries_d: Path | None = None) -> TrustConfig:
    """`--policy FILE` (else the user's or the system's policy.json) and registries.d.

    With no policy file anywhere, and none named, every image is accepted (as the
    policy.json Debian's containers-common installs says): a build needs no signatures
    unless a policy or the spec's `trust:` asks for them.
    """
    path = policy or default_policy_path()
    if policy is None and not path.exists():
        log.info("no signature policy file; accepting images unsigned")
        return TrustConfig(None, None, registries_d)
    raw = read_policy_file(path)
    return TrustConfig(path, None if accepts_anything(raw) else raw, registries_d)


def signature_required(requirements: Sequence[Requirement]) -> bool:
    """Whether these requirements need a signature (rather than accept or reject all)."""
    return any(r.type in ("signedBy", "sigstoreSigned") for r in requirements)


@dataclass(frozen=True)
class TrustedNames:
    """The spec's `trust:` section: images (`image:`, a repository, or one tag or digest
    of it) and namespaces (`org:`, every repository under them) whose signature the
    policy must require. Names are normalised as references are: `redis` is
    docker.io/library/redis, org `linuxkit` is docker.io/linuxkit."""

    images: tuple[str, ...] = ()  # normalised: a repository, or one tag or digest of it
    orgs: tuple[str, ...] = ()  # normalised namespace prefixes, e.g. docker.io/linuxkit

    @classmethod
    def of(cls, images: Sequence[str], orgs: Sequence[str]) -> TrustedNames:
        """From the spec's lists (already checked to parse: see spec/fieldtypes.py)."""
        return cls(tuple(trusted_image(i) for i in images), tuple(org_prefix(o) for o in orgs))

    def covers(self, ref: ImageReference) -> bool:
        from osbuilder.trust.identity import policy_form

        intended = policy_form(ref)
        named = {intended.name, str(intended)}
        if ref.tag is not None:  # as the spec names it, pinned by its lock or not
            named.add(f"{ref.name}:{ref.tag}")
        return not named.isdisjoint(self.images) or any(
            intended.name.startswith(org + "/") for org in self.orgs
        )


def trusted_image(text: str) -> str:
    """`text` normalised: `redis` is docker.io/library/redis, `redis:7` its tag 7."""
    ref = parse_reference(text)
    named_tag = "@" not in text and text.rfind(":") > text.rfind("/")
    if ref.digest is not None:
        return f"{ref.name}@{ref.digest}"
    return f"{ref.name}:{ref.tag}" if named_tag else ref.name


def org_prefix(text: str) -> str:
    """A `trust.org` entry normalised: `linuxkit` is docker.io/linuxkit, `library` is
    docker.io/library, `ghcr.io/acme` stays, and a bare registry (`ghcr.io`) is all of it.
    InvalidReference when it cannot begin an image name."""
    first = text.split("/", 1)[0]
    if "/" not in text and ("." in first or ":" in first or first == "localhost"):
        return parse_reference(f"{text}/x").registry
    probe = parse_reference(f"{text}/x")
    return probe.name.removesuffix("/x")


@dataclass
class Verifier:
    """Judges images pulled into one store, fetching signatures with `client` (None:
    offline, only what the store and file:// lookasides hold)."""

    trust: TrustConfig
    store: ContentStore
    client: RegistryClient | None
    covered: TrustedNames | None = None  # the spec's `trust:`: signatures it makes mandatory
    _fingerprints: dict[int, str] = field(default_factory=dict)

    def with_client(self, client: RegistryClient | None) -> Verifier:
        """This verifier, fetching signatures with `client` (None: none fetched)."""
        return Verifier(self.trust, self.store, client, self.covered, self._fingerprints)

    def check(self, ref: ImageReference, top_digest: str, manifest_digest: str) -> bool:
        """Apply the policy to the image `ref` resolved to `top_digest` (and, for this
        platform, `manifest_digest`); returns whether signatures were verified.
        SignatureRefused when the policy's requirements are not met."""
        requirements = self.trust.requirements(ref)
        if any(r.type == "reject" for r in requirements):
            raise SignatureRefused(
                f"{ref.familiar()}: the signature policy ({self.trust.describe()}) rejects "
                "this image"
            )
        if not signature_required(requirements):
            if self.covered is not None and self.covered.covers(ref):
                raise SignatureRefused(
                    f"trust requires a signature for {ref.name}, but the policy "
                    f"({self.trust.describe()}) accepts anything there: add a signedBy or "
                    "sigstoreSigned requirement"
                )
            return False
        from osbuilder.trust.identity import policy_form
        from osbuilder.trust.policy import SignedBy, SigstoreSigned

        identity = str(policy_form(ref))
        fingerprint = self._fingerprint(requirements)
        from osbuilder.trust.stored import Acceptance, Acceptances

        acceptances = Acceptances(self.store)
        accepted = Acceptance(manifest_digest, identity, fingerprint)
        if acceptances.accepted(top_digest, accepted):
            return True
        digests = list(dict.fromkeys([top_digest, manifest_digest]))
        for requirement in requirements:
            if isinstance(requirement, SignedBy | SigstoreSigned):
                self._satisfy(requirement, ref, digests)
        acceptances.record(top_digest, accepted)
        return True

    # --- one requirement --------------------------------------------------------------

    def _satisfy(
        self, requirement: SignedBy | SigstoreSigned, ref: ImageReference, digests: list[str]
    ) -> None:
        from osbuilder.trust.identity import matches, policy_form

        kind = "simple (OpenPGP)" if requirement.type == "signedBy" else "sigstore"
        problems: list[str] = []
        found = 0
        for digest in digests:
            for signed, problem in self._signatures(requirement, ref, digest):
                found += 1
                if problem is not None:
                    problems.append(problem)
                    continue
                assert signed is not None
                if matches(requirement.signed_identity, ref, signed.docker_reference):
                    return
                problems.append(
                    f"the signature is for {signed.docker_reference}, which the policy's "
                    f"signedIdentity ({requirement.signed_identity.type}) does not accept "
                    f"for {policy_form(ref)}"
                )
        if not found:
            where = self._where(requirement, ref)
            raise SignatureRefused(
                f"{ref.familiar()}: no {kind} signature found ({where}); the policy "
                f"({self.trust.describe()}) requires one"
            )
        raise SignatureRefused(
            f"{ref.familiar()}: no {kind} signature satisfies the policy "
            f"({self.trust.describe()}): " + "; ".join(dict.fromkeys(problems))
        )

    def _signatures(
        self, requirement: SignedBy | SigstoreSigned, ref: ImageReference, digest: str
    ) -> Iterator[tuple[SignedPayload | None, str | None]]:
        """Each signature of `digest`, verified: (its payload, None) or (None, why not).
        The store's come first; only if none of them will do are more fetched."""
        from osbuilder.trust.policy import SignedBy

        if isinstance(requirement, SignedBy):
            from osbuilder.trust.simplesign import verify_simple

            keys = self._openpgp_keys(requirement)
            for signature in self._simple_signatures(ref, digest):
                try:
                    yield verify_simple(signature, keys, digest).payload, None
                except InvalidSignature as exc:
                    yield None, str(exc)
        else:
            from osbuilder.trust.sigstore import verify_sigstore

            sigstore_keys = self._sigstore_keys(requirement)
            for layer in self._sigstore_signatures(ref, digest):
                try:
                    payload, _ = verify_sigstore(
                        layer.payload, layer.signature, sigstore_keys, digest
                    )
                    yield payload, None
                except InvalidSignature as exc:
                    yield None, str(exc)

    def _simple_signatures(self, ref: ImageReference, digest: str) -> Iterator[bytes]:
        from osbuilder.trust import fetch, stored

        held = stored.simple_signatures(self.store, ref, digest)
        yield from held
        fetch.fetch_simple(self.store, self.client, self.trust.registries, ref, digest)
        yield from (s for s in stored.simple_signatures(self.store, ref, digest) if s not in held)

    def _sigstore_signatures(self, ref: ImageReference, digest: str) -> Iterator[SigstoreSignature]:
        from osbuilder.trust import fetch, stored

        held = stored.sigstore_signatures(self.store, ref, digest)
        yield from held
        if self.client is not None:
            fetch.fetch_sigstore(self.store, self.client, ref, digest)
            yield from (
                s for s in stored.sigstore_signatures(self.store, ref, digest) if s not in held
            )

    def _where(self, requirement: SignedBy | SigstoreSigned, ref: ImageReference) -> str:
        if requirement.type == "signedBy":
            from osbuilder.trust.registries import lookaside_for

            lookaside = lookaside_for(self.trust.registries, ref).read_url
            return f"looked in the content store and the lookaside {lookaside}"
        if self.client is None:
            return "looked in the content store only; --pull looks in the registry too"
        return "looked in the content store and for the registry's sha256-HEX.sig tag"

    # --- keys -------------------------------------------------------------------------

    def _openpgp_keys(self, requirement: SignedBy) -> list[OpenPGPKeys]:
        from osbuilder.trust.simplesign import load_keyring_file, openpgp_keys

        if requirement.key_data is not None:
            return [openpgp_keys(requirement.key_data, "the policy's keyData")]
        return [load_keyring_file(Path(p)) for p in _key_paths(requirement)]

    def _sigstore_keys(self, requirement: SigstoreSigned) -> list[SigstoreKey]:
        from osbuilder.trust.sigstore import load_public_key, load_public_key_file

        if requirement.key_data is not None:
            return [load_public_key(requirement.key_data, "the policy's keyData")]
        if requirement.key_datas is not None:
            return [
                load_public_key(data, f"the policy's keyDatas[{n}]")
                for n, data in enumerate(requirement.key_datas)
            ]
        return [load_public_key_file(Path(p)) for p in _key_paths(requirement)]

    def _fingerprint(self, requirements: Sequence[Requirement]) -> str:
        """What an acceptance is recorded under: the requirements and the bytes of every
        key file they name (a key file replaced is a different policy)."""
        key = id(requirements)
        if key not in self._fingerprints:
            from osbuilder.trust.policy import SignedBy, SigstoreSigned

            described = []
            for requirement in requirements:
                entry = requirement.model_dump(mode="json", by_alias=True, exclude_none=True)
                if isinstance(requirement, SignedBy | SigstoreSigned):
                    entry["keyFiles"] = [_file_digest(Path(p)) for p in _key_paths(requirement)]
                described.append(entry)
            text = json.dumps(described, sort_keys=True).encode()
            self._fingerprints[key] = "sha256:" + hashlib.sha256(text).hexdigest()
        return self._fingerprints[key]


def _key_paths(requirement: SignedBy | SigstoreSigned) -> list[str]:
    if requirement.key_path is not None:
        return [requirement.key_path]
    return list(requirement.key_paths or [])


def _file_digest(path: Path) -> str:
    try:
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "unreadable"  # (loading the key says why, if it comes to that)
