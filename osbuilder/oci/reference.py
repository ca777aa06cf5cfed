"""Image references, parsed and normalised the way Docker does.

`redis` is `docker.io/library/redis:latest`; `host:port/repo:tag`,
`repo@sha256:...` and `repo:tag@sha256:...` (the digest wins when pulling).
The grammar is the one of distribution/reference.
"""

from __future__ import annotations

import re

from msgspec import Struct

from osbuilder.errors import UserError

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
_LEGACY_REGISTRIES = {"index.docker.io", "registry-1.docker.io"}
_MAX_NAME_LENGTH = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = re.compile(rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class InvalidReference(UserError):
    """An image reference that does not follow the reference grammar."""


class ImageReference(Struct, frozen=True):
    """A fully qualified image reference: registry, repository, tag and/or digest."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """`registry/repository`, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def pinned(self) -> bool:
        """True when the reference names content by digest."""
        return self.digest is not None

    def with_digest(self, digest: str) -> ImageReference:
        return ImageReference(self.registry, self.repository, self.tag, digest)

    def familiar(self) -> str:
        """The short form a user would type (`redis:7` for docker.io/library/redis:7)."""
        name = self.name
        if self.registry == DEFAULT_REGISTRY:
            name = self.repository.removeprefix("library/")
        return name + self._suffix()

    def _suffix(self) -> str:
        suffix = f":{self.tag}" if self.tag else ""
        return suffix + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + self._suffix()


def parse_reference(text: str) -> ImageReference:
    """Parse and normalise `text`; raise InvalidReference saying what is wrong."""
    if not text:
        raise InvalidReference("empty image reference")
    if text != text.strip() or any(c.isspace() for c in text):
        raise InvalidReference(f"image reference {text!r} contains whitespace")

    remainder, digest = _split_digest(text)
    name, tag = _split_tag(text, remainder)
    registry, repository = _split_registry(text, name)

    if len(name) > _MAX_NAME_LENGTH:
        raise InvalidReference(f"image name {name!r} is longer than {_MAX_NAME_LENGTH} characters")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageReference(registry, repository, tag, digest)


def _split_digest(text: str) -> tuple[str, str | None]:
    if "@" not in text:
        return text, None
    remainder, _, digest = text.partition("@")
    if not _DIGEST.fullmatch(digest):
        raise InvalidReference(
            f"image reference {text!r} has an invalid digest {digest!r} "
            "(expected ALGORITHM:HEX, e.g. sha256:<64 hex digits>)"
        )
    algorithm, _, hex_part = digest.partition(":")
    if algorithm == "sha256" and not _SHA256_HEX.fullmatch(hex_part):
        raise InvalidReference(
            f"image reference {text!r}: a sha256 digest is 64 lowercase hex digits"
        )
    return remainder, digest


def _split_tag(text: str, remainder: str) -> tuple[str, str | None]:
    # A ':' after the last '/' separates the tag; one before it belongs to host:port.
    last_slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon <= last_slash:
        return remainder, None
    name, tag = remainder[:colon], remainder[colon + 1 :]
    if not _TAG.fullmatch(tag):
        raise InvalidReference(
            f"image reference {text!r} has an invalid tag {tag!r} "
            "(letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"
        )
    return name, tag


def _split_registry(text: str, name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not _DOMAIN.fullmatch(first):
            raise InvalidReference(f"image reference {text!r} has an invalid registry {first!r}")
        registry, path = first, rest
    else:
        registry, path = DEFAULT_REGISTRY, name
    if registry in _LEGACY_REGISTRIES:
        registry = DEFAULT_REGISTRY
    if not path:
        raise InvalidReference(f"image reference {text!r} has no repository name")
    for component in path.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
            raise InvalidReference(
                f"image reference {text!r} has an invalid repository component {component!r} "
                "(lowercase letters, digits and single '.', '_' or '-' separators)"
            )
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    return registry, path
