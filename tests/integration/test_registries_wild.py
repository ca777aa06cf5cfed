"""Registries as they are in the wild, with real servers (tests/integration/tls.py): HTTPS
with a private CA ($SSL_CERT_FILE, $SSL_CERT_DIR, certs.d), blob reads redirected to
another host, a token realm on another host, 429 with Retry-After, and loopback or
insecure registries that speak TLS."""

from __future__ import annotations

import json
import secrets
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from osbuilder.oci import transport
from osbuilder.oci.auth import CredentialStore
from osbuilder.oci.push import push as osbuilder_push
from osbuilder.oci.reference import parse_reference
from osbuilder.oci.registry import RegistryOptions
from osbuilder.oci.store import ContentStore
from tests.integration.helpers import auth_file, blob_files_are_valid, client, osbuilder, pull
from tests.integration.images import OciImage, push, skopeo
from tests.integration.registry import Registry, running_registry
from tests.integration.tls import (
    OTHER_HOST,
    THROTTLE_SECONDS,
    CertificateAuthority,
    LogLine,
    WildRegistry,
    running_wild_registry,
)
from tests.integration.tokenauth import TokenServer

pytestmark = pytest.mark.integration

THROTTLED = RegistryOptions(retries=3, backoff=0.01)  # only Retry-After makes it wait


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "ca")


@pytest.fixture
def wild(tmp_path: Path, ca: CertificateAuthority) -> Iterator[WildRegistry]:
    with running_wild_registry(tmp_path / "wild", ca) as registry:
        yield registry


@pytest.fixture
def tls_registry(tmp_path: Path, ca: CertificateAuthority) -> Iterator[Registry]:
    """Debian's docker-registry serving HTTPS itself (http.tls), on loopback."""
    issued = ca.issue("registry")
    with running_registry(tmp_path / "tls-registry", tls=issued.pair) as registry:
        yield registry


@pytest.fixture(autouse=True)
def _no_host_trust(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the machine's certs.d nor its $SSL_CERT_* reach these tests unless asked."""
    monkeypatch.setenv("OSBUILDER_CERTS_D", str(tmp_path / "no-certs.d"))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


def _trusting(ca: CertificateAuthority) -> dict[str, str]:
    return {"SSL_CERT_FILE": str(ca.path)}


def _pull_cli(ref: str, store: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = osbuilder("pull", "--cache", str(store), "--json", *args, ref, env=env)
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)[0]["digest"])


def _layers(image: OciImage) -> set[str]:
    return {layer.descriptor.digest for layer in image.layers}


def _blob_gets(lines: list[LogLine]) -> list[LogLine]:
    return [line for line in lines if line.method == "GET" and "blobs" in line.uri]


# --- HTTPS with a private CA, blobs on another host ---------------------------------------------


def test_pull_over_https_with_blobs_redirected_to_another_host(
    wild: WildRegistry, ca: CertificateAuthority, small_image: OciImage, tmp_path: Path
) -> None:
    pushed = push(small_image, wild.backend, "app/redirected", "v1")
    ref = f"{wild.host}/app/redirected:v1"
    assert _pull_cli(ref, tmp_path / "store", env=_trusting(ca)) == pushed.digest
    assert blob_files_are_valid(ContentStore(tmp_path / "store"))
    redirected = [line for line in _blob_gets(wild.front_requests()) if line.status == 307]
    served = _blob_gets(wild.blob_requests())
    assert len(redirected) == len(served) == len(small_image.layers) + 1  # and the config
    assert {line.uri.rsplit("/", 2)[1] for line in served} >= {
        digest.removeprefix("sha256:") for digest in _layers(small_image)
    }
    assert all(line.status == 200 for line in served)


def test_private_ca_from_ssl_cert_dir(
    wild: WildRegistry, ca: CertificateAuthority, small_image: OciImage, tmp_path: Path
) -> None:
    pushed = push(small_image, wild.backend, "app/certdir", "v1")
    folder = tmp_path / "cert-dir"
    folder.mkdir()
    (folder / "company-root.pem").write_bytes(ca.path.read_bytes())  # no c_rehash needed
    env = {"SSL_CERT_DIR": f"/nonexistent:{folder}"}
    assert _pull_cli(f"{wild.host}/app/certdir:v1", tmp_path / "store", env=env) == pushed.digest


