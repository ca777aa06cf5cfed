"""signedIdentity: whether the identity a signature claims fits the image being pulled.

The semantics are containers/image's (signature/policy_reference_match.go), so a
policy means the same to osbuilder as to skopeo and podman:

- matchExact: the signature names exactly the image's tag or digest reference;
- matchRepoDigestOrExact (the default): exact for a tagged image, the same
  repository (any tag) for an image pulled by digest;
- matchRepository: the same repository, any tag;
- exactReference / exactRepository: as the two above, against a fixed reference
  named in the policy instead of the image's own;
- remapIdentity: the image's name with `prefix` replaced by `signedPrefix`, then
  matchRepoDigestOrExact (a mirror whose images were signed under their origin's name).

An image reference with both a tag and a digest is judged as its digest form: the
digest is what osbuilder pulls (containers/image refuses such references outright).
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from osbuilder.oci.reference import ImageReference, InvalidReference, parse_reference


class PolicyModel(BaseModel):
    """Base of the policy's models: unknown keys are errors and values are never coerced,
    as containers/image parses policy.json ("fairly strict")."""

    # (by the JSON's key only: a "key_path" in the file is an unknown field)
    model_config: ClassVar[ConfigDict] = ConfigDict(extra="forbid", frozen=True, strict=True)


class MatchRepoDigestOrExact(PolicyModel):
    type: Literal["matchRepoDigestOrExact"] = "matchRepoDigestOrExact"


class MatchRepository(PolicyModel):
    type: Literal["matchRepository"] = "matchRepository"


class MatchExact(PolicyModel):
    type: Literal["matchExact"] = "matchExact"


def _parses(value: str) -> str:
    try:
        parse_reference(value)
    except InvalidReference as exc:
        raise ValueError(str(exc)) from None
    return value


def _tagged_or_digested(value: str) -> str:
    if _is_name_only(value):
        raise ValueError(f"{value!r} has neither a tag nor a digest")
    return value


#: A reference or repository a policy names itself: refused when loaded unless it parses.
PolicyReference = Annotated[str, AfterValidator(_parses)]


class ExactReference(PolicyModel):
    type: Literal["exactReference"] = "exactReference"
    docker_reference: Annotated[PolicyReference, AfterValidator(_tagged_or_digested)] = Field(
        alias="dockerReference"
    )


class ExactRepository(PolicyModel):
    type: Literal["exactRepository"] = "exactRepository"
    docker_repository: PolicyReference = Field(alias="dockerRepository")


class RemapIdentity(PolicyModel):
    type: Literal["remapIdentity"] = "remapIdentity"
    prefix: str
    signed_prefix: str = Field(alias="signedPrefix")

    @field_validator("prefix", "signed_prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        if not _REMAP_PREFIX.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a registry host[:port], namespace or repository "
                "in the fully expanded form (e.g. docker.io/library)"
            )
        return value


SignedIdentity = Annotated[
    MatchRepoDigestOrExact
    | MatchRepository
    | MatchExact
    | ExactReference
    | ExactRepository
    | RemapIdentity,
    Field(discriminator="type"),
]

IDENTITY_TYPES: dict[str, type[PolicyModel]] = {
    "matchRepoDigestOrExact": MatchRepoDigestOrExact,
    "matchRepository": MatchRepository,
    "matchExact": MatchExact,
    "exactReference": ExactReference,
    "exactRepository": ExactRepository,
    "remapIdentity": RemapIdentity,
}

# A remap prefix is a bare host[:port], or host[:port]/path: containers/image's
# remapIdentityDomainRegexp and remapIdentityNameRegexp+DomainPrefixRegexp.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REMAP_PREFIX = re.compile(rf"{_DOMAIN}(?:/{_PATH_COMPONENT})*")


def matches(
    identity: SignedIdentity, image_reference: ImageReference, signature_docker_reference: str
) -> bool:
    """Whether a signature claiming `signature_docker_reference` is acceptable, under
    `identity`, for the image pulled as `image_reference`. An unparseable claim never is."""
    signature = _parse_claim(signature_docker_reference)
    if signature is None:
        return False
    signature_name_only = _is_name_only(signature_docker_reference)
    intended = policy_form(image_reference)
    match identity:
        case MatchExact():
            return not signature_name_only and str(signature) == str(intended)
        case MatchRepoDigestOrExact():
            return _repo_digest_or_exact(intended, signature, signature_name_only)
        case MatchRepository():
            return signature.name == intended.name
        case ExactReference():
            expected = _parse_claim(identity.docker_reference)
            # (the policy's reference cannot be name-only: the model refuses that)
            return (
                expected is not None and not signature_name_only and str(signature) == str(expected)
            )
        case ExactRepository():
            expected = _parse_claim(identity.docker_repository)
            return expected is not None and signature.name == expected.name
        case RemapIdentity():
            remapped = _remap(identity, intended)
            return remapped is not None and _repo_digest_or_exact(
                remapped, signature, signature_name_only
            )


def policy_form(reference: ImageReference) -> ImageReference:
    """The reference as policies see it: with a digest, the tag is dropped (the digest is
    what is pulled, and containers/image has no tag-and-digest docker references)."""
    if reference.digest is not None and reference.tag is not None:
        return ImageReference(reference.registry, reference.repository, None, reference.digest)
    return reference


def _repo_digest_or_exact(
    intended: ImageReference, signature: ImageReference, signature_name_only: bool
) -> bool:
    if signature_name_only:
        return False  # a signature must name a tag or digest; no default tag is assumed
    if intended.digest is None:
        return str(signature) == str(intended)
    # Pulled by digest: the manifest's digest is checked against the signature's own
    # digest claim elsewhere, so here only the repository must agree.
    return signature.name == intended.name


def _remap(identity: RemapIdentity, intended: ImageReference) -> ImageReference | None:
    """`intended` with `prefix` replaced by `signedPrefix` when its name starts with it
    (at a '/' boundary: host:port must match exactly); None when the result is not a
    reference in the fully expanded form."""
    name, prefix = intended.name, identity.prefix
    if not (name == prefix or name.startswith(prefix + "/")):
        return intended
    rewritten = identity.signed_prefix + str(intended)[len(prefix) :]
    remapped = _parse_claim(rewritten)
    # As reference.ParseNamed: a result that normalises differently (docker.io/busybox)
    # is not a valid expanded name, and matches nothing.
    if remapped is None or str(remapped) != rewritten:
        return None
    return remapped


def _parse_claim(text: str) -> ImageReference | None:
    try:
        return parse_reference(text)
    except InvalidReference:
        return None


def _is_name_only(text: str) -> bool:
    """Whether a reference's text names neither a tag nor a digest (parse_reference would
    add `:latest`, which a signature's claim must not get implicitly)."""
    return "@" not in text and text.rfind(":") <= text.rfind("/")
