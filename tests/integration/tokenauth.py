"""A minimal Docker token server (the `auth.token` flow of the distribution registry).

The registry answers 401 with `WWW-Authenticate: Bearer realm=...,service=...,scope=...`;
the client then asks the realm for a token with Basic credentials and gets back a JWT
that the registry verifies against `auth.token.rootcertbundle`.

What distribution 2.8.2 insists on (registry/auth/token/token.go):
  * `aud` must be a JSON *string* (ClaimSet.Audience is a Go string; a list, as RFC 7519
    allows, fails to unmarshal and the token is rejected as malformed);
  * `exp`, `nbf` and `iat` must be JSON integers (Go int64; floats are rejected);
  * the signing key is found through `x5c` (chain verified against the bundle), `jwk`, or
    `kid` equal to the libtrust fingerprint of a bundle certificate's public key.
We use `kid`: the token stays small and needs no certificate chain.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

TOKEN_PATH = "/token"
SHUTDOWN_POLL = 0.02  # how often serve_forever() checks for shutdown (default 0.5 s)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The key ID libtrust (and so the registry) computes for a public key.

    SHA-256 of the DER SubjectPublicKeyInfo, truncated to 240 bits, base32 without
    padding, in 12 colon-separated groups of 4 characters.
    """
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii").rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


class SigningKey:
    """A P-256 key and its self-signed certificate (the registry's root cert bundle)."""

    def __init__(self, common_name: str) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.key_id = libtrust_key_id(self._key.public_key())

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def sign_jwt(self, claims: dict[str, Any]) -> str:
        """A compact JWS (ES256): JOSE wants the raw r||s signature, not DER."""
        header = {"typ": "JWT", "alg": "ES256", "kid": self.key_id}
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        der = self._key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input}.{_b64url(signature)}"


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server answered, for tests to assert on."""

    method: str
    path: str
    service: str | None
    scopes: tuple[str, ...]
    account: str | None
    username: str | None  # from the Basic credentials, None when none were sent
    granted: bool  # False: answered 401


@dataclass(frozen=True)
class ResourceScope:
    """A scope such as `repository:library/alpine:pull,push`, split into its parts."""

    type: str
    name: str
    actions: tuple[str, ...]

    @classmethod
    def parse(cls, scope: str) -> ResourceScope:
        head, _, actions = scope.rpartition(":")
        type_, _, name = head.partition(":")
        if not type_ or not name:
            raise ValueError(f"malformed scope {scope!r}")
        return cls(type_, name, tuple(a for a in actions.split(",") if a))

    def claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


@dataclass
class TokenServer:
    """Issues registry tokens to one user, granting exactly the scopes asked for.

    Use as a context manager; it serves from a thread on 127.0.0.1 (a free port).
    """

    workdir: Path
    username: str = "tokenuser"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    service: str = "osbuilder-test-registry"
    issuer: str = "osbuilder-test-token-issuer"
    expires_in: int = 300
    host: str = "127.0.0.1"  # another loopback address (127.0.0.2) is another host
    tls: tuple[Path, Path] | None = None  # (certificate, key): serve HTTPS
    requests: list[TokenRequest] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.signing_key = SigningKey(self.issuer)
        self.rootcertbundle = self.workdir / "token-root.pem"
        self.rootcertbundle.write_bytes(self.signing_key.certificate_pem())
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("token server is not running")
        host, port = self._httpd.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host!s}:{port}"

    @property
    def realm(self) -> str:
        return self.url + TOKEN_PATH

    def __enter__(self) -> TokenServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._handle(self)

            do_POST = do_GET  # answered 404, see _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass  # tests assert on `requests`; stderr noise helps nobody

        # HTTP/1.0 (the handler default): one request per connection, so no idle
        # keep-alive connection can hold a handler thread open at shutdown.
        self._httpd = ThreadingHTTPServer((self.host, 0), Handler)
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._httpd.daemon_threads = False
        self._httpd.block_on_close = True  # server_close() joins handler threads
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            args=(SHUTDOWN_POLL,),
            name="token-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._httpd is not None and self._thread is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()

    def issue_token(self, subject: str, scopes: list[ResourceScope]) -> str:
        now = int(time.time())
        return self.signing_key.sign_jwt(
            {
                "iss": self.issuer,
                "sub": subject,
                "aud": self.service,
                "exp": now + self.expires_in,
                "nbf": now - 1,
                "iat": now,
                "jti": secrets.token_hex(8),
                "access": [scope.claim() for scope in scopes],
            }
        )

    def _basic_username(self, authorization: str | None) -> tuple[str | None, bool]:
        """(username sent, whether the credentials are right)."""
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return None, False
        try:
            username, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, False
        valid = secrets.compare_digest(username, self.username) and secrets.compare_digest(
            password, self.password
        )
        return username, valid

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        # Read any body: closing with unread input would reset the connection.
        handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        url = urlsplit(handler.path)
        query = parse_qs(url.query)
        scopes = tuple(query.get("scope", []))
        username, valid = self._basic_username(handler.headers.get("Authorization"))
        # Only the GET flow: a POST (the OAuth2 password grant) gets the 404 that tells
        # clients such as containerd to fall back to GET.
        found = url.path == TOKEN_PATH and handler.command == "GET"
        granted = valid and found
        with self._lock:
            self.requests.append(
                TokenRequest(
                    method=handler.command,
                    path=url.path,
                    service=query.get("service", [None])[0],
                    scopes=scopes,
                    account=query.get("account", [None])[0],
                    username=username,
                    granted=granted,
                )
            )
        if not found:
            self._reply(handler, 404, {"error": "not found"})
            return
        if not granted:
            self._reply(
                handler,
                401,
                {"error": "invalid credentials"},
                {"WWW-Authenticate": 'Basic realm="osbuilder-test-token"'},
            )
            return
        try:
            # A client may send several scope parameters, each possibly space-separated.
            parsed = [ResourceScope.parse(s) for value in scopes for s in value.split()]
        except ValueError as exc:
            self._reply(handler, 400, {"error": str(exc)})
            return
        token = self.issue_token(username or "", parsed)
        issued_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        self._reply(
            handler,
            200,
            {
                "token": token,
                "access_token": token,
                "expires_in": self.expires_in,
                "issued_at": issued_at,
            },
        )

    @staticmethod
    def _reply(
        handler: BaseHTTPRequestHandler,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