def test_private_ca_from_docker_certs_d(
    wild: WildRegistry, ca: CertificateAuthority, small_image: OciImage, tmp_path: Path
) -> None:
    """certs.d/HOST:PORT/ca.crt, as docker reads it; the registry's trust also covers the
    host its blobs are redirected to, as docker's does."""
    pushed = push(small_image, wild.backend, "app/certsd", "v1")
    root = ca.certs_d(tmp_path / "certs.d", wild.host)
    env = {"OSBUILDER_CERTS_D": str(root)}
    assert _pull_cli(f"{wild.host}/app/certsd:v1", tmp_path / "store", env=env) == pushed.digest
    # Another registry (the backend, under another name) gets none of that trust.
    assert wild.blob_host.startswith(OTHER_HOST)


def test_client_certificate_from_certs_d(
    tmp_path: Path, ca: CertificateAuthority, small_image: OciImage
) -> None:
    """certs.d/HOST:PORT/NAME.cert and NAME.key: the client certificate a registry wants."""
    with running_wild_registry(tmp_path / "mtls", ca, client_certificates=True) as wild:
        pushed = push(small_image, wild.backend, "app/mtls", "v1")
        ref = f"{wild.host}/app/mtls:v1"
        root = ca.certs_d(tmp_path / "certs.d", wild.host)
        env = {"OSBUILDER_CERTS_D": str(root)}
        refused = osbuilder("pull", "--cache", str(tmp_path / "refused"), ref, env=env)
        assert refused.returncode != 0
        assert refused.stderr.count("\n") == 1, refused.stderr
        assert "HTTP 400" in refused.stderr
        issued = ca.issue("me", client=True)
        issued.certificate.rename(root / wild.host / "me.cert")
        issued.key.rename(root / wild.host / "me.key")
        assert _pull_cli(ref, tmp_path / "store", env=env) == pushed.digest
        (root / wild.host / "me.key").unlink()
        lonely = osbuilder("pull", "--cache", str(tmp_path / "lonely"), ref, env=env)
        assert lonely.returncode != 0
        assert lonely.stderr.endswith("me.cert: has no me.key beside it\n"), lonely.stderr


def test_untrusted_certificate_is_one_line_at_once(
    wild: WildRegistry, small_image: OciImage, tmp_path: Path
) -> None:
    push(small_image, wild.backend, "app/untrusted", "v1")
    started = time.monotonic()
    result = osbuilder("pull", "--cache", str(tmp_path / "store"), f"{wild.host}/app/untrusted:v1")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"{wild.host}: TLS certificate not trusted" in result.stderr
    assert "--insecure-registry" in result.stderr
    assert time.monotonic() - started < 5  # not retried with backoff
    assert wild.front_requests() == []  # no request was sent over it
    # A push (through httpx, which sends uploads) says the same.
    pushed = push(small_image, wild.backend, "app/source", "v1")
    store = tmp_path / "pushing"
    assert _pull_cli(pushed.reference, store, env=_trusting(wild.ca)) == pushed.digest
    result = osbuilder(
        "push", "--cache", str(store), pushed.reference, "--to", f"{wild.host}/app/dst:v1"
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"{wild.host}: TLS certificate not trusted" in result.stderr


def test_push_through_the_tls_front_reads_back(
    wild: WildRegistry, ca: CertificateAuthority, small_image: OciImage, tmp_path: Path
) -> None:
    pushed = push(small_image, wild.backend, "src/app", "v1")
    store = tmp_path / "store"
    _pull_cli(pushed.reference, store, env=_trusting(ca))  # the backend redirects too
    result = osbuilder(
        "push",
        "--cache",
        str(store),
        "--json",
        pushed.reference,
        "--to",
        f"{wild.host}/dst/app:v2",
        env=_trusting(ca),
    )
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["uploaded"]) == len(small_image.layers) + 1
    uploads = [line for line in wild.front_requests() if line.method in ("POST", "PUT", "PATCH")]
    assert uploads and all(line.status < 400 for line in uploads)
    # skopeo, trusting the same CA, reads what went up through the front.
    cert_dir = tmp_path / "skopeo-certs"
    cert_dir.mkdir()
    (cert_dir / "ca.crt").write_bytes(ca.path.read_bytes())
    inspected = json.loads(
        skopeo("inspect", "--cert-dir", str(cert_dir), f"docker://{wild.host}/dst/app:v2").stdout
    )
    assert inspected["Digest"] == pushed.digest
    # And a fresh store pulls it back through the redirects.
    assert _pull_cli(f"{wild.host}/dst/app:v2", tmp_path / "again", env=_trusting(ca)) == (
        pushed.digest
    )


# --- a token realm on another host; Authorization stays with its origin ---------------------------


