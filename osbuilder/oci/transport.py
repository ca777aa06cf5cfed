"""HTTP responses as the registry client reads them, and the fast path for reads.

Reads (manifests, blobs, HEADs) go straight through http.client: it reads a
body into a reused buffer, and it costs nothing to import, where httpx
(~30 ms to import, ~20 ms to build its TLS context) copies each chunk
several times and halved the throughput on loopback (bench/pull.py). httpx
does the rest: answering auth challenges, uploads, and every request when a
proxy is configured, since http.client knows none. Both kinds of response
look the same to callers (`Response`), and both turn a broken connection
into `ConnectionFailed`.

Trust, as docker's: certifi's bundle, or the file $SSL_CERT_FILE names, plus
every certificate in the directories $SSL_CERT_DIR lists (colon-separated),
plus, for one registry, the `*.crt` CAs (and `NAME.cert`/`NAME.key` client
certificates) of `HOST[:PORT]/` under the certs.d directories:
$OSBUILDER_CERTS_D (colon-separated) or /etc/containers/certs.d and
/etc/docker/certs.d. A request made for a registry (its redirects, its
token realm) trusts what that registry trusts. A registry named insecure is
reached over TLS without verification, as docker does.

Which scheme a loopback or insecure registry speaks is probed once per
process (`probe_scheme`): one TLS handshake; a server that answers it in
plain HTTP is spoken to in plain HTTP from then on.
"""

from __future__ import annotations

import functools
import http.client
import os
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import urljoin, urlsplit

import certifi

