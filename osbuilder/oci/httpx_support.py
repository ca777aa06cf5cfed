"""Everything that needs httpx, imported only when a command needs it.

httpx answers authentication challenges, sends uploads and manifests, and
carries every request when a proxy is configured (see transport.py for why
plain reads do without it).
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Generator, Iterator

import httpx

from osbuilder.errors import ExternalError, UserError
from osbuilder.oci.auth import Challenge, RegistryAuth, basic_header, parse_challenge
from osbuilder.oci.transport import (
    USER_AGENT,
    ConnectionFailed,
    error_detail,
    proxies_configured,
    tls_context,
    untrusted,
)

#: The request extension naming the TLS context of the registry a request is made for;
#: httpx copies extensions to the requests of its redirects.
TLS_EXTENSION = "osbuilder.tls"


def new_client(timeout: float) -> httpx.Client:
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    if proxies_configured():
        # httpx reads proxies from the environment only with its own transports, which
        # then trust $SSL_CERT_FILE/$SSL_CERT_DIR but no registry's certs.d.
        return httpx.Client(
            timeout=httpx.Timeout(timeout, connect=10.0),
            follow_redirects=True,
            headers={"User-Agent": USER_AGENT},
            verify=tls_context(),
        )
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=10.0),
        follow_redirects=True,
        headers={"User-Agent": USER_AGENT},
        transport=_TrustTransport(limits=limits),
    )


def send_streaming(
    client: httpx.Client,
    method: str,
    url: str | httpx.URL,
    headers: dict[str, str],
    auth: RegistryAuth,
    content: bytes | Iterator[bytes] | None = None,
    tls: ssl.SSLContext | None = None,
) -> HttpxResponse:
    """One request through httpx, answering auth challenges on the way; `tls` is the
    trust of the registry it is made for, also on its redirects and token realm."""
    extensions = {TLS_EXTENSION: tls} if tls is not None else None
    request = client.build_request(
        method, url, headers=headers, content=content, extensions=extensions
    )
    try:
        return HttpxResponse(client.send(request, auth=HttpxAuth(auth), stream=True))
    except httpx.TransportError as exc:
        raise transport_error(exc) from None


def transport_error(exc: httpx.TransportError) -> Exception:
    """A certificate the trust refuses: one line, not worth retrying; else ConnectionFailed."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return untrusted(exc.request.url.netloc.decode(), cause)
        cause = cause.__cause__ or cause.__context__
    return ConnectionFailed(describe_transport_error(exc))


