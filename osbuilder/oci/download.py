"""Downloading blobs into the content store: verified, resumable, and fast.

The bytes of a blob are hashed as they arrive and written to a partial file
in ingest/; a broken connection resumes with `Range: bytes=N-` where the
registry allows it; the file reaches blobs/ only when the whole content
matches its digest (see store.PartialBlob).

The body is read with http.client's `readinto` into one reused buffer:
httpx's h11 path copies each chunk several times and measured at about half
the throughput on loopback (bench/pull.py). httpx still does everything
else: the auth challenge (whose token the direct reads then reuse), and the
whole request when a proxy is configured, since http.client knows none.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import logging
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urljoin, urlsplit

import httpx

from osbuilder.errors import ExternalError, UserError
from osbuilder.oci.model import Descriptor
from osbuilder.oci.progress import NullProgress, Progress
from osbuilder.oci.retry import parse_retry_after
from osbuilder.oci.store import ContentStore, DigestMismatch, PartialBlob

if TYPE_CHECKING:
    from osbuilder.oci.registry import Endpoint, RegistryClient


def proxies_configured() -> bool:
    """Whether the environment names an HTTP proxy (httpx then routes through it)."""
    names = ("http_proxy", "https_proxy", "all_proxy")
    return any(value for key, value in os.environ.items() if key.lower() in names)


log = logging.getLogger(__name__)

_BUFFER = 1024 * 1024
_MAX_REDIRECTS = 5
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class _Body(Protocol):
    status: int

    def header(self, name: str) -> str | None: ...
    def chunks(self, buffer: bytearray) -> Iterator[bytes | memoryview]: ...


class _Retryable(Exception):
    """This attempt failed in a way worth another try (resuming where it stopped)."""

    def __init__(self, why: str, delay: float | None = None) -> None:
        super().__init__(why)
        self.delay = delay


def download_blob(
    client: RegistryClient,
    endpoints: list[Endpoint],
    repository: str,
    blob: Descriptor,
    store: ContentStore,
    progress: Progress | None = None,
) -> int:
    """Fetch `blob` into the store unless present; returns the bytes transferred.

    Endpoints are tried in order (mirrors first); only the last one's failure is fatal.
    """
    progress = progress or NullProgress()
    with store.blob_lock(blob.digest):
        if store.has_blob(blob.digest):
            return 0
        for endpoint in endpoints:
            try:
                return _Download(client, endpoint, repository, blob, store, progress).run()
            except (ExternalError, UserError) as exc:
                if endpoint is endpoints[-1]:
                    raise
                log.info(
                    "%s cannot serve %s (%s); trying the next", endpoint.base_url, blob.digest, exc
                )
        raise AssertionError("no endpoints")  # pragma: no cover - pull_endpoints is never empty


@dataclass
class _Download:
    client: RegistryClient
    endpoint: Endpoint
    repository: str
    blob: Descriptor
    store: ContentStore
    progress: Progress

    def run(self) -> int:
        digest = self.blob.digest
        self.what = f"blob {digest[:19]} of {self.repository} from {self.endpoint.base_url}"
        self.url = self.endpoint.url(f"{self.repository}/blobs/{digest}")
        # http.client knows no proxies: with one configured, httpx does the whole request.
        self.direct = not proxies_configured()
        partial = self.store.partial(digest, self.blob.size)
        self.progress.begin(digest, f"{self.repository}@{digest[7:19]}", self.blob.size)
        try:
            transferred = self._loop(partial)
        except BaseException:
            self.progress.end(digest, "failed")
            raise
        finally:
            partial.close()
        self.progress.end(digest, "done")
        return transferred

    def _loop(self, partial: PartialBlob) -> int:
        retries = self.client.options.retries
        buffer = bytearray(_BUFFER)
        transferred = failures = mismatches = 0
        offset = partial.open()
        if offset:  # an earlier, interrupted pull left this much
            self.progress.restart(self.blob.digest, offset)
        while True:
            try:
                transferred += self._attempt(partial, offset, buffer)
                partial.commit()
                return transferred
            except _Retryable as exc:
                failures += 1
                if failures > retries:
                    raise ExternalError(
                        f"{self.what}: {exc} (gave up after {retries} retries)"
                    ) from None
                self.client.pause(failures - 1, exc.delay, self.what, str(exc))
                offset = partial.offset
            except DigestMismatch as exc:
                mismatches += 1
                if mismatches > 1:  # wrong twice: not a glitch of the connection
                    raise ExternalError(f"{self.what}: {exc}") from None
                log.info("%s: %s; downloading it again", self.what, exc)
                offset = partial.open()  # commit() deleted the bad file: this starts afresh
                self.progress.restart(self.blob.digest, 0)

    def _attempt(self, partial: PartialBlob, offset: int, buffer: bytearray) -> int:
        """One GET from `offset` to the end; returns the bytes received."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with self._get(headers) as body:
            if body.status == 401 and self.direct:
                # Let httpx answer the challenge; its token is then reused by direct reads.
                self.direct = False
                raise _Retryable("authentication challenge", delay=0.0)
            if body.status in _RETRY_STATUS:
                raise _Retryable(
                    f"HTTP {body.status}", parse_retry_after(body.header("retry-after"))
                )
            if body.status == 404:
                raise UserError(f"{self.what}: not found")
            if body.status in (401, 403):
                raise UserError(f"{self.what}: access denied (HTTP {body.status}); log in first")
            if body.status == 416 or (offset and not _resumes_at(body, offset)):
                partial.restart()  # the server will not continue from there: start over
                self.progress.restart(self.blob.digest, 0)
                if body.status != 200:
                    raise _Retryable("range not served", delay=0.0)
            elif body.status not in (200, 206):
                raise ExternalError(f"{self.what}: HTTP {body.status}")
            received = 0
            try:
                for chunk in body.chunks(buffer):
                    partial.write(chunk)
                    received += len(chunk)
                    self.progress.advance(self.blob.digest, len(chunk))
            except (OSError, http.client.HTTPException, httpx.TransportError) as exc:
                raise _Retryable(
                    f"connection broke off after {partial.offset} bytes ({exc})"
                ) from None
            if partial.offset < self.blob.size:
                raise _Retryable(f"body ended after {partial.offset} of {self.blob.size} bytes")
            return received

    @contextlib.contextmanager
    def _get(self, headers: dict[str, str]) -> Iterator[_Body]:
        try:
            if self.direct:
                headers = {**self.client.auth_headers(self.endpoint, "GET", self.url), **headers}
                response = _direct_get(self.url, headers, self.client.options.timeout)
                try:
                    yield response
                finally:
                    response.close()
            else:
                request = self.client.http.build_request("GET", self.url, headers=headers)
                auth = self.client.auth_for(self.endpoint)
                streamed = self.client.http.send(request, auth=auth, stream=True)
                try:
                    yield _HttpxBody(streamed)
                finally:
                    streamed.close()
        except (OSError, http.client.HTTPException, httpx.TransportError) as exc:
            raise _Retryable(f"cannot get it ({exc or type(exc).__name__})") from None


