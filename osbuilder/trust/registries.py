"""registries.d(5): where simple signatures of an image are stored (its lookaside).

The `.yaml` files of `$HOME/.config/containers/registries.d` if that directory exists,
else of `/etc/containers/registries.d`, merged: a `default-docker` section and `docker`
sections by scope, each at most once across all files. For an image, the sections of
its scopes are tried from the most specific (the scopes of policy.json: repository with
tag or digest, repository, namespaces, host[:port], `*.domain`), then `default-docker`,
then the built-in directory; as containers/image (docker/registries_d.go) does, a
section without the wanted URL passes the question to the next one.

A signature of the manifest `sha256:HEX` of `host/ns/repo` is at
`LOOKASIDE/ns/repo@sha256=HEX/signature-N`, N counting from 1 (the registry host is
not part of the path).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import yaml
from msgspec import Struct
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from osbuilder.errors import UserError
from osbuilder.oci.reference import ImageReference
from osbuilder.trust.bounded import read_bounded
from osbuilder.trust.policy import docker_scopes

SYSTEM_REGISTRIES_D = Path("/etc/containers/registries.d")
USER_REGISTRIES_D = Path(".config/containers/registries.d")  # under $HOME
#: Where signatures are when nothing is configured: root's, and a user's under $HOME.
ROOT_LOOKASIDE = "file:///var/lib/containers/sigstore"
USER_LOOKASIDE = Path(".local/share/containers/sigstore")
#: A registries.d file is a few lines; the bound keeps a stray large file from being read.
MAX_CONFIG_BYTES = 1024 * 1024
SUPPORTED_SCHEMES = ("file", "http", "https")

_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_LOWER_HEX = re.compile(r"[0-9a-f]+")


class RegistriesError(UserError):
    """A registries.d file is unreadable or invalid; the message names the file."""


class RegistryNamespace(BaseModel):
    """One section: the lookaside URLs and whether sigstore attachments are used.

    Unknown keys are ignored, as containers/image ignores them: these files are shared
    with other tools, which may know keys osbuilder does not."""

    model_config: ClassVar[ConfigDict] = ConfigDict(extra="ignore", frozen=True, strict=True)

    lookaside: str | None = None
    lookaside_staging: str | None = Field(default=None, alias="lookaside-staging")
    # The old names of the two above, still read by containers/image.
    sigstore: str | None = None
    sigstore_staging: str | None = Field(default=None, alias="sigstore-staging")
    use_sigstore_attachments: bool | None = Field(default=None, alias="use-sigstore-attachments")

    @field_validator("lookaside", "lookaside_staging", "sigstore", "sigstore_staging")
    @classmethod
    def _supported_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in SUPPORTED_SCHEMES:
            raise ValueError(
                f"{value!r} is not a file://, http:// or https:// URL of a signature store"
            )
        return value

    def top_level(self, write: bool) -> str | None:
        """This section's lookaside for reading, or for writing (staging first)."""
        if write and (staging := self.lookaside_staging or self.sigstore_staging):
            return staging
        return self.lookaside or self.sigstore or None


class RegistriesConfig(Struct, frozen=True):
    """The merged sections of a registries.d directory."""

    default_docker: RegistryNamespace | None = None
    docker: dict[str, RegistryNamespace] = {}


class Lookaside(Struct, frozen=True):
    """An image repository's signature store: read from `read_url`, add to `write_url`."""

    read_url: str
    write_url: str


def default_registries_dir(home: Path | None = None) -> Path:
    home = home if home is not None else Path(os.path.expanduser("~"))
    user_dir = home / USER_REGISTRIES_D
    return user_dir if user_dir.exists() else SYSTEM_REGISTRIES_D


def load_registries_d(
    directory: Path | None = None, *, home: Path | None = None
) -> RegistriesConfig:
    """The merged configuration of `directory` (default: `default_registries_dir`). A missing
    directory is an empty configuration; a section defined twice is an error naming both files."""
    directory = directory if directory is not None else default_registries_dir(home)
    try:
        names = sorted(entry.name for entry in directory.iterdir() if entry.name.endswith(".yaml"))
    except FileNotFoundError:
        return RegistriesConfig()
    except OSError as exc:
        raise RegistriesError(f"{directory}: cannot list: {exc.strerror or exc}") from None
    default_docker: RegistryNamespace | None = None
    default_from: Path | None = None
    docker: dict[str, RegistryNamespace] = {}
    docker_from: dict[str, Path] = {}
    for name in names:
        path = directory / name
        file_default, file_docker = _load_file(path)
        if file_default is not None:
            if default_from is not None:
                raise RegistriesError(
                    f'{path}: "default-docker" is already defined in {default_from}'
                )
            default_docker, default_from = file_default, path
        for scope, section in file_docker.items():
            if scope in docker_from:
                raise RegistriesError(
                    f'{path}: "docker" scope {scope!r} is already defined in {docker_from[scope]}'
                )
            docker[scope], docker_from[scope] = section, path
    return RegistriesConfig(default_docker=default_docker, docker=docker)


