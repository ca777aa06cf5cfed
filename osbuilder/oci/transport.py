"""HTTP responses as the registry client reads them, and the fast path for reads.

Reads (manifests, blobs, HEADs) go straight through http.client: it reads a
body into a reused buffer, and it costs nothing to import, where httpx
(~30 ms to import, ~20 ms to build its TLS context) copies each chunk
several times and halved the throughput on loopback (bench/pull.py). httpx
does the rest: answering auth challenges, uploads, and every request when a
proxy is configured, since http.client knows none. Both kinds of response
look the same to callers (`Response`), and both turn a broken connection
into `ConnectionFailed`.
"""

from __future__ import annotations

import functools
import http.client
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urljoin, urlsplit

from osbuilder import __version__
from osbuilder.errors import ExternalError

if TYPE_CHECKING:
    import ssl

USER_AGENT = f"osbuilder/{__version__}"
_MAX_REDIRECTS = 5


class ConnectionFailed(Exception):
    """The connection could not be made or broke off; worth retrying."""


class Response(Protocol):
    status: int

    def header(self, name: str) -> str | None: ...
    def chunks(self, buffer: bytearray) -> Iterator[bytes | memoryview]: ...
    def close(self) -> None: ...


def proxies_configured() -> bool:
    """Whether the environment names an HTTP proxy (httpx then routes through it)."""
    names = ("http_proxy", "https_proxy", "all_proxy")
    return any(value for key, value in os.environ.items() if key.lower() in names)


def read_body(response: Response, limit: int, what: str) -> bytes:
    """The whole body of a small document, refusing more than `limit` bytes."""
    parts, size = [], 0
    for chunk in response.chunks(bytearray(64 * 1024)):
        size += len(chunk)
        if size > limit:
            raise ExternalError(f"{what}: larger than {limit} bytes; not a manifest")
        parts.append(bytes(chunk))
    return b"".join(parts)


def error_detail(document: object) -> str:
    """The messages of a distribution-spec error body: {"errors": [{"code", "message"}]}."""
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return ""
    return "; ".join(
        str(e.get("message") or e.get("code")) for e in errors[:3] if isinstance(e, dict)
    )


class DirectResponse:
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
        try:
            while count := self.response.readinto(buffer):
                yield view[:count]
        except (OSError, http.client.HTTPException) as exc:
            raise ConnectionFailed(describe(exc)) from None

    def close(self) -> None:
        self.response.close()
        self.connection.close()


def direct_request(
    method: str, url: str, headers: dict[str, str], timeout: float
) -> DirectResponse:
    """Send a body-less request, following redirects; credentials never leave their origin."""
    origin = urlsplit(url)[:2]
    for _ in range(_MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                parts.netloc, timeout=timeout, context=tls_context()
            )
        else:
            connection = http.client.HTTPConnection(parts.netloc, timeout=timeout)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        sent = {"User-Agent": USER_AGENT, **headers}
        if parts[:2] != origin:
            sent = {k: v for k, v in sent.items() if k.lower() != "authorization"}
        try:
            connection.request(method, target, headers=sent)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise ConnectionFailed(describe(exc)) from None
        except BaseException:
            connection.close()
            raise
        location = response.getheader("location")
        if response.status in (301, 302, 303, 307, 308) and location:
            response.close()
            connection.close()
            url = urljoin(url, location)
            continue
        return DirectResponse(connection, response)
    raise ExternalError(f"{url}: more than {_MAX_REDIRECTS} redirects")


def describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect ({exc})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The same trust as httpx: certifi's bundle, or $SSL_CERT_FILE when set."""
    import ssl

    import certifi

    return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or certifi.where())
