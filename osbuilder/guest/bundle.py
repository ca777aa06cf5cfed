"""The containers in the image: LinuxKit's bundle directories and their runtime.json.

/containers/onboot/NNN-name/ and /containers/onshutdown/NNN-name/ run in sorted order;
/containers/services/name/ run together. Each holds config.json (OCI) and runtime.json:
LinuxKit's extras done by the init around the runtime, plus osbuilder's `restart`.
"""

from __future__ import annotations

import json
import re

from osbuilder.guest.fspath import Path
from osbuilder.guest.records import Record

KINDS = ("onboot", "onshutdown", "services")
RESTART_POLICIES = ("always", "on-failure", "never")
DEFAULT_RESTART = "on-failure"
NAMESPACE_TYPES = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")
_ORDER_PREFIX = re.compile(r"^\d+-")

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at boot

if TYPE_CHECKING:
    from typing import Any


class BundleError(Exception):
    """A bundle the init cannot use; the message names it and says why."""


class MountSpec(Record):
    __slots__ = ("destination", "options", "source", "type")

    def __init__(
        self, destination: str, type: str = "", source: str = "", options: tuple[str, ...] = ()
    ) -> None:
        self.destination = destination
        self.type = type
        self.source = source
        self.options = options


class InterfaceSpec(Record):
    __slots__ = ("add", "create_in_root", "name", "peer")

    def __init__(
        self, name: str, add: str = "", peer: str = "", create_in_root: bool = False
    ) -> None:
        self.name = name
        self.add = add
        self.peer = peer
        self.create_in_root = create_in_root


class RuntimeExtras(Record):
    __slots__ = ("bind_ns", "cgroups", "interfaces", "mkdir", "mounts", "namespace", "restart")

    def __init__(
        self,
        cgroups: tuple[str, ...] = (),
        mounts: tuple[MountSpec, ...] = (),
        mkdir: tuple[str, ...] = (),
        interfaces: tuple[InterfaceSpec, ...] = (),
        bind_ns: tuple[tuple[str, str], ...] = (),  # (namespace type, path), NAMESPACE_TYPES order
        namespace: str = "",
        restart: str = DEFAULT_RESTART,
    ) -> None:
        self.cgroups = cgroups
        self.mounts = mounts
        self.mkdir = mkdir
        self.interfaces = interfaces
        self.bind_ns = bind_ns
        self.namespace = namespace
        self.restart = restart


class Bundle(Record):
    __slots__ = ("extras", "kind", "path")

    def __init__(self, kind: str, path: Path, extras: RuntimeExtras | None = None) -> None:
        self.kind = kind  # one of KINDS
        self.path = path
        self.extras = extras or RuntimeExtras()

    @property
    def name(self) -> str:
        """dhcpcd for onboot/000-dhcpcd; the service's own name for services."""
        return _ORDER_PREFIX.sub("", self.path.name) or self.path.name

    @property
    def container_id(self) -> str:
        """Unique across kinds: an onboot and a service may share a name."""
        return self.path.name if self.kind == "services" else f"{self.kind}.{self.path.name}"

    @property
    def label(self) -> str:
        """The prefix of its lines on the console."""
        return self.name if self.kind == "services" else f"{self.kind}/{self.name}"

    @property
    def log_name(self) -> str:
        """Its log file is /var/log/<log_name>.log."""
        return self.container_id


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BundleError(f"{where}: expected a list of strings")
    return tuple(value)


def _string(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BundleError(f"{where}: expected a string")
    return value


def _objects(data: dict[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
    """(where, entry) for each entry of the list `key`, each an object."""
    entries = []
    for number, raw in enumerate(data.get(key) or []):
        where = f"runtime.json {key}[{number}]"
        if not isinstance(raw, dict):
            raise BundleError(f"{where}: expected an object")
        entries.append((where, raw))
    return entries


def _mount(raw: dict[str, Any], where: str) -> MountSpec:
    destination = _string(raw.get("destination"), f"{where}.destination")
    if not destination:
        raise BundleError(f"{where}: no destination")
    return MountSpec(
        destination,
        type=_string(raw.get("type"), f"{where}.type"),
        source=_string(raw.get("source"), f"{where}.source"),
        options=_strings(raw.get("options"), f"{where}.options"),
    )


def _interface(raw: dict[str, Any], where: str) -> InterfaceSpec:
    if not raw.get("name"):
        raise BundleError(f"{where}: no name")
    return InterfaceSpec(
        _string(raw.get("name"), f"{where}.name"),
        add=_string(raw.get("add"), f"{where}.add"),
        peer=_string(raw.get("peer"), f"{where}.peer"),
        create_in_root=bool(raw.get("createInRoot", False)),
    )


def parse_runtime(data: Any) -> RuntimeExtras:
    if data is None:
        return RuntimeExtras()
    if not isinstance(data, dict):
        raise BundleError("runtime.json: expected an object")
    mounts = tuple(_mount(raw, where) for where, raw in _objects(data, "mounts"))
    interfaces = tuple(_interface(raw, where) for where, raw in _objects(data, "interfaces"))
    bind_ns_raw = data.get("bindNS") or {}
    if not isinstance(bind_ns_raw, dict):
        raise BundleError("runtime.json bindNS: expected an object")
    unknown = sorted(set(bind_ns_raw) - set(NAMESPACE_TYPES))
    if unknown:
        raise BundleError(f"runtime.json bindNS: unknown namespace {', '.join(unknown)}")
    bind_ns = tuple(
        (ns, _string(bind_ns_raw[ns], f"runtime.json bindNS.{ns}"))
        for ns in NAMESPACE_TYPES
        if bind_ns_raw.get(ns)
    )
    restart = _string(data.get("restart"), "runtime.json restart") or DEFAULT_RESTART
    if restart not in RESTART_POLICIES:
        raise BundleError(
            f"runtime.json restart: {restart!r} is not one of {', '.join(RESTART_POLICIES)}"
        )
    return RuntimeExtras(
        cgroups=_strings(data.get("cgroups"), "runtime.json cgroups"),
        mounts=mounts,
        mkdir=_strings(data.get("mkdir"), "runtime.json mkdir"),
        interfaces=interfaces,
        bind_ns=bind_ns,
        namespace=_string(data.get("namespace"), "runtime.json namespace"),
        restart=restart,
    )


def load_bundle(kind: str, path: Path) -> Bundle:
    if not (path / "config.json").is_file():
        raise BundleError(f"{path}: no config.json")
    runtime_file = path / "runtime.json"
    try:
        data = json.loads(runtime_file.read_text()) if runtime_file.exists() else None
    except (OSError, ValueError) as error:
        raise BundleError(f"{runtime_file}: {error}") from None
    try:
        return Bundle(kind, path, parse_runtime(data))
    except BundleError as error:
        raise BundleError(f"{path}: {error}") from None


def discover(containers: Path, kind: str) -> tuple[list[Bundle], list[str]]:
    """The bundles of one kind in sorted order, and a message for each unusable one."""
    directory = containers / kind
    try:
        entries = sorted(entry for entry in directory.iterdir() if entry.is_dir())
    except FileNotFoundError:
        return [], []
    except OSError as error:
        return [], [f"{directory}: {error.strerror}"]
    bundles: list[Bundle] = []
    problems: list[str] = []
    for entry in entries:
        try:
            bundles.append(load_bundle(kind, entry))
        except BundleError as error:
            problems.append(str(error))
    return bundles, problems