def lookaside_for(
    config: RegistriesConfig,
    reference: ImageReference,
    *,
    home: Path | None = None,
    euid: int | None = None,
) -> Lookaside:
    """The lookaside URLs of `reference`'s repository: the base URL of the most specific
    section that has one, with the repository's path (without the registry) appended."""
    repository_path = "/" + reference.repository
    read_base = _top_level(config, reference, write=False)
    write_base = _top_level(config, reference, write=True)
    builtin = _builtin_lookaside(home, euid)
    return Lookaside(
        read_url=_append_path(read_base or builtin, repository_path),
        write_url=_append_path(write_base or builtin, repository_path),
    )


def uses_sigstore_attachments(config: RegistriesConfig, reference: ImageReference) -> bool:
    """Whether `use-sigstore-attachments` is on for `reference` (the most specific section
    that sets it, then `default-docker`); off when nothing says."""
    for section in _sections(config, reference):
        if section.use_sigstore_attachments is not None:
            return section.use_sigstore_attachments
    return False


def signature_url(repository_lookaside: str, manifest_digest: str, number: int) -> str:
    """The URL of the `number`th (from 1) signature of `manifest_digest` under a
    repository's lookaside URL (`Lookaside.read_url` or `.write_url`)."""
    if number < 1:
        raise ValueError(f"signatures are numbered from 1, not {number}")
    algorithm, _, hex_digest = manifest_digest.partition(":")
    # The digest becomes a path component: only a well-formed one may (no '../').
    expected_length = _DIGEST_HEX_LENGTHS.get(algorithm)
    if len(hex_digest) != expected_length or not _LOWER_HEX.fullmatch(hex_digest):
        raise UserError(f"{manifest_digest!r} is not a sha256, sha384 or sha512 digest")
    return _append_path(repository_lookaside, f"@{algorithm}={hex_digest}/signature-{number}")


# --- internals -------------------------------------------------------------------------


def _sections(config: RegistriesConfig, reference: ImageReference) -> list[RegistryNamespace]:
    """The sections that apply to `reference`, most specific first."""
    sections = [
        config.docker[scope] for scope in docker_scopes(reference) if scope in config.docker
    ]
    if config.default_docker is not None:
        sections.append(config.default_docker)
    return sections


def _top_level(config: RegistriesConfig, reference: ImageReference, *, write: bool) -> str | None:
    for section in _sections(config, reference):
        if url := section.top_level(write):
            return url
    return None


def _builtin_lookaside(home: Path | None, euid: int | None) -> str:
    euid = euid if euid is not None else os.geteuid()
    if euid == 0:
        return ROOT_LOOKASIDE
    home = home if home is not None else Path(os.path.expanduser("~"))
    return (home / USER_LOOKASIDE).absolute().as_uri()


def _append_path(url: str, suffix: str) -> str:
    # To the URL's path, not its end: a query string (a pre-signed URL) stays last.
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path + suffix))


def _load_file(path: Path) -> tuple[RegistryNamespace | None, dict[str, RegistryNamespace]]:
    raw = read_bounded(path, MAX_CONFIG_BYTES, "registries.d configuration", RegistriesError)
    if len(raw) > MAX_CONFIG_BYTES:
        raise RegistriesError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        data = yaml.load(raw, Loader=_UniqueKeyLoader)  # (a SafeLoader: no objects)
    except yaml.YAMLError as exc:
        raise RegistriesError(f"{path}: not valid YAML: {_one_line(str(exc))}") from None
    if data is None:
        return None, {}
    if not isinstance(data, dict):
        raise RegistriesError(f"{path}: expected a mapping of default-docker and docker")
    default_docker = None
    if data.get("default-docker") is not None:
        default_docker = _section(path, "default-docker", data["default-docker"])
    docker_data = data.get("docker") or {}
    if not isinstance(docker_data, dict):
        raise RegistriesError(f"{path}: docker: expected a mapping of scopes")
    docker = {
        str(scope): _section(path, f"docker[{str(scope)!r}]", section)
        for scope, section in docker_data.items()
    }
    return default_docker, docker


def _section(path: Path, where: str, data: Any) -> RegistryNamespace:
    if data is None:
        return RegistryNamespace()
    try:
        return RegistryNamespace.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(step) for step in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "model_type":
            message = "expected a mapping"
        location = f"{where}.{field}" if field else where
        raise RegistriesError(f"{path}: {location}: {message}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key repeated in a mapping, as go-yaml v3 does."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
