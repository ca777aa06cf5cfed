"""The control socket: one JSON object per line each way, one request per connection.

    -> {"command": "restart", "name": "redis"}
    <- {"ok": true, "result": ...}   or   {"ok": false, "error": "no service 'x' ..."}

Commands: ps, logs (name, lines), start, stop, restart (name), poweroff, reboot, halt.

Sockets are _socket's, the C module under socket.py: importing socket.py makes its enums
of every AF_/SOCK_/MSG_ constant, 8 M instructions (valgrind) and 0.45 MB of PID 1's
start for a Unix socket that needs none of it.
"""

from __future__ import annotations

import _socket
import json
import os
import threading
from collections import deque
from collections.abc import Callable

from osbuilder.guest.console import Console
from osbuilder.guest.fspath import Path

MAX_REQUEST_BYTES = 65536
DEFAULT_LOG_LINES = 100

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at boot

if TYPE_CHECKING:
    from typing import Any

    Handler = Callable[[dict[str, Any]], Any]


class ControlError(Exception):
    """A request that cannot be served; the message goes back to the client."""


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def read_line(connection: _socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST_BYTES:
            raise ControlError("request too long")
    return data


def tail_lines(path: Path, count: int) -> list[str]:
    """The last `count` lines of a log, read without holding all of it; when the log was
    rotated not long ago, the start of them from the one before (NAME.log.1)."""
    lines: deque[str] = deque(maxlen=count)
    for part in (path.with_name(path.name + ".1"), path):
        try:
            with open(part, errors="replace") as file:
                lines.extend(line.rstrip("\n") for line in file)
        except FileNotFoundError:
            continue
    return list(lines)


class ControlServer:
    def __init__(self, path: Path, handler: Handler, console: Console) -> None:
        self.path = path
        self._handler = handler
        self._console = console
        self._socket: _socket.socket | None = None

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        listener.bind(str(self.path))
        os.chmod(self.path, 0o600)  # root only: it can power the machine off
        listener.listen(16)
        self._socket = listener
        threading.Thread(target=self._accept, name="control", daemon=True).start()

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _accept(self) -> None:
        while self._socket is not None:
            try:
                # socket.py's accept() is this and a wrapper (typeshed leaves it out)
                fd, _ = self._socket._accept()  # type: ignore[attr-defined]
            except OSError:
                if self._socket is None:
                    return
                continue
            connection = _socket.socket(fileno=fd)
            threading.Thread(
                target=self._serve, args=(connection,), name="control client", daemon=True
            ).start()

    def _serve(self, connection: _socket.socket) -> None:
        try:
            connection.settimeout(30)
            response = self._respond(read_line(connection))
            connection.sendall(encode(response))
        except Exception as error:  # a bad client must not hurt the init
            self._console.debug(f"control: {error!r}")
        finally:
            connection.close()

    def _respond(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("command"), str):
                raise ControlError('expected {"command": ...}')
            return {"ok": True, "result": self._handler(request)}
        except ValueError as error:
            return {"ok": False, "error": f"bad request: {error}"}
        except ControlError as error:
            return {"ok": False, "error": str(error)}
        except Exception as error:
            self._console.error(f"control request failed: {error!r}")
            return {"ok": False, "error": f"internal error: {error!r}"}


def request(path: Path, message: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """Send one request and return the decoded response (raises OSError, ValueError)."""
    connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        connection.settimeout(timeout)
        connection.connect(str(path))
        connection.sendall(encode(message))
        answer = json.loads(read_line(connection))
    finally:
        connection.close()
    if not isinstance(answer, dict):
        raise ValueError("the init's answer is not an object")
    return answer
