"""A container's OCI runtime config (config.json) and LinuxKit's runtime.json.

One spec entry (onboot, onshutdown or service), its image's OCI config and the
image's `org.mobyproject.config` label defaults become, field by field, what
LinuxKit's `ConfigToOCI` (src/cmd/linuxkit/moby/config.go) makes of them:

- command: spec > label > image Entrypoint+Cmd; env: spec > label > image Env;
  cwd: spec > label > image WorkingDir > "/";
- every other field: the spec's value replaces the label's;
- `capabilities` / `binds` in the spec replace the label's; otherwise the
  label's are kept and the spec's `capabilities.add` / `binds.add` added;
- names in uid/gid/additionalGids resolve to ids allocated from 100 in
  onboot, onshutdown, services order (`allocate_ids`).

Where osbuilder differs from LinuxKit (each a case LinuxKit gets wrong or
leaves to fail in runc) is said at the place; the module docstring of the
tests lists them too. The output is plain JSON data, deterministic: mounts
sorted by destination, capability sets sorted, map keys sorted (as Go's
encoding/json writes them), the other fields in the order of the Go structs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from osbuilder.assemble.jsondoc import json_document
from osbuilder.errors import UserError
from osbuilder.jsonfields import given
from osbuilder.oci.model import ImageConfig as OciImageConfig
from osbuilder.spec.capabilities import KNOWN_CAPABILITIES, SPECIAL_CAPABILITY_SETS
from osbuilder.spec.diagnostics import diagnostics_from
from osbuilder.spec.model import (
    BlockIoResources,
    Container,
    Device,
    IdMapping,
    Mount,
    Resources,
    Runtime,
    RuntimeMount,
    Spec,
    Volume,
)
from osbuilder.spec.model import ImageConfig as LabelConfig
from osbuilder.spec.source import (
    Document,
    Location,
    SpecSyntaxError,
    format_path,
    load_document,
)
from osbuilder.spec.syntax import Bind, Rlimit
from osbuilder.spec.validation import SchemaError, parse

#: The image label holding a LinuxKit package's default settings.
LABEL = "org.mobyproject.config"

#: runtime-spec version written; runc 1.1.5 and crun 1.8.1 (Debian 12) both accept it.
OCI_VERSION = "1.0.2"

#: Where a volume named in a bind is mounted in the system (LinuxKit's volumeMergedDir).
VOLUMES_DIR = "/containers/volumes"

#: First id handed to container names (LinuxKit's build.go).
FIRST_ID = 100

_BIND_NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")


class _Invalid(Exception):
    """A value the mapping cannot use; runtime_config adds which container it is."""


# --- the label ------------------------------------------------------------------------------


def load_label(image_config: OciImageConfig, image: str) -> LabelConfig | None:
    """The image's `org.mobyproject.config` defaults, validated; None without the label.

    LinuxKit reads the label as YAML with go-yaml v3 (JSON is a subset), so YAML is
    accepted too, by the same YAML 1.2 rules as a spec. A bad label is a UserError naming
    the image and the field.
    """
    text = (image_config.config.labels or {}).get(LABEL, "")
    if not text.strip():
        return None
    where = f"image {image}: label {LABEL}"
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = load_document(where, text).data
        except SpecSyntaxError as exc:
            raise UserError(f"{where}: neither JSON nor YAML: {exc.diagnostic.message}") from None
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected an object of container settings")
    for key in ("name", "image"):
        if key in data:
            raise UserError(f"{where}: {key!r} cannot be set in a label")
    try:
        return parse(LabelConfig, data)
    except SchemaError as exc:
        document = Document(data=data, origin=Location(image, 1, 1))
        problems = [
            f"{where}: {format_path(d.path)}: {d.message}" if d.path else f"{where}: {d.message}"
            for d in diagnostics_from(exc.problems, document)
        ]
        raise UserError("\n".join(problems)) from None


# --- names to ids -----------------------------------------------------------------------------


def allocate_ids(spec: Spec) -> dict[str, int]:
    """Ids for container names: 100, 101, ... over onboot, onshutdown, services.

    As LinuxKit's build.go: every entry takes the next id, and a name used in
    two sections keeps the later one. `root` is not in the map: it is always 0.
    """
    ids: dict[str, int] = {}
    for number, (_, _, entry) in enumerate(spec.containers(), start=FIRST_ID):
        ids[entry.name] = number
    return ids


def numeric_id(value: int | str | None, ids: Mapping[str, int]) -> int:
    """A uid or gid: a number, '' or 'root' (0), or a container name (LinuxKit's IDNumeric).

    Also for `files` owners. An unknown name is a UserError.
    """
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    if value in ("", "root"):
        return 0
    if value in ids:
        return ids[value]
    raise UserError(f"unknown user {value!r}: expected 'root', a number or a container name")


# --- config.json ----------------------------------------------------------------------------


def runtime_config(
    entry: Container,
    image_config: OciImageConfig,
    label: LabelConfig | None,
    ids: Mapping[str, int],
    *,
    root_path: str = "rootfs",
    volumes: Sequence[Volume] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config.json, runtime.json) of one container, as JSON-ready data.

    `label` is `load_label`'s result for the entry's image, `ids` is
    `allocate_ids(spec)`, `volumes` the spec's volumes (a bind source that is
    not an absolute path names one of them). Raises UserError naming the
    container when a value cannot be mapped.
    """
    try:
        return _Mapping(entry, image_config, label or LabelConfig(), ids, volumes).build(root_path)
    except _Invalid as exc:
        raise UserError(f"container {entry.name} ({entry.image}): {exc}") from None


def encode(document: Mapping[str, Any]) -> bytes:
    """The bytes of config.json or runtime.json: indented by 4 as LinuxKit's, keys sorted,
    newline-ended."""
    return json_document(document, indent=4, sort_keys=True)


class _Mapping:
    """One ConfigToOCI: `yaml` is the spec entry, `label` the image's label defaults."""

    def __init__(
        self,
        yaml_: Container,
        image_config: OciImageConfig,
        label: LabelConfig,
        ids: Mapping[str, int],
        volumes: Sequence[Volume],
    ) -> None:
        self.yaml = yaml_
        self.image = image_config.config
        self.label = label
        self.ids = ids
        self.volumes = {volume.name: volume for volume in volumes}

    def pick(self, field: str) -> Any:
        """The spec's value when set, else the label's (LinuxKit's assign* helpers)."""
        value = getattr(self.yaml, field)
        return value if value is not None else getattr(self.label, field)

    def pick_text(self, field: str) -> str:
        """Like pick, an empty string counting as unset (LinuxKit's assignStringEmpty)."""
        return str(getattr(self.yaml, field) or getattr(self.label, field) or "")

    def build(self, root_path: str) -> tuple[dict[str, Any], dict[str, Any]]:
        readonly = bool(self.pick("readonly"))
        process = self.process()
        config: dict[str, Any] = {"ociVersion": OCI_VERSION, "process": process}
        root: dict[str, Any] = {"path": root_path}
        if readonly:
            root["readonly"] = True
        config["root"] = root
        hostname = self.pick_text("hostname")
        if hostname:
            config["hostname"] = hostname
        config["mounts"] = self.mounts(readonly)
        annotations = self.pick("annotations")
        if annotations:
            config["annotations"] = dict(sorted(annotations.items()))
        config["linux"] = self.linux()
        return config, self.runtime()

    # --- process ------------------------------------------------------------------------

    def process(self) -> dict[str, Any]:
        image = self.image
        args = self.pick("command")
        if args is None:
            args = [*(image.entrypoint or []), *(image.cmd or [])]
        env = self.pick("env")
        if env is None:
            env = image.env
        # The image's User is ignored, as in LinuxKit: uid and gid default to 0.
        user: dict[str, Any] = {
            "uid": self.user_id("uid", self.pick("uid")),
            "gid": self.user_id("gid", self.pick("gid")),
        }
        additional = [
            self.user_id(f"additionalGids[{i}]", value)
            for i, value in enumerate(self.pick("additional_gids") or [])
        ]
        if additional:
            user["additionalGids"] = additional
        process: dict[str, Any] = {"user": user, "args": list(args)}
        if env:
            process["env"] = list(env)
        process["cwd"] = self.pick_text("cwd") or image.working_dir or "/"
        process["capabilities"] = self.capabilities()
        rlimits = [_rlimit(rlimit) for rlimit in self.pick("rlimits") or []]
        if rlimits:
            process["rlimits"] = rlimits
        if self.pick("no_new_privileges"):
            process["noNewPrivileges"] = True
        oom_score_adj = self.pick("oom_score_adj")
        if oom_score_adj is not None:
            process["oomScoreAdj"] = oom_score_adj
        return process

    def user_id(self, field: str, value: int | str | None) -> int:
        try:
            return numeric_id(value, self.ids)
        except UserError as exc:
            raise _Invalid(f"{field}: {exc}") from None

    def capabilities(self) -> dict[str, list[str]]:
        """effective = the capabilities; bounding = permitted = inheritable = those plus
        ambient; all sorted.

        LinuxKit expands a lone all/none only after merging the label's list with
        `capabilities.add` (so label `[all]` plus an add fails there as an unknown
        capability 'all'), ignores `capabilities.add` when the spec also sets
        `capabilities`, and ignores a label's own `capabilities.add`. Here each list is
        expanded on its own and every `.add` is added to the list it goes with.
        """
        yaml_, label = self.yaml, self.label
        lists: list[list[str] | None]
        if yaml_.capabilities is not None:
            lists = [yaml_.capabilities]
        else:
            lists = [label.capabilities, label.capabilities_add]
        lists.append(yaml_.capabilities_add)
        caps = {cap for values in lists for cap in _capability_set(values)}
        ambient = set(_capability_set(self.pick("ambient")))
        bounding = sorted(caps | ambient)
        return {
            "bounding": bounding,
            "effective": sorted(caps),
            "inheritable": list(bounding),
            "permitted": list(bounding),
            "ambient": sorted(ambient),
        }

    # --- mounts ---------------------------------------------------------------------------

    def mounts(self, readonly: bool) -> list[dict[str, Any]]:
        """The fixed mounts, then tmpfs, binds and mounts; a later one for the same
        destination replaces an earlier one; sorted by destination (parents first)."""
        ro = ["ro"] if readonly else []
        table: dict[str, dict[str, Any]] = {}
        for destination, kind, options in (
            ("/proc", "proc", ["nosuid", "nodev", "noexec", "relatime"]),
            ("/dev", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k", *ro]),
            (
                "/dev/pts",
                "devpts",
                ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
            ),
            ("/sys", "sysfs", ["nosuid", "noexec", "nodev", *ro]),
            ("/sys/fs/cgroup", "cgroup", ["nosuid", "noexec", "nodev", "relatime", "ro"]),
        ):
            table[destination] = _mount(destination, kind, kind, options)
        for tmpfs in self.pick("tmpfs") or []:
            table[tmpfs.destination] = _mount(tmpfs.destination, "tmpfs", "tmpfs", tmpfs.options)
        for bind in self.binds():
            if bind.options is not None:
                options = list(bind.options)
                # LinuxKit appends rbind even when it is there already; once is enough.
                if "rbind" not in options:
                    options.append("rbind")
            else:
                options = ["rw", "rbind", "rshared"]
            source = self.volume_source(bind.source, options, f"bind {bind.text!r}")
            table[bind.destination] = _mount(bind.destination, "bind", source, options)
        for number, mount in enumerate(self.pick("mounts") or []):
            table[mount.mount_point] = self.mount(mount, f"mounts[{number}]")
        return [table[destination] for destination in sorted(table)]

    def binds(self) -> list[Bind]:
        """`binds` replaces the label's; otherwise label binds then `binds.add`.

        LinuxKit's mergeStrings means to drop duplicates but never does; it makes
        no difference, as mounts are keyed by destination (the later wins), so
        the lists are simply concatenated. As for capabilities, `binds.add` is
        also added to the spec's own `binds`, and a label's `binds.add` to its `binds`.
        """
        yaml_, label = self.yaml, self.label
        if yaml_.binds is not None:
            base = list(yaml_.binds)
        else:
            base = [*(label.binds or []), *(label.binds_add or [])]
        return [*base, *(yaml_.binds_add or [])]

    def volume_source(self, source: str, options: list[str], what: str) -> str:
        """A bind source that is not an absolute path names a volume: its merged tree.

        As LinuxKit's updateMountsAndBindsFromVolumes, a read-only volume must be
        bound read-only: here the last of rw/ro in the options must be ro, as mount(8)
        reads them (LinuxKit wants the options to be exactly `ro` for binds, and the
        first of rw/ro to be ro for mounts).
        """
        if source.startswith("/"):
            return source
        volume = self.volumes.get(source)
        if volume is None:
            raise _Invalid(f"{what}: {source!r} is not an absolute path nor a declared volume")
        if volume.readonly and _last_of(options, ("ro", "rw")) != "ro":
            raise _Invalid(f"{what}: volume {source!r} is read-only: bind it with 'ro'")
        return f"{VOLUMES_DIR}/{source}/merged"

    def mount(self, mount: Mount, where: str) -> dict[str, Any]:
        """An explicit mount (its type and destination inferred by the model)."""
        source = mount.origin
        if mount.kind == "bind":
            source = self.volume_source(source, mount.options or [], where)
        made = _mount(mount.mount_point, mount.kind, source, mount.options)
        if mount.uidmappings:
            made["uidMappings"] = _id_mappings(mount.uidmappings)
        if mount.gidmappings:
            made["gidMappings"] = _id_mappings(mount.gidmappings)
        return made

    # --- linux ----------------------------------------------------------------------------

    def linux(self) -> dict[str, Any]:
        linux: dict[str, Any] = {}
        uid_mappings = self.pick("uid_mappings")
        if uid_mappings:
            linux["uidMappings"] = _id_mappings(uid_mappings)
        gid_mappings = self.pick("gid_mappings")
        if gid_mappings:
            linux["gidMappings"] = _id_mappings(gid_mappings)
        sysctl = self.pick("sysctl")
        if sysctl:
            linux["sysctl"] = dict(sorted(sysctl.items()))
        devices, rules = self.devices()
        resources = _resources(self.pick("resources"))
        if rules:
            resources["devices"] = [*resources.get("devices", []), *rules]
            resources = {"devices": resources.pop("devices"), **resources}
        linux["resources"] = resources
        cgroups_path = self.pick("cgroups_path")
        if cgroups_path:
            linux["cgroupsPath"] = cgroups_path
        linux["namespaces"] = self.namespaces()
        if devices:
            linux["devices"] = devices
        propagation = self.pick("rootfs_propagation")
        if propagation:
            linux["rootfsPropagation"] = propagation
        for field, key in (("masked_paths", "maskedPaths"), ("readonly_paths", "readonlyPaths")):
            paths = self.pick(field)
            if paths:
                linux[key] = list(paths)
        return linux

    def namespaces(self) -> list[dict[str, str]]:
        """pid: new unless `host`; network, ipc, uts, user: the host's unless `new` (or
        `none` for network); any other value is the path of one to join; a new mount
        namespace always. In LinuxKit's order."""
        found: list[dict[str, str]] = []
        for field, kind, default in (
            ("net", "network", "host"),
            ("ipc", "ipc", "host"),
            ("uts", "uts", "host"),
            ("pid", "pid", "new"),
            ("userns", "user", "host"),
        ):
            value = self.pick_text(field) or default
            if value in ("host", "root"):
                continue
            if value == "new" or (kind == "network" and value == "none"):
                found.append({"type": kind})
            else:
                found.append({"type": kind, "path": value})
        found.append({"type": "mount"})
        return found

    def devices(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(linux.devices, device cgroup rules allowing them)."""
        devices: list[dict[str, Any]] = []
        rules: list[dict[str, Any]] = []
        for device in self.pick("devices") or []:
            rule_type = device.cgroup_type
            if device.path == "all":
                if rule_type is not None:
                    rules.append({"allow": True, "type": rule_type, "access": "rwm"})
                continue
            devices.append(_device(device))
            if rule_type is not None:  # a fifo is not a device: no cgroup rule
                rules.append(
                    {
                        "allow": True,
                        "type": rule_type,
                        "major": device.major,
                        "minor": device.minor,
                        "access": "rwm",
                    }
                )
        return devices, rules

    # --- runtime.json -----------------------------------------------------------------------

    def runtime(self) -> dict[str, Any]:
        """LinuxKit's assignRuntime: each field of the spec's `runtime` replaces the label's,
        written out in full as LinuxKit does; plus osbuilder's `restart` when set."""
        yaml_ = self.yaml.runtime or Runtime()
        label = self.label.runtime or Runtime()

        def pick(field: str) -> Any:
            value = getattr(yaml_, field)
            return value if value is not None else getattr(label, field)

        interfaces = []
        for interface in pick("interfaces") or []:
            out: dict[str, Any] = {}
            for key in ("name", "add", "peer"):
                if getattr(interface, key):
                    out[key] = getattr(interface, key)
            out["createInRoot"] = bool(interface.create_in_root)
            interfaces.append(out)
        bind_ns: dict[str, str] = {}
        for namespace in _BIND_NAMESPACES:
            yaml_path = getattr(yaml_.bind_ns, namespace) if yaml_.bind_ns else None
            label_path = getattr(label.bind_ns, namespace) if label.bind_ns else None
            bind_ns[namespace] = yaml_path if yaml_path is not None else label_path or ""
        runtime: dict[str, Any] = {
            "cgroups": list(pick("cgroups") or []),
            "mounts": [_runtime_mount(mount) for mount in pick("mounts") or []],
            "mkdir": list(pick("mkdir") or []),
            "interfaces": interfaces,
            "bindNS": bind_ns,
            "namespace": pick("namespace") or "",
        }
        if self.yaml.restart is not None:
            runtime["restart"] = self.yaml.restart
        return runtime


# --- helpers ----------------------------------------------------------------------------------


def _capability_set(values: Sequence[str] | None) -> list[str]:
    """A capability list (the model checked its names) with a lone `all` / `none` expanded."""
    if not values:
        return []
    if len(values) == 1 and values[0].lower() in SPECIAL_CAPABILITY_SETS:
        return list(KNOWN_CAPABILITIES) if values[0].lower() == "all" else []
    return list(values)


def _rlimit(rlimit: Rlimit) -> dict[str, Any]:
    return {"type": rlimit.name, "hard": rlimit.hard, "soft": rlimit.soft}


def _mount(
    destination: str, kind: str, source: str, options: Iterable[str] | None
) -> dict[str, Any]:
    made: dict[str, Any] = {"destination": destination, "type": kind, "source": source}
    if options:
        made["options"] = list(options)
    return made


def _runtime_mount(mount: RuntimeMount) -> dict[str, Any]:
    """A runtime.json mount, as written (no inference: the init reads it as it is)."""
    made: dict[str, Any] = {"destination": mount.destination or ""}
    if mount.type:
        made["type"] = mount.type
    if mount.source:
        made["source"] = mount.source
    if mount.options:
        made["options"] = list(mount.options)
    return made


def _last_of(options: Sequence[str], words: tuple[str, ...]) -> str:
    """Which of `words` the options end up with (mount(8): the last one wins); '' if none."""
    found = [option for option in options if option in words]
    return found[-1] if found else ""


def _id_mappings(mappings: Sequence[IdMapping]) -> list[dict[str, int]]:
    return [{"containerID": m.container_id, "hostID": m.host_id, "size": m.size} for m in mappings]


def _device(device: Device) -> dict[str, Any]:
    made: dict[str, Any] = {"path": device.path, "type": device.type}
    if device.type != "p":
        made["major"] = device.major
        made["minor"] = device.minor
    # LinuxKit fails without a mode; the OCI default (0666 in runc and crun) is used instead.
    if device.mode is not None:
        made["fileMode"] = int(device.mode, 8)
    return made


def _resources(resources: Resources | None) -> dict[str, Any]:
    """linux.resources in the runtime-spec's JSON names; fields Go always writes get
    Go's zero value when the spec leaves them out."""
    if resources is None:
        return {}
    out: dict[str, Any] = {}
    if resources.devices is not None:
        out["devices"] = [
            {"allow": bool(rule.allow)} | {k: v for k, v in rule.to_data().items() if k != "allow"}
            for rule in resources.devices
        ]
    for key in ("memory", "cpu"):
        section = getattr(resources, key)
        if section is not None:
            out[key] = section.to_data()
    if resources.pids is not None:
        out["pids"] = {"limit": resources.pids.limit or 0}
    if resources.blockio is not None:
        out["blockIO"] = _blockio(resources.blockio)
    if resources.hugepage_limits is not None:
        out["hugepageLimits"] = [
            {"pageSize": _page_size(limit.page_size), "limit": limit.limit or 0}
            for limit in resources.hugepage_limits
        ]
    if resources.network is not None:
        network: dict[str, Any] = {}
        if resources.network.class_id is not None:
            network["classID"] = resources.network.class_id
        if resources.network.priorities is not None:
            network["priorities"] = [
                {"name": p.name or "", "priority": p.priority or 0}
                for p in resources.network.priorities
            ]
        out["network"] = network
    return out


def _blockio(blockio: BlockIoResources) -> dict[str, Any]:
    out = given(weight=blockio.weight, leafWeight=blockio.leaf_weight)
    if blockio.weight_device is not None:
        out["weightDevice"] = [
            {"major": d.major or 0, "minor": d.minor or 0}
            | {k: v for k, v in d.to_data().items() if k not in ("major", "minor")}
            for d in blockio.weight_device
        ]
    for field, key in (
        ("throttle_read_bps_device", "throttleReadBpsDevice"),
        ("throttle_write_bps_device", "throttleWriteBpsDevice"),
        ("throttle_read_iops_device", "throttleReadIOPSDevice"),
        ("throttle_write_iops_device", "throttleWriteIOPSDevice"),
    ):
        devices = getattr(blockio, field)
        if devices is not None:
            out[key] = [
                {"major": d.major or 0, "minor": d.minor or 0, "rate": d.rate or 0} for d in devices
            ]
    return out


def _page_size(size: int) -> str:
    """The runtime-spec's page size text ("2MB"). The schema has a number of bytes (whole
    KB, the model checked), which LinuxKit passes on as digits that runc cannot use; it
    becomes the largest whole unit."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size % scale == 0:
            return f"{size // scale}{unit}"
    raise AssertionError("unreachable")  # pragma: no cover
