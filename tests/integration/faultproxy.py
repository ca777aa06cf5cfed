"""A fault-injecting HTTP/1.1 reverse proxy to put between a registry client and a registry.

    with FaultProxy(registry.host) as proxy:
        rule = proxy.inject(Truncate(), method="GET", path=r"/v2/.+/blobs/sha256:", times=1)
        ...  # point the client at proxy.host
        assert rule.fired == 1 and rule.seen == 2  # the client retried

Rules are tried in the order they were added; the first matching rule that still has
firings left applies its fault, and a request no rule fires on passes through untouched.
The proxy keeps client connections alive (HTTP/1.1) and opens one upstream connection per
request, forwarding the request line, headers (Host and Range included) and body as sent:
the registry builds upload `Location`s from Host, so uploads keep going through the proxy.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import re
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, Protocol

CHUNK = 64 * 1024
UPSTREAM_TIMEOUT = 60.0
IDLE_TIMEOUT = 60.0  # a keep-alive connection idle for this long is closed
SHUTDOWN_POLL = 0.02  # how often serve_forever() checks for shutdown (default 0.5 s)

# RFC 9110 section 7.6.1: headers meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


# --- Faults ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Truncate:
    """Send the full Content-Length but only `fraction` of the body, then close cleanly."""

    fraction: float = 0.5


@dataclass(frozen=True)
class Corrupt:
    """Flip the bits of the body's middle byte: same length, wrong digest."""


@dataclass(frozen=True)
class Status:
    """Answer `code` (with `Retry-After` if given) without asking upstream."""

    code: int
    retry_after: int | None = None


@dataclass(frozen=True)
class ResetMidway:
    """Send `fraction` of the body, then reset the connection (RST: SO_LINGER 0, close)."""

    fraction: float = 0.5


@dataclass(frozen=True)
class Slow:
    """Send the body at about `bytes_per_second`."""

    bytes_per_second: int


Fault = Truncate | Corrupt | Status | ResetMidway | Slow


@dataclass
class Rule:
    """A fault for requests matching `method` (None: any) and the `path` regex (searched in
    the request target, query included). It fires `times` times (None: always)."""

    fault: Fault
    path: re.Pattern[str]
    method: str | None = None
    times: int | None = 1
    seen: int = 0  # matching requests, including those passed through once exhausted
    fired: int = 0  # requests the fault was applied to

    def matches(self, method: str, target: str) -> bool:
        return (self.method is None or self.method == method) and bool(self.path.search(target))

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    target: str  # path and query
    range: str | None  # the Range header, to check that a retry resumed
    fault: Fault | None
    client_port: int  # the client's port: equal for requests on one kept-alive connection


# --- Proxy -------------------------------------------------------------------------------


class HasHost(Protocol):
    """Anything with a "HOST:PORT" `.host`, such as a running Registry."""

    @property
    def host(self) -> str: ...


# The `fault_proxy` fixture: start a proxy in front of a registry or a "HOST:PORT".
StartFaultProxy = Callable[[HasHost | str], "FaultProxy"]


class FaultProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to `upstream` ("HOST:PORT")."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.requests: list[ProxiedRequest] = []
        self.errors: list[BaseException] = []  # unexpected handler errors
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(SHUTDOWN_POLL,),
            name=f"fault-proxy-{self.port}",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def inject(
        self, fault: Fault, *, path: str = "", method: str | None = None, times: int | None = 1
    ) -> Rule:
        """Add a rule; keep the returned Rule to read its counters."""
        rule = Rule(fault, re.compile(path), method.upper() if method else None, times)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, abort transfers in progress and join every handler thread."""
        self._stopping.set()
        if self._thread.is_alive():
            self._server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for sock in connections:  # wakes handlers blocked on idle keep-alive reads
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._server.server_close()  # joins handler threads (block_on_close)
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _match(
        self, method: str, target: str, range_: str | None, client_port: int
    ) -> Fault | None:
        """Count the request against the rules and return the fault to apply, if any."""
        with self._lock:
            fault = None
            for rule in self._rules:
                if not rule.matches(method, target):
                    continue
                rule.seen += 1
                if fault is None and not rule.exhausted:
                    rule.fired += 1
                    fault = rule.fault
            self.requests.append(ProxiedRequest(method, target, range_, fault, client_port))
            return fault

    def _track(self, sock: socket.socket, live: bool) -> None:
        with self._lock:
            if live:
                self._connections.add(sock)
            else:
                self._connections.discard(sock)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins handler threads
    allow_reuse_address = True

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exception()
        # A client going away (killed, or reading only part of a body) is routine here.
        if isinstance(exc, ConnectionError | TimeoutError):
            return
        if exc is not None:
            self.proxy.errors.append(exc)
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as registry clients expect
    timeout = IDLE_TIMEOUT
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.proxy._track(self.connection, live=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.proxy._track(self.connection, live=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read proxy.requests instead

    def do_proxy(self) -> None:
        proxy = self.server.proxy
        fault = proxy._match(
            self.command, self.path, self.headers.get("Range"), self.client_address[1]
        )
        body = self._request_body()
        if isinstance(fault, Status):
            for _ in body or ():  # drain it, so the connection stays usable
                pass
            self._send_status(fault)
            return
        upstream = http.client.HTTPConnection(proxy.upstream, timeout=UPSTREAM_TIMEOUT)
        try:
            try:
                response = self._forward(upstream, body)
            except (OSError, http.client.HTTPException) as exc:
                self.close_connection = True  # the request body may be half read
                self._send_status(Status(502), message=f"upstream: {exc}")
                return
            self._relay(response, fault)
        finally:
            upstream.close()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_proxy

    # --- request side ---

    def _request_body(self) -> Iterator[bytes] | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return _read_chunked(self.rfile)
        length = int(self.headers.get("Content-Length") or 0)
        return _read_exactly(self.rfile, length) if length else None

    def _forward(
        self, upstream: http.client.HTTPConnection, body: Iterator[bytes] | None
    ) -> http.client.HTTPResponse:
        upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() not in HOP_BY_HOP:
                upstream.putheader(name, value)
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if chunked:
            upstream.putheader("Transfer-Encoding", "chunked")
        upstream.endheaders(message_body=body, encode_chunked=chunked)
        return upstream.getresponse()

    # --- response side ---

    def _send_status(self, fault: Status, message: str = "injected fault") -> None:
        data = json.dumps({"errors": [{"code": "UNKNOWN", "message": message}]}).encode()
        self.send_response_only(fault.code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if fault.retry_after is not None:
            self.send_header("Retry-After", str(fault.retry_after))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _relay(self, response: http.client.HTTPResponse, fault: Fault | None) -> None:
        headers = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        read: Callable[[int], bytes] = response.read
        if self.command == "HEAD" or response.status in (204, 304):
            length = 0
        elif (declared := response.getheader("Content-Length")) is not None:
            length = int(declared)
        else:  # chunked upstream: rare for a registry; buffer it to send a length
            data = response.read()
            length = len(data)
            headers.append(("Content-Length", str(length)))
            read = io.BytesIO(data).read
        self.send_response_only(response.status, response.reason)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self._send_body(read, length, fault)

    def _send_body(self, read: Callable[[int], bytes], length: int, fault: Fault | None) -> None:
        limit = length
        if isinstance(fault, Truncate | ResetMidway):
            limit = int(length * fault.fraction)
        flip_at = length // 2 if isinstance(fault, Corrupt) and length else -1
        step = CHUNK
        if isinstance(fault, Slow):  # ~10 writes a second
            step = max(1, min(CHUNK, fault.bytes_per_second // 10))
        started = time.monotonic()
        sent = 0
        while sent < limit:
            chunk = read(min(step, limit - sent))
            if not chunk:
                break  # upstream sent less than it declared: pass that on
            if sent <= flip_at < sent + len(chunk):
                flipped = bytearray(chunk)
                flipped[flip_at - sent] ^= 0xFF
                chunk = bytes(flipped)
            self.wfile.write(chunk)
            sent += len(chunk)
            if isinstance(fault, Slow):
                self._pace(started, sent, fault.bytes_per_second)
        if isinstance(fault, ResetMidway):
            self._reset()
        elif sent < length:  # a short body is only delimited by closing
            self.close_connection = True

    def _pace(self, started: float, sent: int, bytes_per_second: int) -> None:
        delay = started + sent / bytes_per_second - time.monotonic()
        # Event.wait, not sleep: stop() must not wait out a slow transfer.
        if delay > 0 and self.server.proxy._stopping.wait(delay):
            raise ConnectionAbortedError("fault proxy stopping")

    def _reset(self) -> None:
        """Abort the connection with an RST: SO_LINGER on with a zero timeout, then close."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # the makefile() reader holds the socket open otherwise
        self.connection.close()


# --- body readers -----------------------------------------------------------------------


def _read_exactly(stream: io.BufferedIOBase, length: int) -> Iterator[bytes]:
    remaining = length
    while remaining:
        chunk = stream.read(min(CHUNK, remaining))
        if not chunk:
            raise ConnectionError("client closed the connection mid-body")
        remaining -= len(chunk)
        yield chunk


def _read_chunked(stream: io.BufferedIOBase) -> Iterator[bytes]:
    """Decode a chunked request body (RFC 9112 section 7.1), discarding any trailers."""
    while True:
        size_line = stream.readline(1024)
        if not size_line:
            raise ConnectionError("client closed the connection mid-body")
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            while stream.readline(1024).strip():
                pass
            return
        yield from _read_exactly(stream, size)
        stream.readline(1024)  # the CRLF after each chunk
