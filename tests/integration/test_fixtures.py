"""Smoke tests of the integration fixtures themselves, using skopeo and plain HTTP only."""

from __future__ import annotations

import base64
import json
import random
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.integration.faultproxy import (
    Corrupt,
    FaultProxy,
    ResetMidway,
    Slow,
    StartFaultProxy,
    Status,
    Truncate,
)
from tests.integration.images import (
    OCI_INDEX,
    OCI_MANIFEST,
    OciImage,
    OciIndex,
    inspect_raw,
    push,
    sha256_digest,
    skopeo,
)
from tests.integration.registry import Registry, running_registry
from tests.integration.tokenauth import TokenServer

pytestmark = pytest.mark.integration

BLOB_PATH = r"/v2/.+/blobs/sha256:"


def _refused(host: str) -> bool:
    address, port = host.rsplit(":", 1)
    with socket.socket() as sock:
        return sock.connect_ex((address, int(port))) != 0


def _jwt_claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    claims: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return claims


# --- registries -------------------------------------------------------------------------


def test_open_registry_round_trip(registry: Registry, small_image: OciImage) -> None:
    pushed = push(small_image, registry, "smoke/image", "v1")

    assert pushed.digest == small_image.digest
    inspected = json.loads(
        skopeo("inspect", "--tls-verify=false", f"docker://{pushed.reference}").stdout
    )
    assert inspected["Digest"] == small_image.digest
    assert inspected["Architecture"] == "amd64"
    assert inspected["Layers"] == [layer.descriptor.digest for layer in small_image.layers]
    head = httpx.head(
        f"{registry.url}/v2/smoke/image/manifests/v1", headers={"Accept": OCI_MANIFEST}
    )
    assert head.headers["Docker-Content-Digest"] == small_image.digest
    assert any(registry.root.rglob("data")), "blobs are stored under .root"
    assert f"listening on {registry.host}" in registry.log.read_text()


