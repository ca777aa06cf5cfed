"""Registries as they are in the wild, on loopback: TLS from a private CA, blobs served by
another host, a token realm on another host, rate limits.

* `CertificateAuthority`: a throwaway CA (the `cryptography` library) that issues server
  and client certificates; `ca.crt` is what clients are told to trust.
* `running_nginx(workdir, config)`: Debian's nginx on a config of the caller's, with
  `{port:NAME}` placeholders filled with free ports, until the context exits.
* `running_wild_registry(workdir, ca)`: Debian's docker-registry (plain HTTP, on
  127.0.0.1) behind nginx as its TLS front (127.0.0.1), the registry answering blob GETs
  with a redirect (its `redirect` storage middleware, as S3-backed registries answer) to
  nginx serving the storage directory over TLS on another host (127.0.0.2), as a bucket
  would. Both nginx servers log every request with its Authorization header, so tests
  can tell what reached which host. Repositories under `throttled/` are rate-limited by
  the front: a repeated GET of the same manifest or blob, or PUT of the same manifest,
  within 2 s is answered 429 with `Retry-After: 2`.

Nothing here is a hand-written HTTP server standing in for a registry.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import stop_process
from tests.integration.registry import Registry, free_port, log_tail, running_registry
from tests.integration.tokenauth import TokenServer

NGINX = "/usr/sbin/nginx"
START_TIMEOUT = 15.0
PORT_ATTEMPTS = 3
#: The second loopback "host" that serves blobs (and token realms) in these tests.
OTHER_HOST = "127.0.0.2"
THROTTLE_SECONDS = 2


class NginxStartError(RuntimeError):
    pass


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as PEM files."""

    certificate: Path
    key: Path

    @property
    def pair(self) -> tuple[Path, Path]:
        return self.certificate, self.key


class CertificateAuthority:
    """A CA of its own in `workdir`: `ca.crt` (its certificate) and what it issued."""

    def __init__(self, workdir: Path, name: str = "osbuilder test CA") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        self.path = workdir / "ca.crt"
        self.path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        name: str,
        hosts: tuple[str, ...] = ("127.0.0.1", OTHER_HOST, "localhost"),
        *,
        client: bool = False,
    ) -> Issued:
        """A server certificate for `hosts` (IP addresses or DNS names), or with `client` a
        client certificate; written as NAME.crt and NAME.key."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if names and not client:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        issued = Issued(self.workdir / f"{name}.crt", self.workdir / f"{name}.key")
        issued.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        issued.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        issued.key.chmod(0o600)
        return issued

    def certs_d(self, root: Path, host: str) -> Path:
        """Docker's layout: ROOT/HOST[:PORT]/ca.crt; returns ROOT (for $OSBUILDER_CERTS_D)."""
        folder = root / host
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "ca.crt").write_bytes(self.path.read_bytes())
        return root


# --- nginx -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Nginx:
    ports: dict[str, int]
    workdir: Path
    error_log: Path


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


