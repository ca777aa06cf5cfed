"""Run OpenStack's image service, Glance (Debian's python3-glance), on loopback for tests.

A real Glance API (v2) with a SQLite database and file storage in a work directory, on a
free 127.0.0.1 port. Keystone is left out: Glance runs with the unauthenticated-context
middleware (its own test setup), and the client reaches it through a clouds.yaml entry
with `auth_type: none` and the image endpoint, which openstacksdk reads as it reads any
cloud's. Authentication itself is openstacksdk's and keystoneauth's, not osbuilder's.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

PYTHON = "/usr/bin/python3"  # Debian's, which python3-glance is installed for
START_TIMEOUT = 60.0

PASTE = """\
[pipeline:glance-api]
pipeline = versionnegotiation unauthenticated-context rootapp

[composite:rootapp]
paste.composite_factory = glance.api:root_app_factory
/: apiversions
/v2: apiv2app

[app:apiversions]
paste.app_factory = glance.api.versions:create_resource

[app:apiv2app]
paste.app_factory = glance.api.v2.router:API.factory

[filter:versionnegotiation]
paste.filter_factory = glance.api.middleware.version_negotiation:VersionNegotiationFilter.factory

[filter:unauthenticated-context]
paste.filter_factory = glance.api.middleware.context:UnauthenticatedContextMiddleware.factory
"""

CONFIG = """\
[DEFAULT]
bind_host = 127.0.0.1
bind_port = {port}
workers = 0
enabled_backends = fs:file
[database]
connection = sqlite:///{work}/glance.sqlite
[paste_deploy]
config_file = {work}/paste.ini
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = {work}/images/
[os_glance_staging_store]
filesystem_store_datadir = {work}/staging/
[os_glance_tasks_store]
filesystem_store_datadir = {work}/tasks/
"""

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Glance:
    url: str  # http://127.0.0.1:PORT
    clouds_yaml: Path  # names this Glance as the cloud CLOUD
    log: Path

    cloud = "glance-test"

    def get(self, path: str) -> bytes:
        with _NO_PROXY.open(self.url + path, timeout=30) as response:
            return bytes(response.read())


@contextlib.contextmanager
def running_glance(work: Path) -> Iterator[Glance]:
    for name in ("images", "staging", "tasks"):
        (work / name).mkdir(parents=True)
    port = _free_port()
    (work / "paste.ini").write_text(PASTE)
    config = work / "glance-api.conf"
    config.write_text(CONFIG.format(port=port, work=work))
    log = work / "glance.log"
    subprocess.run(
        [PYTHON, "-m", "glance.cmd.manage", "--config-file", str(config), "db_sync"],
        check=True,
        capture_output=True,
    )
    url = f"http://127.0.0.1:{port}"
    clouds = work / "clouds.yaml"
    entry = {"auth_type": "none", "auth": {"endpoint": url}, "image_endpoint_override": url}
    clouds.write_text(yaml.safe_dump({"clouds": {Glance.cloud: entry}}))
    with log.open("wb") as output:
        process = subprocess.Popen(
            [PYTHON, "-m", "glance.cmd.api", "--config-file", str(config)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        glance = Glance(url, clouds, log)
        _wait_until_up(glance, process)
        yield glance
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(glance: Glance, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"glance-api exited:\n{glance.log.read_text()[-3000:]}")
        with contextlib.suppress(OSError, urllib.error.URLError):
            glance.get("/v2/images")
            return
        time.sleep(0.2)
    raise RuntimeError(f"glance-api did not answer in {START_TIMEOUT:g} s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