from osbuilder import __version__
from osbuilder.errors import ExternalError, UserError

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
    method: str,
    url: str,
    headers: dict[str, str],
    timeout: float,
    context: ssl.SSLContext | None = None,
) -> DirectResponse:
    """Send a body-less request, following redirects; credentials never leave their origin.
    `context` (default: the trust of the URL's host) verifies every HTTPS hop."""
    origin = urlsplit(url)[:2]
    for _ in range(_MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                parts.netloc, timeout=timeout, context=context or tls_context(parts.netloc)
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
        except ssl.SSLCertVerificationError as exc:
            connection.close()
            raise untrusted(parts.netloc, exc) from None
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


# --- trust ------------------------------------------------------------------------------------

CERTS_D_VARIABLE = "OSBUILDER_CERTS_D"
DEFAULT_CERTS_D = ("/etc/containers/certs.d", "/etc/docker/certs.d")


def certs_d_roots() -> list[Path]:
    """The directories holding per-registry `HOST[:PORT]/` trust, first match wins."""
    value = os.environ.get(CERTS_D_VARIABLE)
    return [Path(p) for p in (value.split(":") if value else DEFAULT_CERTS_D) if p]


def registry_certs(host: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The CA files (`*.crt`) and client certificate pairs (`NAME.cert`, `NAME.key`) of
    `host` (HOST[:PORT]) in the first certs.d directory that has a folder for it."""
    for root in certs_d_roots():
        folder = root / host
        try:
            names = sorted(entry.name for entry in folder.iterdir() if entry.is_file())
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise UserError(f"{folder}: cannot read ({exc.strerror or exc})") from None
        cas = tuple(str(folder / n) for n in names if n.endswith(".crt"))
        pairs = []
        for name in names:
            stem, ext = os.path.splitext(name)
            other = {".cert": ".key", ".key": ".cert"}.get(ext)
            if other and stem + other not in names:
                raise UserError(f"{folder / name}: has no {stem + other} beside it")
            if ext == ".cert":
                pairs.append((str(folder / name), str(folder / (stem + ".key"))))
        return cas, tuple(pairs)
    return (), ()


def tls_context(host: str | None = None, *, verify: bool = True) -> ssl.SSLContext:
    """The trust for requests made for registry `host` (see the module's doc); with
    `verify` false (a registry named insecure), a context that checks nothing."""
    if not verify:
        return _unverified_context()
    cas, pairs = registry_certs(host) if host else ((), ())
    return _context(
        os.environ.get("SSL_CERT_FILE") or None, os.environ.get("SSL_CERT_DIR") or None, cas, pairs
    )


@functools.cache
def _context(
    cafile: str | None,
    cadirs: str | None,
    cas: tuple[str, ...],
    pairs: tuple[tuple[str, str], ...],
) -> ssl.SSLContext:
    if cafile is None:
        cafile = certifi.where()
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise UserError(f"$SSL_CERT_FILE ({cafile}): no usable CA certificates ({exc})") from None
    for folder in (cadirs or "").split(":"):
        if folder:
            _load_directory(context, Path(folder))
    for path in cas:
        _load_cas(context, path, path)
    for cert, key in pairs:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise UserError(f"{cert}: not a usable client certificate and key ({exc})") from None
    return context


def _load_cas(context: ssl.SSLContext, path: str, what: str) -> None:
    try:
        context.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise UserError(f"{what} ({path}): no usable CA certificates ({exc})") from None


def _load_directory(context: ssl.SSLContext, folder: Path) -> None:
    """Every certificate in `folder`, as Go (so docker) reads $SSL_CERT_DIR: any file,
    no hashed names needed; files that hold none are passed over. A folder that has
    OpenSSL's hashed names (c_rehash, as /etc/ssl/certs) is looked up by them instead,
    when a certificate needs its issuer: reading ~300 files would cost ~100 ms."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return
    if any(_HASHED_NAME.fullmatch(entry.name) for entry in entries):
        context.load_verify_locations(capath=str(folder))
        return
    seen = set()
    for entry in entries:
        real = entry.resolve()
        if real in seen or not real.is_file():
            continue
        seen.add(real)
        try:
            context.load_verify_locations(cafile=str(real))
        except (OSError, ssl.SSLError):
            continue


_HASHED_NAME = re.compile(r"[0-9a-f]{8}\.[0-9]+")


@functools.cache
def _unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def untrusted(host: str, exc: ssl.SSLCertVerificationError) -> UserError:
    """The one line for a certificate the trust does not accept."""
    reason = exc.verify_message or exc.reason or str(exc)
    roots = certs_d_roots() if os.environ.get(CERTS_D_VARIABLE) else [Path(DEFAULT_CERTS_D[-1])]
    return UserError(
        f"{host}: TLS certificate not trusted ({reason}); give its CA in $SSL_CERT_FILE, "
        f"$SSL_CERT_DIR or {roots[0] / host / 'ca.crt'}, or name the registry with "
        "--insecure-registry"
    )


# --- HTTPS or plain HTTP -----------------------------------------------------------------------

_schemes: dict[str, str] = {}
_probe_locks: dict[str, threading.Lock] = {}
_probe_guard = threading.Lock()
#: Each host probed, in order: for tests that count handshakes.
probes: list[str] = []


def probe_scheme(host: str, *, timeout: float) -> str:
    """ "https" or "http": which a registry that may speak either (loopback, insecure)
    speaks, learnt with one TLS handshake per host and process and remembered. A server
    that answers a ClientHello with anything but TLS speaks plain HTTP; one that cannot
    be reached is not remembered (and gets "http", as before TLS was tried)."""
    key = host
    with _probe_guard:
        if key in _schemes:
            return _schemes[key]
        lock = _probe_locks.setdefault(key, threading.Lock())
    with lock:
        if key in _schemes:
            return _schemes[key]
        scheme = _probe(host, timeout)
        if scheme is not None:
            with _probe_guard:
                _schemes[key] = scheme
        return scheme or "http"


def forget_schemes() -> None:
    """Forget what the probes learnt (a test's servers come and go on reused ports)."""
    with _probe_guard:
        _schemes.clear()


def _probe(host: str, timeout: float) -> str | None:
    probes.append(host)
    parts = urlsplit(f"//{host}")
    name, port = parts.hostname or host, parts.port or 443
    try:
        raw = socket.create_connection((name, port), timeout=min(timeout, 10.0))
    except OSError:
        return None
    # Whether it speaks TLS, not whether it is trusted (requests check that): no CA bundle
    # to read, so a plain-HTTP registry costs one refused handshake and nothing more.
    try:
        with _unverified_context().wrap_socket(raw):
            return "https"
    except ssl.SSLError as exc:
        # An alert is a TLS server refusing us (e.g. wanting a client certificate).
        alert = "ALERT" in (exc.reason or "")
        return "https" if alert else "http"
    except ConnectionError:
        return "http"  # a plain HTTP server closing on what it cannot parse
    except OSError:  # a timeout: nothing learnt
        return None
    finally:
        raw.close()