def test_token_realm_on_another_host_and_no_authorization_to_the_blob_host(
    tmp_path: Path, ca: CertificateAuthority, small_image: OciImage
) -> None:
    realm_tls = ca.issue("realm", (OTHER_HOST,))
    workdir = tmp_path / "tok"
    workdir.mkdir()
    with (
        TokenServer(workdir, host=OTHER_HOST, tls=realm_tls.pair) as tokens,
        running_wild_registry(workdir / "wild", ca, token=tokens) as wild,
    ):
        assert tokens.realm.startswith(f"https://{OTHER_HOST}:")
        creds = f"{tokens.username}:{tokens.password}"
        pushed = push(small_image, wild.backend, "tok/app", "v1", creds=creds)
        env = {
            **_trusting(ca),
            "REGISTRY_AUTH_FILE": str(auth_file(tmp_path, wild.host, creds)),
        }
        before = len(tokens.requests)
        assert _pull_cli(f"{wild.host}/tok/app:v1", tmp_path / "store", env=env) == pushed.digest
        asked = tokens.requests[before:]
        assert asked and all(r.granted and r.username == tokens.username for r in asked)

        # The registry checked the token on every blob GET, then sent it elsewhere.
        front = _blob_gets(wild.front_requests())
        assert front and all(line.authorization.startswith("Bearer ") for line in front)
        served = _blob_gets(wild.blob_requests())
        assert len(served) == len(small_image.layers) + 1
        assert all(line.authorization == "" for line in served)

        # Push through the front with the same realm.
        result = osbuilder(
            "push",
            "--cache",
            str(tmp_path / "store"),
            f"{wild.host}/tok/app:v1",
            "--to",
            f"{wild.host}/tok/copy:v1",
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert "repository:tok/copy:pull,push" in {s for r in tokens.requests for s in r.scopes}
        assert _pull_cli(f"{wild.host}/tok/copy:v1", tmp_path / "again", env=env) == (pushed.digest)
        assert creds.split(":", 1)[1] not in wild.front_log.read_text()
        assert all(line.authorization == "" for line in wild.blob_requests())


# --- 429 with Retry-After ---------------------------------------------------------------------


def _touch(wild: WildRegistry, method: str, path: str) -> None:
    """One request of the test's own, so that the client's next one is throttled."""
    context = ssl.create_default_context(cafile=str(wild.ca.path))
    request = urllib.request.Request(f"{wild.url}{path}", method=method, data=None)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(request, timeout=10) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        assert exc.code != 429, "the throttle fired before the client's request"


def _waited_as_asked(lines: list[LogLine], method: str, uri: str) -> None:
    """The client's request was answered 429, and it came back only after Retry-After."""
    seen = [line for line in lines if line.method == method and line.uri == uri]
    statuses = [line.status for line in seen]
    assert 429 in statuses, statuses
    first = statuses.index(429)
    assert len(seen) > first + 1 and seen[first + 1].status != 429, statuses
    waited = seen[first + 1].time - seen[first].time
    assert waited >= THROTTLE_SECONDS - 0.1, f"retried after {waited:.2f} s"


def test_pull_waits_as_retry_after_asks(
    wild: WildRegistry,
    ca: CertificateAuthority,
    small_image: OciImage,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pushed = push(small_image, wild.backend, "throttled/app", "v1")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.path))
    layer = max(small_image.layers, key=lambda layer: layer.descriptor.size).descriptor.digest
    manifest_path = "/v2/throttled/app/manifests/v1"
    blob_path = f"/v2/throttled/app/blobs/{layer}"
    _touch(wild, "GET", manifest_path)
    store = ContentStore(tmp_path / "store")
    result = pull(store, f"{wild.host}/throttled/app:v1", registry_client=client(THROTTLED))
    assert result.image.digest == pushed.digest
    _waited_as_asked(wild.front_requests(), "GET", manifest_path)
    # A blob (the manifest by digest this time: a URI the throttle has not seen).
    time.sleep(THROTTLE_SECONDS)  # the first pull's GET of it is forgotten
    _touch(wild, "GET", blob_path)
    again = ContentStore(tmp_path / "again")
    by_digest = f"{wild.host}/throttled/app@{pushed.digest}"
    assert pull(again, by_digest, registry_client=client(THROTTLED)).image.digest == pushed.digest
    _waited_as_asked(wild.front_requests(), "GET", blob_path)