class HttpxResponse:
    """An httpx response seen as a transport.Response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status = response.status_code

    def header(self, name: str) -> str | None:
        value: str | None = self.response.headers.get(name)
        return value

    def chunks(self, buffer: bytearray) -> Iterator[bytes]:
        try:
            yield from self.response.iter_raw()
        except httpx.TransportError as exc:
            raise ConnectionFailed(describe_transport_error(exc)) from None

    def close(self) -> None:
        self.response.close()


class HttpxAuth(httpx.Auth):
    """The challenge flow of a registry, run by httpx; RegistryAuth keeps what it learns."""

    def __init__(self, auth: RegistryAuth) -> None:
        self.auth = auth

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        key = self.auth.scope_key(request.method, str(request.url))
        self._authorise(request, key)
        response = yield request
        if response.status_code != 401:
            return
        challenge = parse_challenge(response.headers.get("www-authenticate", ""))
        if challenge is None:
            return
        if challenge.scheme == "basic":
            if not self.auth.use_basic():
                return  # no credentials: the caller turns the 401 into "log in first"
        elif challenge.scheme == "bearer":
            wanted = tuple(sorted({*key, *challenge.params.get("scope", "").split()} - {""}))
            token_response = yield self._token_request(challenge, wanted, request.extensions)
            token_response.read()
            token, lifetime = self._token(token_response, challenge)
            self.auth.remember_token(key, token, lifetime)
        else:
            return
        self._authorise(request, key)
        yield request

    def _authorise(self, request: httpx.Request, key: tuple[str, ...]) -> None:
        value = self.auth.header_for(key)
        if value is not None:
            request.headers["Authorization"] = value

    def _token_request(
        self, challenge: Challenge, scopes: tuple[str, ...], inherited: dict[str, object]
    ) -> httpx.Request:
        """The request for a token; the realm is trusted as the registry is."""
        extensions = {k: v for k, v in inherited.items() if k == TLS_EXTENSION}
        realm = challenge.params.get("realm")
        if not realm:
            raise ExternalError("registry asked for a bearer token but named no realm")
        params: list[tuple[str, str | int | float | bool | None]] = []
        if service := challenge.params.get("service"):
            params.append(("service", service))
        params += [("scope", scope) for scope in scopes]
        credentials = self.auth.credentials
        if credentials is not None and credentials.identity_token:
            # OAuth refresh token: POST form, as Docker does.
            form = {
                "grant_type": "refresh_token",
                "refresh_token": credentials.identity_token,
                "client_id": "osbuilder",
                **dict(params[:1]),
            }
            if scopes:
                form["scope"] = " ".join(scopes)
            return httpx.Request("POST", realm, data=form, extensions=extensions)
        headers = {}
        if credentials is not None:
            headers["Authorization"] = basic_header(credentials)
        return httpx.Request("GET", realm, params=params, headers=headers, extensions=extensions)

    def _token(self, response: httpx.Response, challenge: Challenge) -> tuple[str, float]:
        realm = challenge.params.get("realm", "")
        if response.status_code in (401, 403):
            hint = "check the credentials" if self.auth.credentials else "log in first"
            raise UserError(f"token server {realm} refused access ({response.status_code}): {hint}")
        if response.status_code != 200:
            raise ExternalError(f"token server {realm} answered {response.status_code}")
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
            lifetime = float(body.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            raise ExternalError(f"token server {realm} sent no usable token") from None
        if not isinstance(token, str) or not token:
            raise ExternalError(f"token server {realm} sent no usable token")
        return token, lifetime


def describe_transport_error(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc})"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"connection broke off ({exc})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def raise_for_status(
    response: httpx.Response, what: str, expected: tuple[int, ...] = (200,)
) -> None:
    if response.status_code in expected:
        return
    detail = ""
    with contextlib.suppress(httpx.HTTPError, ValueError):
        response.read()
        detail = error_detail(response.json())
    if response.status_code == 404:
        raise UserError(f"{what}: not found" + (f" ({detail})" if detail else ""))
    raise ExternalError(f"{what}: HTTP {response.status_code}" + (f" ({detail})" if detail else ""))


class _TrustTransport(httpx.BaseTransport):
    """One httpx transport per trust: a request goes through the one of the TLS context
    its extension names (the registry's), else that of its own host. Each is made on
    first use: building a TLS context (reading the CA bundle) costs ~20 ms that a push
    to a plain-HTTP local registry never needs."""

    def __init__(self, **options: object) -> None:
        self._options = options
        self._transports: dict[int, tuple[ssl.SSLContext, httpx.HTTPTransport]] = {}
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        context = request.extensions.get(TLS_EXTENSION)
        if not isinstance(context, ssl.SSLContext):
            if request.url.scheme == "https":
                context = tls_context(request.url.netloc.decode())
            else:
                context = _PLAIN
        with self._lock:
            entry = self._transports.get(id(context))
            if entry is None:
                transport = httpx.HTTPTransport(verify=context, **self._options)  # type: ignore[arg-type]
                entry = self._transports[id(context)] = (context, transport)
        return entry[1].handle_request(request)

    def close(self) -> None:
        with self._lock:
            for _, transport in self._transports.values():
                transport.close()
            self._transports.clear()


#: Stands for "no TLS" (plain HTTP requests share one transport; it never reads it).
_PLAIN = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
