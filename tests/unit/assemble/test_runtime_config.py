"""config.json and runtime.json of a container: LinuxKit's ConfigToOCI, field by field.

A table of spec entries (with label defaults and image configs) checked field
by field; the label cases of LinuxKit's config_test.go; errors; and every
produced config.json validated against the OCI runtime-spec JSON schema
(Debian: golang-github-opencontainers-specs-dev).

Deliberate differences from LinuxKit, each tested here:
- a lone all/none is expanded per list, so label `[all]` plus `capabilities.add`
  is all capabilities (LinuxKit: "unknown capability: all");
- `capabilities.add` / `binds.add` add to the spec's own `capabilities` / `binds`
  and to a label's (LinuxKit drops them);
- all capability sets are sorted and without duplicates (LinuxKit sorts the
  bounding set only, and its mergeStrings never deduplicates);
- a device of type u gets a `c` cgroup rule and a fifo (p) none (runc refuses
  cgroup rules of type u or p); a device without a mode gets the runtime's default;
- a hugepage pageSize in bytes becomes the runtime-spec's "2MB" form;
- an explicit bind option list gets `rbind` once, not a second time.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from osbuilder.assemble.runtime_config import (
    LABEL,
    OCI_VERSION,
    allocate_ids,
    encode,
    load_label,
    numeric_id,
    runtime_config,
)
from osbuilder.errors import UserError
from osbuilder.oci.model import ImageConfig as OciImageConfig
from osbuilder.oci.model import RuntimeConfig
from osbuilder.pkg.tag import template_reference
from osbuilder.spec import load_spec
from osbuilder.spec.capabilities import KNOWN_CAPABILITIES
from osbuilder.spec.model import Container, Spec, Volume
from osbuilder.spec.syntax import RLIM_INFINITY
from osbuilder.spec.validation import parse

REPO = Path(__file__).resolve().parents[3]
SCHEMA_DIR = Path("/usr/share/gocode/src/github.com/opencontainers/runtime-spec/schema")
SCHEMA_PACKAGE = "golang-github-opencontainers-specs-dev"

IDS = {"dhcpcd": 100, "format": 101, "shutdown": 102, "web": 103}
ALL_SORTED = sorted(KNOWN_CAPABILITIES)
ABSENT = object()  # the key is not in the document

DEFAULT_MOUNTS = [
    {
        "destination": "/dev",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
        "destination": "/dev/pts",
        "type": "devpts",
        "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
    },
    {
        "destination": "/proc",
        "type": "proc",
        "source": "proc",
        "options": ["nosuid", "nodev", "noexec", "relatime"],
    },
    {
        "destination": "/sys",
        "type": "sysfs",
        "source": "sysfs",
        "options": ["nosuid", "noexec", "nodev"],
    },
    {
        "destination": "/sys/fs/cgroup",
        "type": "cgroup",
        "source": "cgroup",
        "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
    },
]
DEFAULT_DESTINATIONS = [m["destination"] for m in DEFAULT_MOUNTS]


def image_config(label: dict[str, Any] | None = None, **config: Any) -> OciImageConfig:
    """An image config with `config` fields (entrypoint, cmd, env, working_dir) and a label."""
    labels = dict(config.pop("labels", {}))
    if label is not None:
        labels[LABEL] = json.dumps(label)
    return OciImageConfig(
        architecture="amd64",
        os="linux",
        diff_ids=[],
        config=RuntimeConfig(labels=labels or None, **config),
    )


def container(**fields: Any) -> Container:
    return parse(Container, {"name": "web", "image": "example/web:1", **fields})


def generate(
    entry: dict[str, Any],
    label: dict[str, Any] | None = None,
    image: dict[str, Any] | None = None,
    **options: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    config = image_config(label, **(image or {}))
    loaded = load_label(config, "example/web:1")
    return runtime_config(container(**entry), config, loaded, IDS, **options)


def lookup(config: dict[str, Any], runtime: dict[str, Any], path: str) -> Any:
    """A value of the output by path: `process.user.uid`, `runtime.mounts`, `mount:/dev`
    (the mount at /dev), `mount:/dev#options`, `destinations`, `namespaces` ((type, path)
    pairs); ABSENT when a key is missing."""
    if path.startswith("mount:"):
        destination, _, key = path[len("mount:") :].partition("#")
        found = [m for m in config["mounts"] if m["destination"] == destination]
        assert len(found) <= 1
        if not found:
            return ABSENT
        return found[0].get(key, ABSENT) if key else found[0]
    if path == "destinations":
        return [m["destination"] for m in config["mounts"]]
    if path == "namespaces":
        return [(n["type"], n.get("path", "")) for n in config["linux"]["namespaces"]]
    document: Any = config
    if path.startswith("runtime."):
        document, path = runtime, path[len("runtime.") :]
    for key in path.split("."):
        if key not in document:
            return ABSENT
        document = document[key]
    return document


@dataclass(frozen=True)
class Case:
    id: str
    entry: dict[str, Any]
    expect: dict[str, Any]
    label: dict[str, Any] | None = None
    image: dict[str, Any] = field(default_factory=dict)


CASES = [
    # --- command, env, cwd: yaml > label > image ----------------------------------------------
    Case(
        "command-from-image-entrypoint-and-cmd",
        {},
        {"process.args": ["/entry", "-x", "cmd"]},
        image={"entrypoint": ["/entry", "-x"], "cmd": ["cmd"]},
    ),
    Case(
        "command-label-over-image",
        {},
        {"process.args": ["/label"]},
        label={"command": ["/label"]},
        image={"entrypoint": ["/entry"], "cmd": ["cmd"]},
    ),
    Case(
        "command-yaml-over-label",
        {"command": ["/yaml", "a b"]},
        {"process.args": ["/yaml", "a b"]},
        label={"command": ["/label"]},
        image={"entrypoint": ["/entry"]},
    ),
    Case(
        "env-from-image",
        {},
        {"process.env": ["PATH=/bin", "A=1"]},
        image={"env": ["PATH=/bin", "A=1"]},
    ),
    Case(
        "env-label-over-image",
        {},
        {"process.env": ["B=2"]},
        label={"env": ["B=2"]},
        image={"env": ["A=1"]},
    ),
    Case(
        "env-yaml-over-label",
        {"env": ["C=3"]},
        {"process.env": ["C=3"]},
        label={"env": ["B=2"]},
        image={"env": ["A=1"]},
    ),
    Case("env-absent", {}, {"process.env": ABSENT}),
    Case("cwd-default-root", {}, {"process.cwd": "/"}),
    Case("cwd-from-image", {}, {"process.cwd": "/work"}, image={"working_dir": "/work"}),
    Case(
        "cwd-label-over-image",
        {},
        {"process.cwd": "/label"},
        label={"cwd": "/label"},
        image={"working_dir": "/work"},
    ),
    Case(
        "cwd-yaml-over-label",
        {"cwd": "/yaml"},
        {"process.cwd": "/yaml"},
        label={"cwd": "/label"},
        image={"working_dir": "/work"},
    ),
    # --- user ---------------------------------------------------------------------------------
    Case(
        "user-default-root-image-user-ignored",
        {},
        {"process.user": {"uid": 0, "gid": 0}},
        image={"user": "nobody"},
    ),
    Case(
        "user-numbers",
        {"uid": 1000, "gid": 1001, "additionalGids": [5, 6]},
        {"process.user": {"uid": 1000, "gid": 1001, "additionalGids": [5, 6]}},
    ),
    Case(
        "user-named",
        {"uid": "dhcpcd", "gid": "shutdown", "additionalGids": ["web", "root", 7]},
        {"process.user": {"uid": 100, "gid": 102, "additionalGids": [103, 0, 7]}},
    ),
    Case(
        "user-root-by-name",
        {"uid": "root", "gid": "root"},
        {"process.user": {"uid": 0, "gid": 0}},
    ),
    Case(
        "user-label-then-yaml",
        {"gid": 50},
        {"process.user": {"uid": 101, "gid": 50}},
        label={"uid": "format", "gid": 40},
    ),
    # --- capabilities -------------------------------------------------------------------------
    Case(
        "caps-none-by-default",
        {},
        {
            "process.capabilities": {
                "bounding": [],
                "effective": [],
                "inheritable": [],
                "permitted": [],
                "ambient": [],
            }
        },
    ),
    Case(
        "caps-sorted-and-deduplicated",
        {"capabilities": ["CAP_SYS_ADMIN", "CAP_CHOWN", "CAP_SYS_ADMIN"]},
        {
            "process.capabilities.effective": ["CAP_CHOWN", "CAP_SYS_ADMIN"],
            "process.capabilities.bounding": ["CAP_CHOWN", "CAP_SYS_ADMIN"],
        },
    ),
    Case(
        "caps-yaml-replace-label",
        {"capabilities": ["CAP_SYS_ADMIN"]},
        {"process.capabilities.bounding": ["CAP_SYS_ADMIN"]},
        label={"capabilities": ["CAP_SYS_CHROOT"]},
    ),
    Case(
        "caps-add-to-label",
        {"capabilities.add": ["CAP_NET_ADMIN"]},
        {
            "process.capabilities.effective": ["CAP_NET_ADMIN", "CAP_SYS_CHROOT"],
            "process.capabilities.permitted": ["CAP_NET_ADMIN", "CAP_SYS_CHROOT"],
        },
        label={"capabilities": ["CAP_SYS_CHROOT"]},
    ),
    Case(
        "caps-add-without-label",
        {"capabilities.add": ["CAP_NET_ADMIN"]},
        {"process.capabilities.effective": ["CAP_NET_ADMIN"]},
    ),
    Case(
        "caps-add-with-yaml-caps",
        {"capabilities": ["CAP_KILL"], "capabilities.add": ["CAP_NET_ADMIN"]},
        {"process.capabilities.effective": ["CAP_KILL", "CAP_NET_ADMIN"]},
        label={"capabilities": ["CAP_SYS_CHROOT"]},
    ),
    Case(
        "caps-label-add-joins-label-caps",
        {},
        {"process.capabilities.effective": ["CAP_KILL", "CAP_SYS_CHROOT"]},
        label={"capabilities": ["CAP_SYS_CHROOT"], "capabilities.add": ["CAP_KILL"]},
    ),
    Case(
        "caps-all",
        {"capabilities": ["all"]},
        {
            "process.capabilities.effective": ALL_SORTED,
            "process.capabilities.bounding": ALL_SORTED,
            "process.capabilities.inheritable": ALL_SORTED,
            "process.capabilities.ambient": [],
        },
    ),
    Case(
        "caps-label-all-plus-add",
        {"capabilities.add": ["CAP_KILL"]},
        {"process.capabilities.effective": ALL_SORTED},
        label={"capabilities": ["all"]},
    ),
    Case(
        "caps-none-replaces-label",
        {"capabilities": ["none"]},
        {"process.capabilities.effective": [], "process.capabilities.bounding": []},
        label={"capabilities": ["CAP_SYS_ADMIN"]},
    ),
    Case(
        "caps-none-plus-add",
        {"capabilities": ["NONE"], "capabilities.add": ["CAP_KILL"]},
        {"process.capabilities.effective": ["CAP_KILL"]},
    ),
    Case(
        "caps-ambient-joins-bounding-not-effective",
        {"capabilities": ["CAP_KILL"], "ambient": ["CAP_NET_BIND_SERVICE"]},
        {
            "process.capabilities": {
                "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_KILL"],
                "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "ambient": ["CAP_NET_BIND_SERVICE"],
            }
        },
    ),
    Case(
        "caps-ambient-all-and-label-ambient",
        {"ambient": ["all"]},
        {"process.capabilities.ambient": ALL_SORTED, "process.capabilities.effective": []},
        label={"ambient": ["CAP_KILL"]},
    ),
    Case(
        "caps-ambient-from-label",
        {},
        {
            "process.capabilities.ambient": ["CAP_KILL"],
            "process.capabilities.bounding": ["CAP_KILL"],
        },
        label={"ambient": ["CAP_KILL"]},
    ),
    # --- rlimits, noNewPrivileges, oomScoreAdj ---------------------------------------------------
    Case(
        "rlimits",
        {"rlimits": ["nofile,1024,4096", "RLIMIT_CORE,unlimited,UNLIMITED", " memlock , 1 , 2 "]},
        {
            "process.rlimits": [
                {"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024},
                {"type": "RLIMIT_CORE", "hard": RLIM_INFINITY, "soft": RLIM_INFINITY},
                {"type": "RLIMIT_MEMLOCK", "hard": 2, "soft": 1},
            ]
        },
    ),
    Case("rlimits-from-label", {}, {"process.rlimits.0.type": ABSENT}, label={}),
    Case(
        "rlimits-yaml-replace-label",
        {"rlimits": ["nproc,5,6"]},
        {"process.rlimits": [{"type": "RLIMIT_NPROC", "hard": 6, "soft": 5}]},
        label={"rlimits": ["nofile,1,2"]},
    ),
    Case(
        "no-new-privileges-and-oom-score",
        {"noNewPrivileges": True, "oomScoreAdj": 0},
        {"process.noNewPrivileges": True, "process.oomScoreAdj": 0},
    ),
    Case(
        "no-new-privileges-yaml-false-over-label",
        {"noNewPrivileges": False},
        {"process.noNewPrivileges": ABSENT, "process.oomScoreAdj": -500},
        label={"noNewPrivileges": True, "oomScoreAdj": -500},
    ),
    Case(
        "process-defaults-omitted",
        {},
        {
            "process.rlimits": ABSENT,
            "process.noNewPrivileges": ABSENT,
            "process.oomScoreAdj": ABSENT,
            "process.terminal": ABSENT,
            "ociVersion": OCI_VERSION,
        },
    ),
    # --- root, hostname, readonly ---------------------------------------------------------------
    Case(
        "root-default",
        {},
        {"root": {"path": "rootfs"}, "hostname": ABSENT, "mounts": DEFAULT_MOUNTS},
    ),
    Case(
        "readonly-root-dev-sys",
        {"readonly": True},
        {
            "root": {"path": "rootfs", "readonly": True},
            "mount:/dev#options": ["nosuid", "strictatime", "mode=755", "size=65536k", "ro"],
            "mount:/sys#options": ["nosuid", "noexec", "nodev", "ro"],
            "mount:/proc#options": ["nosuid", "nodev", "noexec", "relatime"],
        },
    ),
    Case(
        "readonly-yaml-false-over-label",
        {"readonly": False},
        {"root": {"path": "rootfs"}},
        label={"readonly": True},
    ),
    Case("readonly-from-label", {}, {"root.readonly": True}, label={"readonly": True}),
    Case("hostname-label", {}, {"hostname": "lab"}, label={"hostname": "lab"}),
    Case("hostname-yaml", {"hostname": "box"}, {"hostname": "box"}, label={"hostname": "lab"}),
    # --- tmpfs, binds, mounts -----------------------------------------------------------------
    Case(
        "tmpfs",
        {"tmpfs": ["/run:mode=0755,size=16m", "/tmp"]},
        {
            "mount:/run": {
                "destination": "/run",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["mode=0755", "size=16m"],
            },
            "mount:/tmp": {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
            "destinations": sorted([*DEFAULT_DESTINATIONS, "/run", "/tmp"]),
        },
    ),
    Case(
        "tmpfs-replaces-default-dev",
        {"tmpfs": ["/dev:size=1m"]},
        {"mount:/dev#options": ["size=1m"], "destinations": DEFAULT_DESTINATIONS},
    ),
    Case(
        "binds-default-options",
        {"binds": ["/var/log:/var/log"]},
        {
            "mount:/var/log": {
                "destination": "/var/log",
                "type": "bind",
                "source": "/var/log",
                "options": ["rw", "rbind", "rshared"],
            }
        },
    ),
    Case(
        "binds-explicit-options-get-rbind",
        {"binds": ["/etc/resolv.conf:/etc/resolv.conf:ro", "/a:/b:ro,rbind"]},
        {
            "mount:/etc/resolv.conf#options": ["ro", "rbind"],
            "mount:/b#options": ["ro", "rbind"],
        },
    ),
    Case(
        "binds-replace-label-binds",
        {"binds": ["/yaml:/yaml"]},
        {"mount:/yaml#source": "/yaml", "mount:/label": ABSENT},
        label={"binds": ["/label:/label"]},
    ),
    Case(
        "binds-add-to-label-binds",
        {"binds.add": ["/added:/added"]},
        {"mount:/added#source": "/added", "mount:/label#source": "/label"},
        label={"binds": ["/label:/label"]},
    ),
    Case(
        "binds-add-later-wins-same-destination",
        {"binds.add": ["/yaml:/data:ro"]},
        {"mount:/data#source": "/yaml", "mount:/data#options": ["ro", "rbind"]},
        label={"binds": ["/label:/data"]},
    ),
    Case(
        "binds-add-joins-yaml-binds",
        {"binds": ["/one:/one"], "binds.add": ["/two:/two"]},
        {"mount:/one#source": "/one", "mount:/two#source": "/two", "mount:/label": ABSENT},
        label={"binds": ["/label:/label"]},
    ),
    Case(
        "binds-label-add-joins-label-binds",
        {},
        {"mount:/one#source": "/one", "mount:/two#source": "/two"},
        label={"binds": ["/one:/one"], "binds.add": ["/two:/two"]},
    ),
    Case(
        "bind-replaces-default-mount",
        {"binds": ["/dev:/dev"]},
        {"mount:/dev#type": "bind", "destinations": DEFAULT_DESTINATIONS},
    ),
    Case(
        "mounts-infer-type-and-destination",
        {
            "mounts": [
                {"source": "proc", "options": ["ro"]},
                {"type": "mqueue"},
                {"destination": "/dev"},
                {"type": "cgroup", "options": ["rw", "nosuid"]},
                {"source": "devpts"},
                {"source": "sysfs", "destination": "/host/sys"},
            ]
        },
        {
            "mount:/proc": {
                "destination": "/proc",
                "type": "proc",
                "source": "proc",
                "options": ["ro"],
            },
            "mount:/dev/mqueue": {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
            },
            "mount:/dev": {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
            "mount:/sys/fs/cgroup#options": ["rw", "nosuid"],
            "mount:/dev/pts": {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
            "mount:/host/sys#type": "sysfs",
            "destinations": [
                "/dev",
                "/dev/mqueue",
                "/dev/pts",
                "/host/sys",
                "/proc",
                "/sys",
                "/sys/fs/cgroup",
            ],
        },
    ),
    Case(
        "mounts-over-binds-over-tmpfs-same-destination",
        {
            "tmpfs": ["/data"],
            "binds": ["/host:/data"],
            "mounts": [{"destination": "/data", "type": "overlay", "source": "ov"}],
        },
        {"mount:/data": {"destination": "/data", "type": "overlay", "source": "ov"}},
    ),
    Case(
        "mounts-yaml-replace-label",
        {"mounts": [{"type": "mqueue"}]},
        {"mount:/dev/mqueue#type": "mqueue", "mount:/label": ABSENT},
        label={"mounts": [{"destination": "/label", "type": "tmpfs"}]},
    ),
    Case(
        "mounts-sorted-by-destination",
        {"tmpfs": ["/z", "/a/b", "/a", "/a-b", "/dev/shm"]},
        {
            "destinations": [
                "/a",
                "/a-b",
                "/a/b",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/proc",
                "/sys",
                "/sys/fs/cgroup",
                "/z",
            ]
        },
    ),
    Case(
        "mount-id-mappings",
        {
            "mounts": [
                {
                    "destination": "/m",
                    "type": "bind",
                    "source": "/m",
                    "uidmappings": [{"hostID": 1000, "containerID": 0, "size": 1}],
                    "gidmappings": [{"hostID": 2000, "containerID": 0, "size": 2}],
                }
            ]
        },
        {
            "mount:/m#uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
            "mount:/m#gidMappings": [{"containerID": 0, "hostID": 2000, "size": 2}],
            "mount:/m#options": ABSENT,
        },
    ),
    # --- namespaces ---------------------------------------------------------------------------
    Case("namespaces-default", {}, {"namespaces": [("pid", ""), ("mount", "")]}),
    Case(
        "namespaces-all-new",
        {"net": "new", "ipc": "new", "uts": "new", "userns": "new", "pid": "new"},
        {
            "namespaces": [
                ("network", ""),
                ("ipc", ""),
                ("uts", ""),
                ("pid", ""),
                ("user", ""),
                ("mount", ""),
            ]
        },
    ),
    Case(
        "namespace-net-none",
        {"net": "none"},
        {"namespaces": [("network", ""), ("pid", ""), ("mount", "")]},
    ),
    Case(
        "namespace-paths",
        {"net": "/run/netns/x", "ipc": "/proc/1/ns/ipc", "uts": "/u", "userns": "/us", "pid": "/p"},
        {
            "namespaces": [
                ("network", "/run/netns/x"),
                ("ipc", "/proc/1/ns/ipc"),
                ("uts", "/u"),
                ("pid", "/p"),
                ("user", "/us"),
                ("mount", ""),
            ]
        },
    ),
    Case("namespace-pid-host", {"pid": "host"}, {"namespaces": [("mount", "")]}),
    Case(
        "namespaces-host-explicit",
        {"net": "host", "ipc": "host", "uts": "host", "userns": "host"},
        {"namespaces": [("pid", ""), ("mount", "")]},
    ),
    Case(
        # LinuxKit's other word for host, in the spec and in a label alike.
        "namespaces-root-is-host",
        {"net": "root", "ipc": "root", "uts": "root", "userns": "root", "pid": "root"},
        {"namespaces": [("mount", "")]},
        label={"net": "new", "uts": "new"},
    ),
    Case(
        "namespaces-yaml-over-label",
        {"net": "host"},
        {"namespaces": [("uts", ""), ("mount", "")]},
        label={"net": "new", "uts": "new", "pid": "host"},
    ),
    # --- devices ------------------------------------------------------------------------------
    Case(
        "devices-node-and-rule",
        {
            "devices": [
                {"path": "/dev/console", "type": "c", "major": 5, "minor": 1, "mode": "0666"}
            ]
        },
        {
            "linux.devices": [
                {"path": "/dev/console", "type": "c", "major": 5, "minor": 1, "fileMode": 0o666}
            ],
            "linux.resources.devices": [
                {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"}
            ],
        },
    ),
    Case(
        "devices-all-rule-only",
        {"devices": [{"path": "all", "type": "b"}]},
        {
            "linux.devices": ABSENT,
            "linux.resources.devices": [{"allow": True, "type": "b", "access": "rwm"}],
        },
    ),
    Case(
        "devices-unbuffered-and-fifo",
        {
            "devices": [
                {"path": "/dev/u", "type": "u", "major": 1, "minor": 2, "mode": "600"},
                {"path": "/dev/fifo", "type": "p"},
            ]
        },
        {
            "linux.devices": [
                {"path": "/dev/u", "type": "u", "major": 1, "minor": 2, "fileMode": 0o600},
                {"path": "/dev/fifo", "type": "p"},
            ],
            "linux.resources.devices": [
                {"allow": True, "type": "c", "major": 1, "minor": 2, "access": "rwm"}
            ],
        },
    ),
    Case(
        "devices-rules-after-resource-rules",
        {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "devices": [{"path": "/dev/null", "type": "c", "major": 1, "minor": 3}],
        },
        {
            "linux.resources.devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            ],
            "linux.devices": [{"path": "/dev/null", "type": "c", "major": 1, "minor": 3}],
        },
    ),
    Case(
        "devices-from-label",
        {},
        {"linux.resources.devices": [{"allow": True, "type": "a", "access": "rwm"}]},
        label={"devices": [{"path": "all", "type": "a"}]},
    ),
    # --- resources ----------------------------------------------------------------------------
    Case("resources-empty", {}, {"linux.resources": {}}),
    Case(
        "resources-in-oci-names",
        {
            "resources": {
                "memory": {"limit": 536870912, "swappiness": 0, "disableOOMKiller": False},
                "cpu": {"shares": 1024, "quota": 100000, "cpus": "0-1"},
                "pids": {"limit": 512},
                "blockio": {
                    "weight": 500,
                    "weightDevice": [{"major": 8, "minor": 0, "weight": 500}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 16}],
                },
                "hugepageLimits": [{"pageSize": 2097152, "limit": 0}, {"pageSize": 1 << 30}],
                "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 10}]},
            }
        },
        {
            "linux.resources": {
                "memory": {"limit": 536870912, "swappiness": 0, "disableOOMKiller": False},
                "cpu": {"shares": 1024, "quota": 100000, "cpus": "0-1"},
                "pids": {"limit": 512},
                "blockIO": {
                    "weight": 500,
                    "weightDevice": [{"major": 8, "minor": 0, "weight": 500}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 0}],
                },
                "hugepageLimits": [
                    {"pageSize": "2MB", "limit": 0},
                    {"pageSize": "1GB", "limit": 0},
                ],
                "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 10}]},
            }
        },
    ),
    Case(
        "resources-yaml-replace-label",
        {"resources": {"pids": {"limit": 5}}},
        {"linux.resources": {"pids": {"limit": 5}}},
        label={"resources": {"memory": {"limit": 1}}},
    ),
    # --- the other linux fields ---------------------------------------------------------------
    Case(
        "linux-fields",
        {
            "sysctl": {"net.ipv4.ip_forward": "1", "fs.inotify.max_user_watches": "524288"},
            "cgroupsPath": "/podruntime/web",
            "rootfsPropagation": "shared",
            "maskedPaths": ["/proc/kcore"],
            "readonlyPaths": ["/proc/sys"],
            "uidMappings": [{"hostID": 100000, "containerID": 0, "size": 65536}],
            "gidMappings": [{"hostID": 200000, "containerID": 0, "size": 65536}],
            "annotations": {"z": "1", "a": "2"},
        },
        {
            "linux.sysctl": {"fs.inotify.max_user_watches": "524288", "net.ipv4.ip_forward": "1"},
            "linux.cgroupsPath": "/podruntime/web",
            "linux.rootfsPropagation": "shared",
            "linux.maskedPaths": ["/proc/kcore"],
            "linux.readonlyPaths": ["/proc/sys"],
            "linux.uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "linux.gidMappings": [{"containerID": 0, "hostID": 200000, "size": 65536}],
            "annotations": {"a": "2", "z": "1"},
        },
    ),
    Case(
        "linux-fields-from-label",
        {"maskedPaths": []},
        {
            "linux.sysctl": {"kernel.x": "1"},
            "linux.cgroupsPath": "/lab",
            "linux.maskedPaths": ABSENT,
            "linux.readonlyPaths": ["/r"],
        },
        label={
            "sysctl": {"kernel.x": "1"},
            "cgroupsPath": "/lab",
            "maskedPaths": ["/m"],
            "readonlyPaths": ["/r"],
        },
    ),
    Case(
        "linux-defaults-omitted",
        {},
        {
            "linux": {"resources": {}, "namespaces": [{"type": "pid"}, {"type": "mount"}]},
            "annotations": ABSENT,
        },
    ),
    # --- runtime.json -------------------------------------------------------------------------
    Case(
        "runtime-defaults",
        {},
        {
            "runtime.cgroups": [],
            "runtime.mounts": [],
            "runtime.mkdir": [],
            "runtime.interfaces": [],
            "runtime.bindNS": {
                ns: "" for ns in ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")
            },
            "runtime.namespace": "",
            "runtime.restart": ABSENT,
        },
    ),
    Case(
        "runtime-label-then-yaml",
        {
            "restart": "always",
            "runtime": {
                "mkdir": ["/var/lib/y"],
                "bindNS": {"net": "/run/netns/y"},
                "interfaces": [{"name": "eth1", "add": "veth", "peer": "veth1"}],
            },
        },
        {
            "runtime.cgroups": ["label"],
            "runtime.mkdir": ["/var/lib/y"],
            "runtime.mounts": [{"destination": "/l", "type": "tmpfs"}],
            "runtime.bindNS.net": "/run/netns/y",
            "runtime.bindNS.pid": "/run/pid",
            "runtime.bindNS.ipc": "",
            "runtime.interfaces": [
                {"name": "eth1", "add": "veth", "peer": "veth1", "createInRoot": False}
            ],
            "runtime.namespace": "label.ns",
            "runtime.restart": "always",
        },
        label={
            "runtime": {
                "cgroups": ["label"],
                "mkdir": ["/var/lib/label"],
                "mounts": [{"destination": "/l", "type": "tmpfs"}],
                "bindNS": {"net": "/run/netns/label", "pid": "/run/pid"},
                "namespace": "label.ns",
            }
        },
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_field_by_field(case: Case) -> None:
    config, runtime = generate(case.entry, case.label, case.image)
    for path, expected in case.expect.items():
        assert lookup(config, runtime, path) == expected, path


def test_table_is_large() -> None:
    assert len(CASES) >= 25


# --- label defaults: LinuxKit's config_test.go ----------------------------------------------------


def test_spec_capabilities_override_label_and_label_cwd_kept() -> None:
    """TestOverrides."""
    config, _ = generate(
        {"capabilities": ["CAP_SYS_ADMIN"]},
        label={"capabilities": ["CAP_SYS_CHROOT"], "cwd": "/label/directory"},
    )
    assert config["process"]["capabilities"]["bounding"] == ["CAP_SYS_ADMIN"]
    assert config["process"]["cwd"] == "/label/directory"


def test_unknown_capability_in_label_is_an_error() -> None:
    """TestInvalidCap: the error names the image, the label and the field."""
    config = image_config({"capabilities": ["CAP_X"]})
    with pytest.raises(UserError) as caught:
        load_label(config, "docker.io/x/y:t")
    assert str(caught.value) == (
        "image docker.io/x/y:t: label org.mobyproject.config: capabilities[0]: "
        "unknown capability 'CAP_X'"
    )


def test_named_uid_resolves() -> None:
    """TestIdMap: a named uid and a numeric gid."""
    config, _ = generate({"uid": "web", "gid": 76})
    assert config["process"]["user"] == {"uid": 103, "gid": 76}


def test_named_uid_from_label_resolves() -> None:
    config, _ = generate({}, label={"uid": "dhcpcd", "additionalGids": ["format"]})
    assert config["process"]["user"] == {"uid": 100, "gid": 0, "additionalGids": [101]}


# --- the label ------------------------------------------------------------------------------------


def test_no_label_is_none() -> None:
    assert load_label(image_config(), "x") is None
    assert load_label(image_config(labels={"other": "1"}), "x") is None
    assert load_label(image_config(labels={LABEL: ""}), "x") is None


def test_label_is_validated_by_the_spec_model() -> None:
    label = load_label(image_config({"capabilities": ["CAP_KILL"], "binds.add": ["/a:/b"]}), "x")
    assert label is not None
    assert label.capabilities == ["CAP_KILL"]
    assert [bind.text for bind in label.binds_add or []] == ["/a:/b"]


def test_label_in_yaml_is_accepted_as_linuxkit_does() -> None:
    label = load_label(image_config(labels={LABEL: "net: host\ncwd: /srv\n"}), "x")
    assert label is not None and label.net == "host" and label.cwd == "/srv"


def test_label_in_yaml_is_read_by_yaml_1_2_as_go_yaml_reads_it() -> None:
    """`on`, `10:30` and `yes` are strings, as in a spec; so `readonly: yes` is refused."""
    text = "command: [echo, on, 10:30]\nenv: [A=yes]\n"
    label = load_label(image_config(labels={LABEL: text}), "x")
    assert label is not None
    assert label.command == ["echo", "on", "10:30"] and label.env == ["A=yes"]
    with pytest.raises(UserError, match=r"label org.mobyproject.config: readonly: "):
        load_label(image_config(labels={LABEL: "readonly: yes\n"}), "x")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"name": "x"}',
            "image img: label org.mobyproject.config: 'name' cannot be set in a label",
        ),
        (
            '{"image": "x"}',
            "image img: label org.mobyproject.config: 'image' cannot be set in a label",
        ),
        ('["net"]', "image img: label org.mobyproject.config: expected an object"),
        ("{not: [valid", "image img: label org.mobyproject.config: neither JSON nor YAML"),
        ('{"nett": "host"}', "image img: label org.mobyproject.config: unknown field 'nett'"),
        (
            '{"capabilities": ["all", "CAP_KILL"]}',
            "image img: label org.mobyproject.config: capabilities: 'all' stands for a whole set",
        ),
        (
            '{"resources": {"memory": {"limit": "1G"}}}',
            "image img: label org.mobyproject.config: resources.memory.limit: expected an integer",
        ),
        ('{"net": "bridge"}', "image img: label org.mobyproject.config: net: net must be"),
    ],
)
def test_bad_label_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(UserError) as caught:
        load_label(image_config(labels={LABEL: text}), "img")
    assert str(caught.value).startswith(message)


# --- errors of the mapping ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"uid": "nobody"}, "uid: unknown user 'nobody'"),
        ({"additionalGids": [1, "ghost"]}, "additionalGids[1]: unknown user 'ghost'"),
        ({"binds": ["data:/data"]}, "bind 'data:/data': 'data' is not an absolute path nor a"),
    ],
)
def test_mapping_errors_name_the_container(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError) as caught:
        generate(entry)
    text = str(caught.value)
    assert text.startswith("container web (example/web:1): ")
    assert message in text


def test_models_built_by_their_constructor_are_validated_too() -> None:
    # (So the mapping never meets an unknown capability.)
    with pytest.raises(ValidationError, match="unknown capability 'CAP_NOPE'"):
        Container(name="web", image="x", capabilities=["CAP_NOPE"])


# --- volumes --------------------------------------------------------------------------------------

VOLUMES = [Volume(name="data"), Volume(name="ro", readonly=True)]


def test_bind_of_a_volume_is_its_merged_tree() -> None:
    config, _ = generate(
        {
            "binds": ["data:/data", "ro:/ro:ro"],
            "mounts": [{"type": "bind", "source": "ro", "destination": "/m", "options": ["ro"]}],
        },
        volumes=VOLUMES,
    )
    mounts = {m["destination"]: m for m in config["mounts"]}
    assert mounts["/data"]["source"] == "/containers/volumes/data/merged"
    assert mounts["/ro"]["source"] == "/containers/volumes/ro/merged"
    assert mounts["/m"]["source"] == "/containers/volumes/ro/merged"


@pytest.mark.parametrize(
    "entry",
    [
        {"binds": ["ro:/ro"]},
        {"binds.add": ["ro:/ro:rw"]},
        {"binds": ["ro:/ro:ro,rw"]},
        {"mounts": [{"type": "bind", "source": "ro", "destination": "/m"}]},
    ],
)
def test_read_write_bind_of_a_read_only_volume_fails(entry: dict[str, Any]) -> None:
    with pytest.raises(UserError, match="volume 'ro' is read-only: bind it with 'ro'"):
        generate(entry, volumes=VOLUMES)


# --- ids ------------------------------------------------------------------------------------------


def test_allocate_ids_from_100_in_section_order() -> None:
    spec = parse(
        Spec,
        {
            "services": [{"name": "s1", "image": "x"}, {"name": "s2", "image": "x"}],
            "onshutdown": [{"name": "down", "image": "x"}],
            "onboot": [{"name": "b1", "image": "x"}, {"name": "b2", "image": "x"}],
        },
    )
    assert allocate_ids(spec) == {"b1": 100, "b2": 101, "down": 102, "s1": 103, "s2": 104}


def test_allocate_ids_name_in_two_sections_takes_the_later_id() -> None:
    spec = parse(
        Spec,
        {
            "onboot": [{"name": "same", "image": "x"}, {"name": "root", "image": "x"}],
            "services": [{"name": "same", "image": "x"}],
        },
    )
    ids = allocate_ids(spec)
    assert ids == {"same": 102, "root": 101}
    # 'root' is always uid 0, even when a container has that name (LinuxKit's IDNumeric).
    config, _ = runtime_config(container(uid="root", gid="same"), image_config(), None, ids)
    assert config["process"]["user"] == {"uid": 0, "gid": 102}


def test_empty_spec_has_no_ids() -> None:
    assert allocate_ids(Spec()) == {}


# --- output ---------------------------------------------------------------------------------------


def test_root_path_and_encoding_are_deterministic() -> None:
    entry = {
        "capabilities": ["CAP_SYS_ADMIN", "CAP_CHOWN"],
        "sysctl": {"b": "1", "a": "2"},
        "tmpfs": ["/z", "/a"],
    }
    first, runtime = generate(entry, root_path="/containers/services/web/rootfs")
    second, _ = generate(entry, root_path="/containers/services/web/rootfs")
    assert first["root"] == {"path": "/containers/services/web/rootfs"}
    assert encode(first) == encode(second)
    text = encode(first)
    assert text.startswith(b'{\n    "linux": {\n        "') and text.endswith(b"\n}\n")
    assert list(json.loads(text)) == sorted(first)  # keys sorted, at every level
    assert list(json.loads(text)["linux"]) == sorted(first["linux"])
    assert json.loads(encode(runtime)) == runtime


def test_output_is_not_shared_with_the_input() -> None:
    entry = container(capabilities=["CAP_KILL"], command=["/x"], env=["A=1"])
    config, _ = runtime_config(entry, image_config(), None, {})
    config["process"]["args"].append("changed")
    config["process"]["env"].append("B=2")
    config["process"]["capabilities"]["bounding"].append("CAP_CHOWN")
    assert entry.command == ["/x"] and entry.env == ["A=1"]
    assert config["process"]["capabilities"]["permitted"] == ["CAP_KILL"]


# --- the OCI runtime-spec JSON schema -------------------------------------------------------------


def _schema_documents() -> dict[str, Any]:
    if not (SCHEMA_DIR / "config-schema.json").is_file():
        pytest.fail(
            f"the OCI runtime-spec schema is missing: apt-get install {SCHEMA_PACKAGE}",
            pytrace=False,
        )
    return {path.name: json.loads(path.read_text()) for path in SCHEMA_DIR.glob("*.json")}


def _strict(node: Any, in_all_of: bool = False) -> None:
    """Forbid unknown keys in every object of the schema, so that a misnamed field (e.g.
    `blockio` for `blockIO`) fails; parts of an allOf keep theirs (they see each other's)."""
    if isinstance(node, list):
        for item in node:
            _strict(item, in_all_of)
    elif isinstance(node, dict):
        if (
            "properties" in node
            and not in_all_of
            and "additionalProperties" not in node
            and "patternProperties" not in node
        ):
            node["additionalProperties"] = False
        for key, value in node.items():
            _strict(value, in_all_of or key == "allOf")


def _validator(strict: bool) -> jsonschema.Draft4Validator:
    documents = _schema_documents()
    # runc and crun accept the recursive propagations too (LinuxKit specs use rshared);
    # the schema lists only the four of the spec text.
    propagation = documents["defs-linux.json"]["definitions"]["RootfsPropagation"]
    propagation["enum"] = [*propagation["enum"], "rprivate", "rshared", "rslave", "runbindable"]
    if strict:
        documents = copy.deepcopy(documents)
        for name, document in documents.items():
            if name == "defs-linux.json":
                for key, definition in document["definitions"].items():
                    if not key.startswith("blockIODevice"):  # used inside allOf
                        _strict(definition)
            else:
                _strict(document)
    base = SCHEMA_DIR.as_uri() + "/"
    registry: Registry[Any] = Registry().with_resources(
        (base + name, Resource.from_contents(document, default_specification=DRAFT4))
        for name, document in documents.items()
    )
    return jsonschema.Draft4Validator({"$ref": base + "config-schema.json"}, registry=registry)


@pytest.fixture(scope="module")
def validators() -> list[jsonschema.Draft4Validator]:
    return [_validator(strict=False), _validator(strict=True)]


def _all_configs() -> Iterator[tuple[str, dict[str, Any]]]:
    for case in CASES:
        yield case.id, generate(case.entry, case.label, case.image)[0]
    for path in sorted([*REPO.glob("examples/*.yml"), *REPO.glob("tests/data/linuxkit/*.yml")]):
        spec = load_spec([path], template_reference).spec
        ids = allocate_ids(spec)
        for section, _, entry in spec.containers():
            config, _ = runtime_config(entry, image_config(), None, ids, volumes=spec.volumes or ())
            yield f"{path.name}:{section}:{entry.name}", config


def test_every_config_is_valid_against_the_oci_schema(
    validators: list[jsonschema.Draft4Validator],
) -> None:
    checked = 0
    for name, produced in _all_configs():
        config = json.loads(json.dumps(produced))  # JSON-serialisable, and as a runtime reads it
        for validator in validators:
            errors = [
                f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                for e in validator.iter_errors(config)
            ]
            assert errors == [], name
        checked += 1
    assert checked > len(CASES) + 5


def test_the_strict_schema_catches_a_misnamed_field(
    validators: list[jsonschema.Draft4Validator],
) -> None:
    config, _ = generate({"resources": {"blockio": {"weight": 10}}})
    config["linux"]["resources"]["blockio"] = config["linux"]["resources"].pop("blockIO")
    loose, strict = validators
    assert loose.is_valid(config)
    assert not strict.is_valid(config)


def test_numeric_id_for_files_owners() -> None:
    assert [numeric_id(v, IDS) for v in (None, 0, 42, "", "root", "format")] == [
        0,
        0,
        42,
        0,
        0,
        101,
    ]
    with pytest.raises(UserError, match="unknown user 'nobody'"):
        numeric_id("nobody", IDS)