def test_multiarch_index_round_trip(registry: Registry, multiarch_image: OciIndex) -> None:
    pushed = push(multiarch_image, registry, "smoke/multi")

    assert pushed.digest == multiarch_image.digest
    index = json.loads(pushed.raw)
    assert index["mediaType"] == OCI_INDEX
    assert [m["platform"] for m in index["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
    ]
    for image in multiarch_image.images:
        raw = inspect_raw(registry, f"smoke/multi@{image.digest}")
        assert sha256_digest(raw) == image.digest


def test_basic_registry_needs_credentials(basic_registry: Registry, small_image: OciImage) -> None:
    assert basic_registry.creds == f"{basic_registry.username}:{basic_registry.password}"
    assert httpx.get(f"{basic_registry.url}/v2/").status_code == 401

    push(small_image, basic_registry, "smoke/basic")

    with pytest.raises(subprocess.CalledProcessError) as anonymous:
        push(small_image, basic_registry.host, "smoke/anonymous")  # a bare host: no creds
    assert b"unauthorized" in anonymous.value.stderr
    with pytest.raises(subprocess.CalledProcessError):
        push(small_image, basic_registry, "smoke/wrong", creds="alice:wrong")


def test_token_registry_push_and_token_requests(
    token_registry: Registry, small_image: OciImage
) -> None:
    push(small_image, token_registry, "smoke/token")

    requests = token_registry.token_requests
    assert requests, "skopeo fetched tokens"
    assert all(r.username == token_registry.username and r.granted for r in requests)
    assert {r.service for r in requests} == {"osbuilder-test-registry"}
    assert "repository:smoke/token:pull,push" in {s for r in requests for s in r.scopes}

    with pytest.raises(subprocess.CalledProcessError):
        push(small_image, token_registry.host, "smoke/anonymous")
    denied = token_registry.token_requests[len(requests) :]
    assert denied and all(r.username is None and not r.granted for r in denied)


def test_token_grants_exactly_the_requested_scope(token_registry: Registry) -> None:
    tokens = token_registry.token_server
    assert tokens is not None
    query = {"service": tokens.service, "scope": "repository:smoke/scoped:pull"}
    credentials = (tokens.username, tokens.password)

    assert httpx.get(tokens.realm, params=query).status_code == 401
    assert httpx.get(tokens.realm, params=query, auth=(tokens.username, "no")).status_code == 401
    answer = httpx.get(tokens.realm, params=query, auth=credentials).json()

    assert answer["token"] == answer["access_token"]
    assert answer["expires_in"] == 300 and answer["issued_at"].endswith("Z")
    claims = _jwt_claims(answer["token"])
    assert claims["access"] == [{"type": "repository", "name": "smoke/scoped", "actions": ["pull"]}]
    assert claims["aud"] == tokens.service and claims["iss"] == tokens.issuer

    bearer = {"Authorization": f"Bearer {answer['token']}"}
    scoped = httpx.get(f"{token_registry.url}/v2/smoke/scoped/tags/list", headers=bearer)
    other = httpx.get(f"{token_registry.url}/v2/smoke/other/tags/list", headers=bearer)
    # Authorized, the repository is merely unknown; another repository is challenged again.
    assert scoped.status_code == 404
    assert other.status_code == 401
    assert 'error="insufficient_scope"' in other.headers["WWW-Authenticate"]


def test_teardown_leaves_nothing_running(tmp_path: Path, small_image: OciImage) -> None:
    threads_before = threading.active_count()
    with TokenServer(tmp_path) as tokens, running_registry(tmp_path, token=tokens) as reg:
        proxy = FaultProxy(reg.host).start()
        with httpx.Client() as client:  # leaves an idle keep-alive connection at the proxy
            assert client.get(f"{proxy.url}/v2/").status_code == 401
            proxy.stop()
        hosts = [reg.host, tokens.realm.split("/")[2], proxy.host]

    assert all(_refused(host) for host in hosts)
    assert threading.active_count() == threads_before


# --- fault proxy ------------------------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    digest: str
    path: str  # /v2/REPO/blobs/DIGEST
    content: bytes


@pytest.fixture
def blob(registry: Registry, small_image: OciImage) -> Blob:
    """The small image's biggest layer (256 KiB), pushed to `registry`."""
    push(small_image, registry, "smoke/blob")
    layer = max(small_image.layers, key=lambda layer: layer.descriptor.size)
    digest = layer.descriptor.digest
    content = (small_image.layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
    return Blob(digest, f"/v2/smoke/blob/blobs/{digest}", content)


def test_proxy_passes_through_with_keep_alive_and_ranges(
    registry: Registry, fault_proxy: StartFaultProxy, blob: Blob
) -> None:
    proxy = fault_proxy(registry)

    with httpx.Client(base_url=proxy.url) as client:
        assert client.get(blob.path).content == blob.content
        partial = client.get(blob.path, headers={"Range": "bytes=100-199"})
        assert client.head(blob.path).headers["Content-Length"] == str(len(blob.content))

    assert partial.status_code == 206
    assert partial.content == blob.content[100:200]
    assert [r.range for r in proxy.requests] == [None, "bytes=100-199", None]
    assert len({r.client_port for r in proxy.requests}) == 1, "one kept-alive connection"


def test_truncate_sends_a_short_body(
    registry: Registry, fault_proxy: StartFaultProxy, blob: Blob
) -> None:
    proxy = fault_proxy(registry)
    rule = proxy.inject(Truncate(), method="GET", path=BLOB_PATH)
    received = bytearray()

    with httpx.Client(base_url=proxy.url) as client:
        with pytest.raises(httpx.RemoteProtocolError), client.stream("GET", blob.path) as response:
            assert response.headers["Content-Length"] == str(len(blob.content))
            for chunk in response.iter_bytes():
                received += chunk
        assert client.get(blob.path).content == blob.content, "the rule fired once, then passes"

    assert bytes(received) == blob.content[: len(blob.content) // 2]
    assert (rule.fired, rule.seen) == (1, 2)


def test_corrupt_flips_a_byte(registry: Registry, fault_proxy: StartFaultProxy, blob: Blob) -> None:
    proxy = fault_proxy(registry)
    proxy.inject(Corrupt(), path=BLOB_PATH)

    body = httpx.get(proxy.url + blob.path).content

    assert len(body) == len(blob.content)
    assert sum(a != b for a, b in zip(body, blob.content, strict=True)) == 1
    assert sha256_digest(body) != blob.digest


@pytest.mark.parametrize("code", [500, 503])
def test_status_answers_without_upstream(
    registry: Registry, fault_proxy: StartFaultProxy, blob: Blob, code: int
) -> None:
    proxy = fault_proxy(registry)
    rule = proxy.inject(Status(code), method="GET", path=BLOB_PATH, times=2)

    with httpx.Client(base_url=proxy.url) as client:
        statuses = [client.get(blob.path).status_code for _ in range(3)]
        assert client.head(blob.path).status_code == 200, "a GET rule leaves HEAD alone"

    assert statuses == [code, code, 200]
    assert (rule.fired, rule.seen) == (2, 3)
    assert [r.fault for r in proxy.requests] == [Status(code), Status(code), None, None]


def test_429_carries_retry_after(
    registry: Registry, fault_proxy: StartFaultProxy, blob: Blob
) -> None:
    proxy = fault_proxy(registry)
    proxy.inject(Status(429, retry_after=1), path=BLOB_PATH)

    response = httpx.get(proxy.url + blob.path)

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"


def test_reset_midway_raises_a_connection_error(
    registry: Registry, fault_proxy: StartFaultProxy, blob: Blob
) -> None:
    proxy = fault_proxy(registry)
    proxy.inject(ResetMidway(), path=BLOB_PATH)

    with pytest.raises(httpx.ReadError, match="reset"):
        httpx.get(proxy.url + blob.path)
    assert httpx.get(proxy.url + blob.path).content == blob.content


def test_slow_throttles_and_survives_a_killed_client(
    registry: Registry, fault_proxy: StartFaultProxy, blob: Blob
) -> None:
    proxy = fault_proxy(registry)
    proxy.inject(Slow(bytes_per_second=len(blob.content) * 4), path=BLOB_PATH)
    started = time.monotonic()
    assert httpx.get(proxy.url + blob.path).content == blob.content
    assert time.monotonic() - started >= 0.2  # 1/4 s at that rate

    # A client killed halfway (as a test would SIGKILL a pull) must not upset the proxy.
    proxy.inject(Slow(bytes_per_second=64 * 1024), path=BLOB_PATH)
    reader = (
        "import sys, urllib.request\n"
        "with urllib.request.urlopen(sys.argv[1]) as response:\n"
        "    response.read(1024); print('reading', flush=True); response.read()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", reader, proxy.url + blob.path], stdout=subprocess.PIPE, text=True
    ) as client:
        assert client.stdout is not None
        assert client.stdout.readline() == "reading\n"
        client.kill()
    assert httpx.get(proxy.url + blob.path).content == blob.content


def test_push_through_the_proxy(
    registry: Registry, fault_proxy: StartFaultProxy, small_image: OciImage
) -> None:
    proxy = fault_proxy(registry)

    pushed = push(small_image, proxy.host, "smoke/proxied")

    assert pushed.digest == small_image.digest
    methods = {r.method for r in proxy.requests}
    assert {"HEAD", "POST", "PUT"} <= methods, "uploads followed Location through the proxy"


def test_chunked_upload_through_the_proxy(registry: Registry, fault_proxy: StartFaultProxy) -> None:
    proxy = fault_proxy(registry)
    rule = proxy.inject(Status(503), method="PATCH")
    data = random.Random(7).randbytes(300_000)
    digest = sha256_digest(data)

    with httpx.Client(base_url=proxy.url) as client:
        started = client.post("/v2/smoke/upload/blobs/uploads/")
        assert started.status_code == 202
        assert started.headers["Location"].startswith(proxy.url), "the Host header was kept"
        # The injected 503 drains the request body, so the connection stays usable.
        assert client.patch(started.headers["Location"], content=data).status_code == 503
        # A generator body makes httpx send Transfer-Encoding: chunked.
        chunks = (data[i : i + 65_536] for i in range(0, len(data), 65_536))
        patched = client.patch(started.headers["Location"], content=chunks)
        assert patched.status_code == 202
        # Not params=: httpx 0.28 would replace the Location's query (its _state) with it.
        put = client.put(f"{patched.headers['Location']}&digest={digest}")
        assert put.status_code == 201
        assert client.get(f"/v2/smoke/upload/blobs/{digest}").content == data

    assert (rule.fired, rule.seen) == (1, 2)
    assert len({r.client_port for r in proxy.requests}) == 1, "one kept-alive connection"


def test_token_server_answers_post_with_404(token_registry: Registry) -> None:
    tokens = token_registry.token_server
    assert tokens is not None
    form = {"grant_type": "password", "username": tokens.username, "password": tokens.password}

    assert httpx.post(tokens.realm, data=form).status_code == 404
    assert token_registry.token_requests[-1].method == "POST"
