"""Registry credentials and the authentication flows registries use.

Credentials come from $REGISTRY_AUTH_FILE, then Docker's config.json
($DOCKER_CONFIG/config.json or ~/.docker/config.json): `auths` entries with
base64 `auth`, `credHelpers` per registry and `credsStore` for all, the
latter two through `docker-credential-NAME get`. Secrets never reach logs or
error messages.

`RegistryAuth` keeps what 401 challenges taught (Basic, or the Bearer tokens
of the distribution spec's token flow, per scope); httpx_support runs the
flow itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from msgspec import Struct

from osbuilder.errors import ExternalError, UserError
from osbuilder.runner import run

log = logging.getLogger(__name__)

_DOCKER_HUB_KEYS = ("docker.io", "index.docker.io", "registry-1.docker.io")
_HUB_SERVER_URL = "https://index.docker.io/v1/"


class Credentials(Struct, frozen=True):
    username: str
    password: str = ""
    identity_token: str | None = None  # a refresh token from `docker login` with OAuth

    def __repr__(self) -> str:  # never show secrets, even in tracebacks
        return f"Credentials(username={self.username!r}, password=***)"


class CredentialStore:
    """Finds the credentials for a registry host, as Docker and podman would."""

    def __init__(self, files: list[Path] | None = None) -> None:
        self.files = files if files is not None else _default_auth_files()
        self._cache: dict[str, Credentials | None] = {}
        self._lock = threading.Lock()

    def get(self, registry: str) -> Credentials | None:
        with self._lock:
            if registry not in self._cache:
                self._cache[registry] = self._find(registry)
            return self._cache[registry]

    def _find(self, registry: str) -> Credentials | None:
        keys = _DOCKER_HUB_KEYS if registry == "docker.io" else (registry,)
        for path in self.files:
            config = _read_config(path)
            helpers = config.get("credHelpers") or {}
            for key in keys:
                if isinstance(helpers, dict) and key in helpers:
                    return _from_helper(str(helpers[key]), registry)
            auths = config.get("auths") or {}
            if isinstance(auths, dict):
                for raw_key, entry in auths.items():
                    if _normalise_key(raw_key) in keys and isinstance(entry, dict):
                        found = _from_auth_entry(entry, path, raw_key)
                        if found is not None:
                            return found
            store = config.get("credsStore")
            if isinstance(store, str) and store:
                found = _from_helper(store, registry, missing_ok=True)
                if found is not None:
                    return found
        return None


def _default_auth_files() -> list[Path]:
    files = []
    if explicit := os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(explicit))
    docker_dir = os.environ.get("DOCKER_CONFIG")
    files.append(
        Path(docker_dir) / "config.json" if docker_dir else Path.home() / ".docker/config.json"
    )
    return files


def _read_config(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read registry credentials: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: registry credentials file is not a JSON object")
    return data


def _normalise_key(key: str) -> str:
    """`https://index.docker.io/v1/` -> `index.docker.io`; `host:5000` stays."""
    if "://" in key:
        key = urlsplit(key).netloc
    return key.split("/", 1)[0]


def _from_auth_entry(entry: dict[str, object], path: Path, key: str) -> Credentials | None:
    token = entry.get("identitytoken")
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise UserError(f"{path}: the 'auth' of {key} is not base64 of user:password") from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise UserError(f"{path}: the 'auth' of {key} is not base64 of user:password")
        return Credentials(username, password, str(token) if isinstance(token, str) else None)
    user, secret = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(secret, str):
        return Credentials(user, secret)
    return None


def _from_helper(helper: str, registry: str, missing_ok: bool = False) -> Credentials | None:
    server = _HUB_SERVER_URL if registry == "docker.io" else registry
    result = run([f"docker-credential-{helper}", "get"], input=server.encode(), check=False)
    if result.returncode != 0:
        message = (result.stdout or result.stderr).decode(errors="replace").strip()
        if missing_ok or "credentials not found" in message.lower():
            return None
        raise ExternalError(f"docker-credential-{helper} failed for {registry}: {message[:200]}")
    try:
        answer = json.loads(result.stdout)
        username, secret = str(answer["Username"]), str(answer["Secret"])
    except (ValueError, KeyError, TypeError):
        raise ExternalError(
            f"docker-credential-{helper} gave no usable answer for {registry}"
        ) from None
    if username == "<token>":
        return Credentials("", "", identity_token=secret)
    return Credentials(username, secret)


# --- the HTTP side ----------------------------------------------------------------------------

_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"|(\w+)=([^\s,]+)')
_REPO_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?:manifests|blobs|tags)/")


class Challenge(Struct, frozen=True):
    scheme: str
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {}
    for match in _CHALLENGE_PARAM.finditer(rest):
        key = match.group(1) or match.group(3)
        params[key.lower()] = match.group(2) if match.group(1) else match.group(4)
    return Challenge(scheme.lower(), params)


def request_scope(method: str, url: str, extra: tuple[str, ...] = ()) -> list[str]:
    """The token scopes a request needs: pull for reads, pull,push for writes."""
    match = _REPO_PATH.match(urlsplit(url).path)
    if match is None:
        return list(extra)
    actions = "pull" if method in ("GET", "HEAD") else "pull,push"
    return [f"repository:{match['name']}:{actions}", *extra]


class RegistryAuth:
    """What a registry accepted: Basic, or Bearer tokens per set of scopes.

    The challenge flow that learns it runs in httpx (httpx_support.HttpxAuth);
    requests that skip httpx ask `header` for what to send.
    """

    def __init__(self, credentials: Credentials | None) -> None:
        self.credentials = credentials
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._basic = False
        self._lock = threading.Lock()

    def header(self, method: str, url: str) -> str | None:
        """The Authorization header for a request, from what was accepted before, if any."""
        return self.header_for(self.scope_key(method, url))

    def header_for(self, scopes: tuple[str, ...]) -> str | None:
        with self._lock:
            if self._basic and self.credentials is not None:
                return basic_header(self.credentials)
            token = self._tokens.get(scopes)
            if token is not None and token[1] > time.monotonic():
                return f"Bearer {token[0]}"
            return None

    def use_basic(self) -> bool:
        """The registry asked for Basic: use it from now on, if there are credentials."""
        with self._lock:
            self._basic = self.credentials is not None
            return self._basic

    def remember_token(self, scopes: tuple[str, ...], token: str, lifetime: float) -> None:
        with self._lock:  # renew 10 s early so a token never expires mid-request
            self._tokens[scopes] = (token, time.monotonic() + max(lifetime - 10, 1))

    @staticmethod
    def scope_key(method: str, url: str) -> tuple[str, ...]:
        """Tokens are cached per set of scopes a request needs."""
        return tuple(sorted(request_scope(method, url, _extra_scopes(method, url))))


def _extra_scopes(method: str, url: str) -> tuple[str, ...]:
    """A cross-repository mount needs pull on the source repository too."""
    if method != "POST":
        return ()
    source = parse_qs(urlsplit(url).query).get("from")
    return (f"repository:{source[0]}:pull",) if source else ()


def basic_header(credentials: Credentials) -> str:
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()
