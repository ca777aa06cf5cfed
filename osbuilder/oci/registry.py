"""A client of the OCI distribution API.

Manifests by tag or digest (OCI and Docker schema 2, indexes and single
manifests), blobs streamed to the content store with their digest checked
while streaming and resumed with HTTP Range after a broken connection, and
the upload side for push (blobs are moved by download.py and upload.py, on
top of this client). Connection errors, 5xx and 429 are retried with
exponential backoff, honouring Retry-After.

Transport: HTTPS. localhost, 127.0.0.0/8 and hosts named insecure may
speak plain HTTP instead: as docker does, HTTPS is tried first, once per
registry and process (transport.probe_scheme), and plain HTTP used when the
server does not speak TLS. Hosts named insecure are not verified. Mirrors
serve pulls of a registry and fall back to it. Reads go through http.client,
the rest through httpx (see transport.py, which also says what is trusted).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from msgspec import Struct, field

from osbuilder.errors import ExternalError, UserError
from osbuilder.oci import mediatypes
from osbuilder.oci.auth import CredentialStore, RegistryAuth
from osbuilder.oci.model import Descriptor, detect_media_type, sha256_digest
from osbuilder.oci.reference import DEFAULT_REGISTRY, ImageReference
from osbuilder.oci.retry import RETRY_STATUS, parse_retry_after, pause
from osbuilder.oci.store import MAX_DOCUMENT_SIZE, DigestMismatch
from osbuilder.oci.transport import (
    ConnectionFailed,
    Response,
    direct_request,
    error_detail,
    probe_scheme,
    proxies_configured,
    read_body,
    tls_context,
)

if TYPE_CHECKING:
    import ssl

    import httpx

log = logging.getLogger(__name__)


class ManifestNotFound(UserError):
    """The registry has no manifest under that tag or digest (HTTP 404)."""


class RegistryOptions(Struct, frozen=True):
    """How to reach registries: which may use plain HTTP, mirrors, retry policy."""

    insecure_registries: frozenset[str] = frozenset()
    mirrors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    retries: int = 5
    backoff: float = 0.25  # first retry delay, doubled each time
    timeout: float = 60.0
    chunk_size: int = 64 * 1024 * 1024  # uploads larger than this go in chunks


class Endpoint(Struct, frozen=True):
    """A base URL serving a registry's API: the registry itself or a mirror of it."""

    registry: str  # the registry whose content this serves (for names and messages)
    host: str  # whose credentials apply
    base_url: str
    mirror: bool = False
    insecure: bool = False  # named with --insecure-registry: TLS without verification

    def url(self, path: str) -> str:
        return f"{self.base_url}/v2/{path}"

    def tls(self) -> ssl.SSLContext | None:
        """What its HTTPS requests (and their redirects and token realm) trust."""
        if not self.base_url.startswith("https:"):
            return None
        return tls_context(self.host, verify=not self.insecure)


class FetchedManifest(Struct, frozen=True):
    endpoint: Endpoint
    data: bytes
    media_type: str
    digest: str

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(media_type=self.media_type, digest=self.digest, size=len(self.data))


def parse_mirror(text: str) -> tuple[str, str]:
    """`docker.io=http://127.0.0.1:5000` -> ("docker.io", "http://127.0.0.1:5000")."""
    registry, sep, url = text.partition("=")
    if not sep or not registry or not url.startswith(("http://", "https://")):
        raise UserError(
            f"registry mirror {text!r} must be REGISTRY=URL, e.g. docker.io=http://127.0.0.1:5000"
        )
    return registry, url.rstrip("/")