def test_push_waits_as_retry_after_asks(
    wild: WildRegistry,
    ca: CertificateAuthority,
    small_image: OciImage,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pushed = push(small_image, wild.backend, "src/app", "v1")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.path))
    store = ContentStore(tmp_path / "store")
    pull(store, pushed.reference)
    manifest_path = "/v2/throttled/dst/manifests/v1"
    _touch(wild, "PUT", manifest_path)  # refused as no manifest, but counted
    with client(THROTTLED) as registry_client:
        osbuilder_push(
            store,
            registry_client,
            pushed.reference,
            parse_reference(f"{wild.host}/throttled/dst:v1"),
        )
    _waited_as_asked(wild.front_requests(), "PUT", manifest_path)
    again = pull(ContentStore(tmp_path / "again"), f"{wild.host}/throttled/dst:v1")
    assert again.image.digest == pushed.digest


# --- loopback and insecure registries that speak TLS ------------------------------------------


def test_loopback_registry_speaking_tls_is_reached_over_https_with_one_probe(
    tls_registry: Registry,
    ca: CertificateAuthority,
    small_image: OciImage,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pushed = push(small_image, tls_registry, "app/tls", "v1")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.path))
    store = ContentStore(tmp_path / "store")
    with client() as registry_client:
        assert registry_client.origin(tls_registry.host).base_url == tls_registry.url
        result = pull(store, pushed.reference, registry_client=registry_client)
        assert result.image.digest == pushed.digest
        osbuilder_push(
            store, registry_client, pushed.reference, parse_reference(f"{tls_registry.host}/b:v1")
        )
    with client() as another:  # a second client of the same process asks no more
        pull(ContentStore(tmp_path / "again"), f"{tls_registry.host}/b:v1", registry_client=another)
    assert transport.probes.count(tls_registry.host) == 1


def test_plain_http_registry_costs_one_refused_handshake(
    registry: Registry, small_image: OciImage, tmp_path: Path
) -> None:
    pushed = push(small_image, registry, "app/plain", "v1")
    store = ContentStore(tmp_path / "store")
    with client() as registry_client:
        assert registry_client.origin(registry.host).base_url == registry.url
        pull(store, pushed.reference, registry_client=registry_client)
        osbuilder_push(
            store, registry_client, pushed.reference, parse_reference(f"{registry.host}/b:v1")
        )
    assert transport.probes.count(registry.host) == 1


def test_loopback_tls_registry_with_an_unknown_ca_is_one_line(
    tls_registry: Registry, small_image: OciImage, tmp_path: Path
) -> None:
    pushed = push(small_image, tls_registry, "app/unknown", "v1")
    result = osbuilder("pull", "--cache", str(tmp_path / "store"), pushed.reference)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "TLS certificate not trusted" in result.stderr


def test_insecure_registry_speaking_tls_is_not_verified(
    tls_registry: Registry, registry: Registry, small_image: OciImage, tmp_path: Path
) -> None:
    """--insecure-registry, as docker's: HTTPS without verification, else plain HTTP."""
    pushed = push(small_image, tls_registry, "app/insecure", "v1")
    insecure = ("--insecure-registry", tls_registry.host, "--insecure-registry", registry.host)
    assert _pull_cli(pushed.reference, tmp_path / "store", *insecure) == pushed.digest
    result = osbuilder(
        "push",
        "--cache",
        str(tmp_path / "store"),
        *insecure,
        pushed.reference,
        "--to",
        f"{registry.host}/copied:v1",
    )
    assert result.returncode == 0, result.stderr
    assert _pull_cli(f"{registry.host}/copied:v1", tmp_path / "again", *insecure) == pushed.digest


def test_credentials_with_a_redirected_basic_auth_registry(
    tmp_path: Path, ca: CertificateAuthority, small_image: OciImage
) -> None:
    """Basic credentials go to the registry only, never to the host it redirects to."""
    password = secrets.token_urlsafe(12)
    with running_wild_registry(tmp_path / "basic", ca, basic=("alice", password)) as wild:
        creds = f"alice:{password}"
        pushed = push(small_image, wild.backend, "private/app", "v1", creds=creds)
        credentials = CredentialStore([auth_file(tmp_path, wild.host, creds)])
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SSL_CERT_FILE", str(ca.path))
            result = pull(
                ContentStore(tmp_path / "store"),
                f"{wild.host}/private/app:v1",
                registry_client=client(credentials=credentials),
            )
        assert result.image.digest == pushed.digest
        assert all(
            line.authorization.startswith("Basic ") for line in _blob_gets(wild.front_requests())
        )
        assert _blob_gets(wild.blob_requests())
        assert all(line.authorization == "" for line in wild.blob_requests())
