"""Run Debian's `docker-registry` (CNCF distribution 2.8) on loopback for tests.

`running_registry()` writes a config into a work directory, starts the registry on a free
127.0.0.1 port with filesystem storage there, waits until `GET /v2/` answers and stops it
at exit. Start-up takes well under a second, so fixtures can afford one per test.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import stop_process
from tests.integration.tokenauth import TokenRequest, TokenServer

REGISTRY_BINARY = "docker-registry"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
PORT_ATTEMPTS = 3
LOG_TAIL_LINES = 30


# An *_proxy variable in the environment must not capture loopback probes.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class RegistryStartError(RuntimeError):
    pass


@dataclass(frozen=True)
class Registry:
    """A running registry. `username`/`password` are set when it requires credentials."""

    host: str  # "127.0.0.1:PORT", as used in image references
    url: str  # "http://127.0.0.1:PORT"
    root: Path  # filesystem storage root directory
    log: Path  # the registry's stdout and stderr
    config: Path
    username: str | None = None
    password: str | None = None
    token_server: TokenServer | None = None

    @property
    def creds(self) -> str | None:
        """Credentials in skopeo's `USER:PASSWORD` form, or None for an open registry."""
        if self.username is None or self.password is None:
            return None
        return f"{self.username}:{self.password}"

    @property
    def token_requests(self) -> list[TokenRequest]:
        """The requests its token server has answered so far (token auth only)."""
        if self.token_server is None:
            raise AttributeError("this registry does not use token auth")
        return list(self.token_server.requests)


def free_port() -> int:
    """A port free right now; the registry binds it moments later (hence start retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def htpasswd_entry(username: str, password: str) -> str:
    """A bcrypt htpasswd line (the only hash the registry's htpasswd auth accepts)."""
    result = subprocess.run(
        ["htpasswd", "-nbB", "-C", "5", username, password],
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() + "\n"


def _auth_config(
    workdir: Path, basic: tuple[str, str] | None, token: TokenServer | None
) -> dict[str, Any]:
    if basic and token:
        raise ValueError("choose Basic or token auth, not both")
    if basic:
        htpasswd = workdir / "htpasswd"
        htpasswd.write_text(htpasswd_entry(*basic))
        return {"htpasswd": {"realm": "osbuilder-test", "path": str(htpasswd)}}
    if token:
        return {
            "token": {
                "realm": token.realm,
                "service": token.service,
                "issuer": token.issuer,
                "rootcertbundle": str(token.rootcertbundle),
            }
        }
    return {}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`base` with `extra` merged in, key by key into nested mappings."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _config(root: Path, port: int, auth: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text"},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
            # The purger walks the storage at start-up; nothing here is ever stale.
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {
            "addr": f"127.0.0.1:{port}",
            # A fixed secret silences the start-up warning about a generated one.
            "secret": secrets.token_hex(16),
        },
    }
    if auth:
        config["auth"] = auth
    return config


def start_loopback_server(
    name: str,
    command: Callable[[int], Sequence[str]],
    log: Path,
    probe: str = "/",
    error: type[Exception] = RegistryStartError,
) -> tuple[subprocess.Popen[bytes], int]:
    """Start `command(port)` on a free 127.0.0.1 port, its output appended to `log`; return
    it once GET `probe` gets any HTTP answer. free_port() can race with another process: a
    lost race shows as an early exit saying the address is in use, and is tried again."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = free_port()
        with log.open("ab") as log_file:
            process = subprocess.Popen(
                list(command(port)),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_until_up(name, process, f"http://127.0.0.1:{port}{probe}", log, error)
            return process, port
        except error:
            stop_process(process, STOP_TIMEOUT)
            if attempt == PORT_ATTEMPTS or "in use" not in log_tail(log):
                raise
    raise AssertionError("unreachable")


def _wait_until_up(
    name: str,
    process: subprocess.Popen[bytes],
    url: str,
    log: Path,
    error: type[Exception],
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise error(f"{name} exited with {process.returncode}:\n{log_tail(log)}")
        try:
            with _NO_PROXY.open(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is serving
        except OSError:
            time.sleep(0.01)
    raise error(f"{name} did not answer on {url} within {START_TIMEOUT}s:\n{log_tail(log)}")


@contextlib.contextmanager
def running_registry(
    workdir: Path,
    *,
    basic: tuple[str, str] | None = None,
    token: TokenServer | None = None,
    tls: tuple[Path, Path] | None = None,
    extra: dict[str, Any] | None = None,
) -> Iterator[Registry]:
    """Run a registry storing into `workdir/storage`; `basic` = (user, password) or a
    running `token` server turn authentication on; `tls` = (certificate, key) makes it
    serve HTTPS (its `url` then says https); `extra` is merged into its config (e.g. a
    storage middleware)."""
    if shutil.which(REGISTRY_BINARY) is None:
        raise RegistryStartError(f"{REGISTRY_BINARY} not found: apt-get install docker-registry")
    root = workdir / "storage"
    root.mkdir(parents=True, exist_ok=True)
    log = workdir / "registry.log"
    config_path = workdir / "registry.yml"
    auth = _auth_config(workdir, basic, token)

    def command(port: int) -> list[str]:
        config = _config(root, port, auth)
        if tls:
            config["http"]["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
        config_path.write_text(yaml.safe_dump(_merge(config, extra or {})))
        return [REGISTRY_BINARY, "serve", str(config_path)]

    # GET /v2/ answers 200, or 401 when auth is on.
    process, port = start_loopback_server(REGISTRY_BINARY, command, log, "/v2/")
    try:
        yield Registry(
            host=f"127.0.0.1:{port}",
            url=f"{'https' if tls else 'http'}://127.0.0.1:{port}",
            root=root,
            log=log,
            config=config_path,
            username=basic[0] if basic else token.username if token else None,
            password=basic[1] if basic else token.password if token else None,
            token_server=token,
        )
    finally:
        stop_process(process, STOP_TIMEOUT)