def is_local(host: str) -> bool:
    """localhost and 127.0.0.0/8 (with or without a port) may speak plain HTTP."""
    if host.startswith("["):  # [v6]:port
        name = host[1 : host.find("]")]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class RegistryClient:
    """Talks to registries; one instance is shared by all threads of a command."""

    def __init__(
        self,
        options: RegistryOptions | None = None,
        credentials: CredentialStore | None = None,
    ) -> None:
        self.options = options or RegistryOptions()
        self.credentials = credentials or CredentialStore()
        # http.client knows no proxies: with one configured, httpx does every request.
        self.direct = not proxies_configured()
        self._http: httpx.Client | None = None
        self._auths: dict[str, RegistryAuth] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    # --- endpoints ---------------------------------------------------------------------------

    def origin(self, registry: str) -> Endpoint:
        host = "registry-1.docker.io" if registry == DEFAULT_REGISTRY else registry
        insecure = registry in self.options.insecure_registries
        scheme = "https"
        if insecure or is_local(registry):  # HTTPS if it speaks it, else plain HTTP
            scheme = probe_scheme(host, timeout=self.options.timeout)
        return Endpoint(registry, registry, f"{scheme}://{host}", insecure=insecure)

    def pull_endpoints(self, registry: str) -> list[Endpoint]:
        insecure = self.options.insecure_registries
        mirrors = [
            Endpoint(
                registry,
                urlsplit(url).netloc,
                url,
                mirror=True,
                insecure=urlsplit(url).netloc in insecure,
            )
            for url in self.options.mirrors.get(registry, ())
        ]
        return [*mirrors, self.origin(registry)]

    @property
    def http(self) -> httpx.Client:
        """The httpx client, made on first use (importing httpx is not free)."""
        with self._lock:
            if self._http is None:
                from osbuilder.oci.httpx_support import new_client

                self._http = new_client(self.options.timeout)
            return self._http

    def pause(self, attempt: int, requested: float | None, what: str, why: str) -> None:
        pause(attempt, self.options.backoff, requested, what, why)

    def auth_for(self, endpoint: Endpoint) -> RegistryAuth:
        with self._lock:
            if endpoint.host not in self._auths:
                self._auths[endpoint.host] = RegistryAuth(self.credentials.get(endpoint.host))
            return self._auths[endpoint.host]

    # --- requests with retries -----------------------------------------------------------------

    @contextlib.contextmanager
    def send(
        self,
        method: str,
        url: str | httpx.URL,
        endpoint: Endpoint,
        *,
        headers: Mapping[str, str] | None = None,
        body: Callable[[], bytes | Iterator[bytes]] | None = None,
        what: str,
        retries: int | None = None,
    ) -> Iterator[httpx.Response]:
        """Send through httpx with retries on connection errors, 5xx and 429; yield the
        streaming response. `body` is a factory so that a retry sends the whole body again.
        """
        from osbuilder.oci.httpx_support import HttpxResponse, send_streaming

        auth = self.auth_for(endpoint)

        def attempt(direct: bool) -> Response:
            content = body() if body else None
            return send_streaming(
                self.http, method, url, dict(headers or {}), auth, content, endpoint.tls()
            )

        with self._retrying(attempt, endpoint, what, retries, direct=False) as response:
            assert isinstance(response, HttpxResponse)
            yield response.response

    def open(
        self,
        method: str,
        url: str,
        endpoint: Endpoint,
        headers: Mapping[str, str],
        *,
        direct: bool = True,
    ) -> Response:
        """One body-less request, no retries: through http.client with the credentials the
        registry accepted before when `direct`, else through httpx, which answers a
        challenge. Raises ConnectionFailed."""
        auth = self.auth_for(endpoint)
        if direct and self.direct:
            value = auth.header(method, url)
            sent = {**headers, "Authorization": value} if value else dict(headers)
            return direct_request(method, url, sent, self.options.timeout, endpoint.tls())
        from osbuilder.oci.httpx_support import send_streaming

        return send_streaming(self.http, method, url, dict(headers), auth, tls=endpoint.tls())

    @contextlib.contextmanager
    def read(
        self, method: str, url: str, endpoint: Endpoint, *, headers: Mapping[str, str], what: str
    ) -> Iterator[Response]:
        """A GET or HEAD with retries on connection errors, 5xx and 429."""

        def attempt(direct: bool) -> Response:
            return self.open(method, url, endpoint, headers, direct=direct)

        with self._retrying(attempt, endpoint, what, None, direct=self.direct) as response:
            yield response

    @contextlib.contextmanager
    def _retrying(
        self,
        attempt: Callable[[bool], Response],
        endpoint: Endpoint,
        what: str,
        retries: int | None,
        *,
        direct: bool,
    ) -> Iterator[Response]:
        """Call attempt(direct) until it answers, retrying connection errors, 5xx and 429
        with backoff; a 401 to a direct request is asked again through httpx, which
        answers the challenge (later direct requests reuse what it learnt)."""
        retries = self.options.retries if retries is None else retries
        tries = 0
        while True:
            try:
                response = attempt(direct)
            except ConnectionFailed as exc:
                if tries >= retries:
                    raise ExternalError(f"{what}: {exc}") from None
                self.pause(tries, None, what, str(exc))
                tries += 1
                continue
            if response.status == 401 and direct:
                response.close()
                direct = False
                continue
            if response.status in RETRY_STATUS and tries < retries:
                response.close()
                requested = parse_retry_after(response.header("retry-after"))
                self.pause(tries, requested, what, f"HTTP {response.status}")
                tries += 1
                continue
            try:
                _raise_for_auth(response.status, endpoint, what)
                yield response
            finally:
                response.close()
            return

    # --- manifests ----------------------------------------------------------------------------

    def get_manifest(self, ref: ImageReference, reference: str | None = None) -> FetchedManifest:
        """GET the manifest or index that `reference` (default: the ref's digest or tag) names."""
        reference = reference or ref.digest or ref.tag or "latest"
        last_error: Exception | None = None
        for endpoint in self.pull_endpoints(ref.registry):
            try:
                return self._get_manifest(endpoint, ref, reference)
            except (ExternalError, UserError) as exc:
                if not endpoint.mirror:
                    raise
                log.info(
                    "mirror %s cannot serve %s (%s); trying the next", endpoint.base_url, ref, exc
                )
                last_error = exc
        raise ExternalError(f"{ref}: no endpoint could serve it: {last_error}")  # pragma: no cover

    def _get_manifest(
        self, endpoint: Endpoint, ref: ImageReference, reference: str
    ) -> FetchedManifest:
        what = f"manifest {ref.repository}:{reference} from {endpoint.base_url}"
        url = endpoint.url(f"{ref.repository}/manifests/{reference}")
        headers = {"Accept": mediatypes.MANIFEST_ACCEPT}
        with self.read("GET", url, endpoint, headers=headers, what=what) as response:
            if response.status == 404:
                raise ManifestNotFound(
                    f"{ref.familiar()}: image not found in {endpoint.registry}"
                    + (f" (mirror {endpoint.base_url})" if endpoint.mirror else "")
                )
            if response.status != 200:
                raise ExternalError(f"{what}: HTTP {response.status}{_detail(response)}")
            data = read_body(response, MAX_DOCUMENT_SIZE, what)
            declared = (response.header("content-type") or "").split(";")[0].strip()
        digest = sha256_digest(data)
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatch(f"{what}: content does not match its digest (got {digest})")
        return FetchedManifest(endpoint, data, detect_media_type(data, declared), digest)

    def head_manifest(self, ref: ImageReference) -> str | None:
        """The digest a tag points to now, or None when the registry does not say."""
        endpoint = self.origin(ref.registry)
        reference = ref.digest or ref.tag or "latest"
        url = endpoint.url(f"{ref.repository}/manifests/{reference}")
        what = f"manifest {ref.repository}:{reference} from {endpoint.base_url}"
        headers = {"Accept": mediatypes.MANIFEST_ACCEPT}
        with self.read("HEAD", url, endpoint, headers=headers, what=what) as response:
            if response.status != 200:
                return None
            digest = response.header("docker-content-digest")
            return digest if digest and digest.startswith("sha256:") else None

    def put_manifest(
        self, ref: ImageReference, reference: str, data: bytes, media_type: str
    ) -> str:
        from osbuilder.oci.httpx_support import raise_for_status

        endpoint = self.origin(ref.registry)
        what = f"push manifest {ref.repository}:{reference} to {endpoint.base_url}"
        url = endpoint.url(f"{ref.repository}/manifests/{reference}")
        headers = {"Content-Type": media_type}
        with self.send(
            "PUT", url, endpoint, headers=headers, body=lambda: data, what=what
        ) as response:
            raise_for_status(response, what, expected=(200, 201, 202))
        return sha256_digest(data)

    # --- blobs ---------------------------------------------------------------------------------

    def blob_exists(self, ref: ImageReference, digest: str) -> bool:
        endpoint = self.origin(ref.registry)
        what = f"blob {digest[:19]} in {ref.repository} at {endpoint.base_url}"
        url = endpoint.url(f"{ref.repository}/blobs/{digest}")
        with self.read("HEAD", url, endpoint, headers={}, what=what) as response:
            if response.status == 404:
                return False
            if response.status != 200:
                raise ExternalError(f"{what}: HTTP {response.status}{_detail(response)}")
            return True


# --- helpers ------------------------------------------------------------------------------------


def _raise_for_auth(status: int, endpoint: Endpoint, what: str) -> None:
    if status == 401:
        raise UserError(
            f"{what}: authentication required; log in to {endpoint.host} "
            "(docker login, or credentials in $REGISTRY_AUTH_FILE)"
        )
    if status == 403:
        raise UserError(f"{what}: access denied by {endpoint.host}")


def _detail(response: Response) -> str:
    """(the registry's error messages), when its answer says why."""
    try:
        detail = error_detail(json.loads(read_body(response, 64 * 1024, "error")))
    except (ValueError, ExternalError, ConnectionFailed):
        return ""
    return f" ({detail})" if detail else ""
