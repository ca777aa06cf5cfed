"""Fixtures for integration tests: real registries, a token server, a fault proxy, images.

A registry starts in 15-40 ms, so each test gets its own (function scope): tests never
see each other's repositories. For a registry shared across a session, use
`running_registry(tmp_path_factory.mktemp(...))` in a session-scoped fixture.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from osbuilder.oci.transport import forget_schemes
from tests.integration.debrepo import SigningKey, debian_repository  # noqa: F401  (a fixture)
from tests.integration.faultproxy import FaultProxy, HasHost, StartFaultProxy
from tests.integration.images import OciImage, OciIndex, build_image, build_index, random_layers
from tests.integration.registry import Registry, running_registry
from tests.integration.signing import Trust
from tests.integration.tokenauth import TokenServer

# Debian packages: docker-registry, skopeo, apache2-utils (htpasswd).
REQUIRED_TOOLS = ("docker-registry", "skopeo", "htpasswd")


@pytest.fixture(scope="session", autouse=True)
def _integration_tools() -> None:
    # Fail rather than skip: a CI that silently skipped these would prove nothing.
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"integration tests need {', '.join(missing)}: "
            "apt-get install docker-registry skopeo apache2-utils",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _forget_schemes() -> Iterator[None]:
    """Whether a registry speaks TLS is remembered per process and host:port; a port
    reused by another test's registry must be asked afresh."""
    yield

    forget_schemes()


def _workdir(tmp_path: Path, name: str) -> Path:
    workdir = tmp_path / name
    workdir.mkdir()
    return workdir


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """An open registry (no auth)."""
    with running_registry(_workdir(tmp_path, "registry")) as reg:
        yield reg


@pytest.fixture
def basic_registry(tmp_path: Path) -> Iterator[Registry]:
    """A registry with htpasswd Basic auth; `.username`, `.password`, `.creds` are set."""
    credentials = ("alice", secrets.token_urlsafe(12))
    with running_registry(_workdir(tmp_path, "basic-registry"), basic=credentials) as reg:
        yield reg


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[Registry]:
    """A registry with Docker token auth; `.token_server` issues the tokens, and
    `.token_requests` lists what it was asked."""
    workdir = _workdir(tmp_path, "token-registry")
    with TokenServer(workdir) as tokens, running_registry(workdir, token=tokens) as reg:
        yield reg


@pytest.fixture
def fault_proxy() -> Iterator[StartFaultProxy]:
    """`fault_proxy(registry)` starts a FaultProxy in front of a registry (or "HOST:PORT").
    Every proxy started is stopped at teardown, which fails if one hit an unexpected error
    (clients dropping connections are expected; a proxy bug or a malformed request is not)."""
    proxies: list[FaultProxy] = []

    def start(upstream: HasHost | str) -> FaultProxy:
        proxy = FaultProxy(upstream if isinstance(upstream, str) else upstream.host).start()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.stop()
    errors = [error for proxy in proxies for error in proxy.errors]
    if errors:
        pytest.fail(f"fault proxy errors: {errors!r}", pytrace=False)


@pytest.fixture(scope="session")
def small_image(tmp_path_factory: pytest.TempPathFactory) -> OciImage:
    """An OCI layout with a two-layer linux/amd64 image tagged "latest"."""
    return build_image(
        tmp_path_factory.mktemp("small-image"),
        [
            {"etc/os-release": b'ID=osbuilder-test\nNAME="osbuilder test"\n'},
            *random_layers(count=1, total_size=256 * 1024),
        ],
    )


@pytest.fixture(scope="session")
def multiarch_image(tmp_path_factory: pytest.TempPathFactory) -> OciIndex:
    """An OCI layout with an index over linux/amd64 and linux/arm64/v8, tagged "latest"."""
    return build_index(tmp_path_factory.mktemp("multiarch-image"))


@pytest.fixture
def signer(tmp_path: Path) -> Iterator[SigningKey]:
    """An OpenPGP key that signs images (simple signing)."""
    key = SigningKey.generate(tmp_path / "signer", "osbuilder image signer")
    yield key
    key.close()


@pytest.fixture
def stranger(tmp_path: Path) -> Iterator[SigningKey]:
    """An OpenPGP key no policy trusts."""
    key = SigningKey.generate(tmp_path / "stranger", "someone else")
    yield key
    key.close()


@pytest.fixture
def trust(tmp_path: Path) -> Trust:
    return Trust(tmp_path / "trust")


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """An image manifest file, as `skopeo standalone-sign` signs one."""
    path = tmp_path / "manifest.json"
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 32}
    document = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": 2,
            "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(),
        },
        "layers": [{**layer, "digest": "sha256:" + "5" * 64}],
    }
    path.write_bytes(json.dumps(document).encode())
    return path