@contextlib.contextmanager
def running_nginx(workdir: Path, config: str, ports: dict[str, str]) -> Iterator[Nginx]:
    """Run nginx on `config`, an `http { ... }` body whose `{port:NAME}` placeholders are
    filled with free ports; `ports` maps each NAME to the address it listens on. Logs,
    temporary files and the pid file stay in `workdir`."""
    if not os.path.exists(NGINX):
        raise NginxStartError(f"{NGINX} not found: apt-get install nginx")
    workdir.mkdir(parents=True, exist_ok=True)
    error_log = workdir / "error.log"
    for attempt in range(1, PORT_ATTEMPTS + 1):
        chosen = {name: free_port() for name in ports}
        body = config
        for name, port in chosen.items():
            body = body.replace(f"{{port:{name}}}", str(port))
        conf = workdir / "nginx.conf"
        # As root, workers would run as nobody, who cannot read pytest's private tmp dirs.
        user = "user root;\n" if os.geteuid() == 0 else ""
        temp = "\n".join(
            f"    {kind}_temp_path {workdir / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        conf.write_text(
            f"{user}daemon off;\nworker_processes 1;\npid {workdir / 'nginx.pid'};\n"
            f"error_log {error_log} info;\nevents {{ worker_connections 256; }}\n"
            f"http {{\n    access_log off;\n{temp}\n{body}\n}}\n"
        )
        with (workdir / "nginx.out").open("ab") as out:
            process = subprocess.Popen(
                [NGINX, "-p", str(workdir), "-c", str(conf), "-e", str(error_log)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        up = False
        while time.monotonic() < deadline and process.poll() is None:
            if all(_listening(ports[name], port) for name, port in chosen.items()):
                up = True
                break
            time.sleep(0.02)
        if up:
            try:
                yield Nginx(chosen, workdir, error_log)
            finally:
                stop_process(process, 5.0)
            return
        stop_process(process, 5.0)
        tail = log_tail(error_log) + log_tail(workdir / "nginx.out")
        if attempt == PORT_ATTEMPTS or "in use" not in tail:
            raise NginxStartError(f"nginx did not start:\n{tail}")
    raise AssertionError("unreachable")


# --- a registry in the wild --------------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    """One request an nginx server of a WildRegistry answered."""

    time: float
    method: str
    uri: str
    status: int
    authorization: str  # "" when the request had none


@dataclass(frozen=True)
class WildRegistry:
    host: str  # the TLS front, "127.0.0.1:PORT": what image references name
    backend: Registry  # the docker-registry behind it (plain HTTP)
    blob_host: str  # "127.0.0.2:PORT": where blob GETs are redirected to
    ca: CertificateAuthority
    front_log: Path
    blob_log: Path

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    def front_requests(self) -> list[LogLine]:
        return _read_log(self.front_log)

    def blob_requests(self) -> list[LogLine]:
        return _read_log(self.blob_log)


_LOG_FORMAT = "'$msec\\t$request_method\\t$uri\\t$status\\t$http_authorization'"


def _read_log(path: Path) -> list[LogLine]:
    """The log's lines once it has settled: nginx writes a line after its answer is sent,
    so a client may have its answer a moment before the line is there."""
    size, deadline = -1, time.monotonic() + 2.0
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = path.stat().st_size if path.exists() else 0
        if now == size:
            break
        size = now
    lines = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            when, method, uri, status, authorization = line.split("\t")
            lines.append(
                LogLine(
                    float(when),
                    method,
                    uri,
                    int(status),
                    "" if authorization == "-" else authorization,
                )
            )
    return lines


_WILD_CONFIG = """
    log_format wild {log_format};
    client_max_body_size 0;
    map "$request_method $uri" $throttle {{
        "~^(GET|PUT) /v2/throttled/.+/manifests/" "$request_method $uri";
        "~^GET /v2/throttled/.+/blobs/sha256:" "$request_method $uri";
        default "";
    }}
    limit_req_zone $throttle zone=throttle:1m rate={rate}r/m;
    limit_req_status 429;
    # The TLS front of the registry.
    server {{
        listen 127.0.0.1:{{port:front}} ssl;
        ssl_certificate {certificate};
        ssl_certificate_key {key};
        {front_extra}
        access_log {front_log} wild;
        location /v2/ {{
            limit_req zone=throttle;
            add_header Retry-After {throttle} always;
            proxy_pass http://{backend};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto https;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 900;
        }}
    }}
    # Another host serving the registry's storage, as a bucket behind the redirects.
    server {{
        listen {other}:{{port:blobs}} ssl;
        ssl_certificate {certificate};
        ssl_certificate_key {key};
        access_log {blob_log} wild;
        root {storage};
        location /docker/registry/v2/blobs/ {{ }}
        location / {{ return 404; }}
    }}
"""


@contextlib.contextmanager
def running_wild_registry(
    workdir: Path,
    ca: CertificateAuthority,
    *,
    token: TokenServer | None = None,
    basic: tuple[str, str] | None = None,
    client_certificates: bool = False,
) -> Iterator[WildRegistry]:
    """A docker-registry behind nginx's TLS front, redirecting blob GETs to another host
    (see the module's doc); `token`/`basic` turn the registry's authentication on;
    `client_certificates`: the front wants a client certificate the CA issued."""
    workdir.mkdir(parents=True, exist_ok=True)
    server = ca.issue("wild-server")
    storage = workdir / "registry/storage"
    storage.mkdir(parents=True, exist_ok=True)
    blobs_port = free_port()
    # nginx picks its own ports; the blob host's must be known to the registry's config
    # first, so it is chosen here and handed to nginx as a fixed port.
    middleware = {
        "middleware": {
            "storage": [
                {"name": "redirect", "options": {"baseurl": f"https://{OTHER_HOST}:{blobs_port}"}}
            ]
        }
    }
    with running_registry(
        workdir / "registry", token=token, basic=basic, extra=middleware
    ) as backend:
        front_log, blob_log = workdir / "front.log", workdir / "blobs.log"
        config = _WILD_CONFIG.format(
            log_format=_LOG_FORMAT,
            rate=60 // THROTTLE_SECONDS,
            throttle=THROTTLE_SECONDS,
            certificate=server.certificate,
            key=server.key,
            front_log=front_log,
            blob_log=blob_log,
            backend=backend.host,
            other=OTHER_HOST,
            storage=backend.root,
            front_extra=(
                f"ssl_verify_client on; ssl_client_certificate {ca.path};"
                if client_certificates
                else ""
            ),
        ).replace("{port:blobs}", str(blobs_port))
        with running_nginx(workdir / "nginx", config, {"front": "127.0.0.1"}) as nginx:
            if not _listening(OTHER_HOST, blobs_port):
                raise NginxStartError(f"nginx does not listen on {OTHER_HOST}:{blobs_port}")
            yield WildRegistry(
                host=f"127.0.0.1:{nginx.ports['front']}",
                backend=backend,
                blob_host=f"{OTHER_HOST}:{blobs_port}",
                ca=ca,
                front_log=front_log,
                blob_log=blob_log,
            )