class _HttpxBody:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status = response.status_code

    def header(self, name: str) -> str | None:
        value: str | None = self.response.headers.get(name)
        return value

    def chunks(self, buffer: bytearray) -> Iterator[bytes]:
        yield from self.response.iter_raw()


class _DirectBody:
    """A response read with http.client straight into the caller's buffer."""

    def __init__(
        self, connection: http.client.HTTPConnection, response: http.client.HTTPResponse
    ) -> None:
        self.connection = connection
        self.response = response
        self.status = response.status

    def header(self, name: str) -> str | None:
        return self.response.getheader(name)

    def chunks(self, buffer: bytearray) -> Iterator[memoryview]:
        view = memoryview(buffer)
        while count := self.response.readinto(buffer):
            yield view[:count]

    def close(self) -> None:
        self.response.close()
        self.connection.close()


def _direct_get(url: str, headers: dict[str, str], timeout: float) -> _DirectBody:
    """GET `url`, following redirects; registry credentials never leave their origin."""
    origin = urlsplit(url)[:2]
    for _ in range(_MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                parts.netloc, timeout=timeout, context=_tls_context()
            )
        else:
            connection = http.client.HTTPConnection(parts.netloc, timeout=timeout)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        sent = (
            headers
            if parts[:2] == origin
            else {k: v for k, v in headers.items() if k.lower() != "authorization"}
        )
        try:
            connection.request("GET", target, headers=sent)
            response = connection.getresponse()
        except BaseException:
            connection.close()
            raise
        location = response.getheader("location")
        if response.status in (301, 302, 303, 307, 308) and location:
            response.close()
            connection.close()
            url = urljoin(url, location)
            continue
        return _DirectBody(connection, response)
    raise ExternalError(f"{url}: more than {_MAX_REDIRECTS} redirects")


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The same trust as httpx: certifi's bundle, or $SSL_CERT_FILE when set."""
    import certifi

    return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or certifi.where())


def _resumes_at(body: _Body, offset: int) -> bool:
    """Whether the answer continues our partial file exactly where it ends."""
    if body.status != 206:
        return False
    return (body.header("content-range") or "").startswith(f"bytes {offset}-")
