"""Run a small real OpenStack on loopback for tests: Keystone (identity) and Glance (images).

Debian's python3-keystone and python3-glance, each with a SQLite database in a work
directory, on free 127.0.0.1 ports. Keystone is bootstrapped (an admin, the identity
endpoint) and then given what a cloud has: Glance in its catalog, a `service` project
with Glance's own user (whose token keystonemiddleware uses to check the clients'), and a
`demo` project whose `demo` user has the ordinary `member` role. Glance checks every
request's token with Keystone. Clients reach the cloud as any user does: a clouds.yaml
entry (`Cloud.name`) with the auth URL, user, password and project; the image endpoint
comes from Keystone's catalog.

Keystone runs under its own test WSGI server (one request at a time: enough here), with
SQLite in WAL mode: without it, Keystone's reader and writer connections lock each other.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openstack
import yaml

from tests.conftest import stop_process

PYTHON = "/usr/bin/python3"  # Debian's, which python3-glance is installed for
START_TIMEOUT = 60.0
REGION = "RegionOne"
ADMIN_PASSWORD = "admin-secret"
GLANCE_PASSWORD = "glance-secret"
DEMO_PASSWORD = "demo-secret"

KEYSTONE_CONFIG = """\
[database]
connection = sqlite:///{work}/keystone.sqlite?timeout=30
[token]
provider = fernet
[fernet_tokens]
key_repository = {work}/fernet-keys
[credential]
key_repository = {work}/credential-keys
"""

GLANCE_PASTE = """\
[pipeline:glance-api-keystone]
pipeline = versionnegotiation authtoken context rootapp

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

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory

[filter:context]
paste.filter_factory = glance.api.middleware.context:ContextMiddleware.factory
"""

GLANCE_CONFIG = """\
[DEFAULT]
bind_host = 127.0.0.1
bind_port = {port}
workers = 0
enabled_backends = fs:file
[database]
connection = sqlite:///{work}/glance.sqlite
[paste_deploy]
config_file = {work}/paste.ini
flavor = keystone
[keystone_authtoken]
www_authenticate_uri = {keystone}
auth_url = {keystone}
auth_type = password
user_domain_name = Default
project_domain_name = Default
project_name = service
username = glance
password = {password}
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
class Cloud:
    keystone: str  # http://127.0.0.1:PORT
    glance: str  # http://127.0.0.1:PORT
    clouds_yaml: Path  # names the cloud `name` (the demo user) and "admin"
    work: Path

    name = "osbuilder-test"

    def connect(self) -> openstack.connection.Connection:
        """The demo user's connection, through the clouds.yaml osbuilder is given."""
        return _connect(self.clouds_yaml, self.name)


@contextlib.contextmanager
def running_cloud(work: Path) -> Iterator[Cloud]:
    keystone_port, glance_port = _free_port(), _free_port()
    keystone = f"http://127.0.0.1:{keystone_port}"
    glance = f"http://127.0.0.1:{glance_port}"
    work.mkdir(parents=True, exist_ok=True)
    clouds = work / "clouds.yaml"
    clouds.write_text(yaml.safe_dump({"clouds": _clouds(keystone)}))
    with contextlib.ExitStack() as stack:
        stack.enter_context(_keystone(work / "keystone", keystone_port))
        _register_glance(clouds, glance)
        stack.enter_context(_glance(work / "glance", glance_port, keystone))
        yield Cloud(keystone, glance, clouds, work)


def _clouds(keystone: str) -> dict[str, object]:
    def cloud(user: str, password: str, project: str) -> dict[str, object]:
        auth = {
            "auth_url": f"{keystone}/v3",
            "username": user,
            "password": password,
            "project_name": project,
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        }
        return {"auth": auth, "region_name": REGION, "identity_api_version": 3}

    return {
        Cloud.name: cloud("demo", DEMO_PASSWORD, "demo"),
        "admin": cloud("admin", ADMIN_PASSWORD, "admin"),
    }


@contextlib.contextmanager
def _keystone(work: Path, port: int) -> Iterator[None]:
    work.mkdir(parents=True)
    config = work / "keystone.conf"
    config.write_text(KEYSTONE_CONFIG.format(work=work))
    url = f"http://127.0.0.1:{port}/v3/"
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    owner = ["--keystone-user", user, "--keystone-group", group]
    for command in (
        ["db_sync"],
        ["fernet_setup", *owner],
        ["credential_setup", *owner],
        ["bootstrap", "--bootstrap-password", ADMIN_PASSWORD, "--bootstrap-region-id", REGION,
         "--bootstrap-admin-url", url, "--bootstrap-public-url", url,
         "--bootstrap-internal-url", url],
    ):  # fmt: skip
        subprocess.run(
            ["keystone-manage", "--config-file", str(config), *command],
            check=True,
            capture_output=True,
        )
    _sqlite_wal(work / "keystone.sqlite")
    environment = {**os.environ, "OS_KEYSTONE_CONFIG_DIR": str(work)}
    environment["OS_KEYSTONE_CONFIG_FILES"] = config.name
    command = ["keystone-wsgi-public", "--host", "127.0.0.1", "--port", str(port)]
    with _server(command, work / "keystone.log", url, environment):
        yield


def _register_glance(clouds: Path, glance: str) -> None:
    """Glance in Keystone's catalog, its service user, and the demo project and user."""
    admin = _connect(clouds, "admin")
    identity = admin.identity
    service = identity.create_service(name="glance", type="image")
    for interface in ("public", "internal", "admin"):
        identity.create_endpoint(
            service_id=service.id, interface=interface, url=glance, region_id=REGION
        )
    for project, user, password, role in (
        ("service", "glance", GLANCE_PASSWORD, "admin"),
        ("demo", "demo", DEMO_PASSWORD, "member"),
    ):
        created = identity.create_project(name=project, domain_id="default")
        account = identity.create_user(name=user, password=password, domain_id="default")
        role_id = identity.find_role(role, ignore_missing=False)
        identity.assign_project_role_to_user(created, account, role_id)
    admin.close()


@contextlib.contextmanager
def _glance(work: Path, port: int, keystone: str) -> Iterator[None]:
    for name in ("images", "staging", "tasks"):
        (work / name).mkdir(parents=True)
    (work / "paste.ini").write_text(GLANCE_PASTE)
    config = work / "glance-api.conf"
    config.write_text(
        GLANCE_CONFIG.format(port=port, work=work, keystone=keystone, password=GLANCE_PASSWORD)
    )
    subprocess.run(
        [PYTHON, "-m", "glance.cmd.manage", "--config-file", str(config), "db_sync"],
        check=True,
        capture_output=True,
    )
    command = [PYTHON, "-m", "glance.cmd.api", "--config-file", str(config)]
    # Up when it answers, if only to say that a token is needed.
    with _server(command, work / "glance.log", f"http://127.0.0.1:{port}/v2/images"):
        yield


@contextlib.contextmanager
def _server(
    command: list[str], log: Path, probe: str, environment: dict[str, str] | None = None
) -> Iterator[None]:
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=environment
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(probe):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield
    finally:
        stop_process(process)


def _answers(url: str) -> bool:
    try:
        _NO_PROXY.open(url, timeout=5).close()
    except urllib.error.HTTPError:
        return True  # an HTTP answer, even 401
    except OSError:
        return False
    return True


def _connect(clouds: Path, name: str) -> openstack.connection.Connection:
    config = openstack.config.OpenStackConfig(config_files=[str(clouds)], load_envvars=False)
    return openstack.connection.Connection(config=config.get_one(cloud=name))


def _sqlite_wal(database: Path) -> None:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
