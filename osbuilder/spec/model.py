"""The spec: msgspec models of LinuxKit's YAML schema (validated by spec/schema.py).

These models are the single source of truth: they validate specs, give the
JSON Schema (`osbuilder schema`) and generate docs/spec.md. Field names and
types are LinuxKit's (src/cmd/linuxkit/moby/schema.go), so LinuxKit specs
load unchanged; unlike LinuxKit, an unknown key is an error.
"""

# (No `from __future__ import annotations` here: msgspec would then compile and evaluate
# every annotation's text when it first meets the models, ~3 ms of each command.)

from typing import Annotated, Literal

from msgspec import Meta, field

from osbuilder.spec.fieldtypes import (
    AbsolutePath,
    Bind,
    CapabilityList,
    ContainerName,
    DeviceType,
    EnvVar,
    ImagePath,
    ImageRef,
    IpcNamespace,
    NetNamespace,
    OctalMode,
    OomScoreAdj,
    PidNamespace,
    Platform,
    Propagation,
    Rlimit,
    Tmpfs,
    UserId,
    UserNamespace,
    UtsNamespace,
    VolumeName,
)
from osbuilder.spec.schema import Model

# --- kernel -----------------------------------------------------------------


class Kernel(Model, frozen=True):
    """The kernel image and its command line."""

    image: Annotated[ImageRef | None, Meta(description="Image holding the kernel.")] = None
    cmdline: Annotated[str | None, Meta(description="Kernel command line.")] = None
    binary: Annotated[
        str | None, Meta(description="File in the image that is the kernel (default `kernel`).")
    ] = None
    tar: Annotated[
        str | None,
        Meta(
            description="Tarball in the image unpacked into / (default `kernel.tar`; `none` skips)."
        ),
    ] = None
    ucode: Annotated[
        str | None, Meta(description="CPU microcode cpio in the image, prepended to the initrd.")
    ] = None


# --- container entries --------------------------------------------------------


class IdMapping(Model, frozen=True):
    """A user namespace id mapping."""

    host_id: Annotated[int, Meta(ge=0, description="First id on the host.")] = field(name="hostID")
    container_id: Annotated[int, Meta(ge=0, description="First id in the container.")] = field(
        name="containerID"
    )
    size: Annotated[int, Meta(ge=1, description="How many ids are mapped.")]


class Mount(Model, frozen=True):
    """A mount, as in the OCI runtime spec; type and destination are inferred when obvious."""

    destination: Annotated[str | None, Meta(description="Mount point in the container.")] = None
    type: Annotated[str | None, Meta(description="Filesystem type (bind, tmpfs, proc ...).")] = None
    source: Annotated[
        str | None, Meta(description="Source; a bind source without '/' is a volume.")
    ] = None
    options: Annotated[list[str] | None, Meta(description="Mount options.")] = None
    uidmappings: Annotated[
        list[IdMapping] | None, Meta(description="Idmapped mount uid mappings.")
    ] = None
    gidmappings: Annotated[
        list[IdMapping] | None, Meta(description="Idmapped mount gid mappings.")
    ] = None


class Device(Model, frozen=True):
    """A device node made in the container, allowed in its device cgroup."""

    path: Annotated[
        str, Meta(description="Device path in the container, or `all` for a cgroup rule only.")
    ]
    type: Annotated[DeviceType, Meta(description="a (all), b (block), c (char), u, p (fifo).")]
    major: Annotated[int | None, Meta(description="Major number.")] = None
    minor: Annotated[int | None, Meta(description="Minor number.")] = None
    mode: Annotated[OctalMode | None, Meta(description="File mode as an octal string.")] = None


class DeviceCgroup(Model, frozen=True):
    """A device cgroup rule."""

    allow: bool | None = None
    type: str | None = None
    major: int | None = None
    minor: int | None = None
    access: Annotated[str | None, Meta(description="Some of r, w, m.")] = None


class MemoryResources(Model, frozen=True):
    limit: int | None = None
    reservation: int | None = None
    swap: int | None = None
    kernel: int | None = None
    kernel_tcp: int | None = field(default=None, name="kernelTCP")
    swappiness: int | None = None
    disable_oom_killer: bool | None = field(default=None, name="disableOOMKiller")


class CpuResources(Model, frozen=True):
    shares: int | None = None
    quota: int | None = None
    period: int | None = None
    realtime_runtime: int | None = field(default=None, name="realtimeRuntime")
    realtime_period: int | None = field(default=None, name="realtimePeriod")
    cpus: str | None = None
    mems: str | None = None


class PidsResources(Model, frozen=True):
    limit: int | None = None


class WeightDevice(Model, frozen=True):
    major: int | None = None
    minor: int | None = None
    weight: int | None = None
    leaf_weight: int | None = field(default=None, name="leafWeight")


class ThrottleDevice(Model, frozen=True):
    major: int | None = None
    minor: int | None = None
    rate: int | None = None


class BlockIoResources(Model, frozen=True):
    weight: int | None = None
    leaf_weight: int | None = field(default=None, name="leafWeight")
    weight_device: list[WeightDevice] | None = field(default=None, name="weightDevice")
    throttle_read_bps_device: list[ThrottleDevice] | None = field(
        default=None, name="throttleReadBpsDevice"
    )
    throttle_write_bps_device: list[ThrottleDevice] | None = field(
        default=None, name="throttleWriteBpsDevice"
    )
    throttle_read_iops_device: list[ThrottleDevice] | None = field(
        default=None, name="throttleReadIOPSDevice"
    )
    throttle_write_iops_device: list[ThrottleDevice] | None = field(
        default=None, name="throttleWriteIOPSDevice"
    )


class HugepageLimit(Model, frozen=True):
    page_size: int | None = field(default=None, name="pageSize")
    limit: int | None = None


class InterfacePriority(Model, frozen=True):
    name: str | None = None
    priority: int | None = None


class NetworkResources(Model, frozen=True):
    class_id: int | None = field(default=None, name="classID")
    priorities: list[InterfacePriority] | None = None


class Resources(Model, frozen=True):
    """cgroup limits, as the OCI runtime spec's linux.resources."""

    devices: list[DeviceCgroup] | None = None
    memory: MemoryResources | None = None
    cpu: CpuResources | None = None
    pids: PidsResources | None = None
    blockio: BlockIoResources | None = None
    hugepage_limits: list[HugepageLimit] | None = field(default=None, name="hugepageLimits")
    network: NetworkResources | None = None


class Interface(Model, frozen=True):
    """A network interface the init creates or moves into the container's namespace."""

    name: Annotated[str | None, Meta(description="Interface name inside the container.")] = None
    add: Annotated[str | None, Meta(description="Kind of interface to create (e.g. veth).")] = None
    peer: Annotated[str | None, Meta(description="Name of the veth peer.")] = None
    create_in_root: Annotated[
        bool | None, Meta(description="Create in the root namespace, then move it.")
    ] = field(default=None, name="createInRoot")


class BindNamespaces(Model, frozen=True):
    """Paths where the init bind-mounts the container's namespaces once it runs."""

    cgroup: str | None = None
    ipc: str | None = None
    mnt: str | None = None
    net: str | None = None
    pid: str | None = None
    user: str | None = None
    uts: str | None = None


class Runtime(Model, frozen=True):
    """Actions the init performs around a container; not part of the OCI spec (runtime.json)."""

    cgroups: Annotated[list[str] | None, Meta(description="cgroups to create.")] = None
    mounts: Annotated[
        list[Mount] | None, Meta(description="Mounts made before the container starts.")
    ] = None
    mkdir: Annotated[list[str] | None, Meta(description="Directories to create first.")] = None
    interfaces: Annotated[
        list[Interface] | None, Meta(description="Network interfaces to set up.")
    ] = None
    bind_ns: BindNamespaces | None = field(default=None, name="bindNS")
    namespace: Annotated[str | None, Meta(description="containerd namespace (services).")] = None


class ImageConfig(Model, frozen=True):
    """Runtime settings of a container.

    The same settings are accepted in an image's `org.mobyproject.config`
    label; a value in the spec replaces the label's, which replaces the image
    config's (command, env, cwd).
    """

    capabilities: Annotated[
        CapabilityList | None,
        Meta(description="Capabilities (CAP_*, or a lone `all`/`none`); replaces the label's."),
    ] = None
    capabilities_add: Annotated[
        CapabilityList | None, Meta(description="Capabilities added to the label's.")
    ] = field(default=None, name="capabilities.add")
    ambient: Annotated[CapabilityList | None, Meta(description="Ambient capabilities.")] = None
    mounts: Annotated[list[Mount] | None, Meta(description="Extra mounts.")] = None
    binds: Annotated[
        list[Bind] | None,
        Meta(description="Bind mounts `src:dst[:opts]`; replaces the label's binds."),
    ] = None
    binds_add: Annotated[
        list[Bind] | None, Meta(description="Bind mounts added to the label's.")
    ] = field(default=None, name="binds.add")
    devices: Annotated[
        list[Device] | None,
        Meta(description="Device nodes and cgroup rules."),
    ] = None
    tmpfs: Annotated[list[Tmpfs] | None, Meta(description="tmpfs mounts `dst[:opts]`.")] = None
    command: Annotated[
        list[str] | None, Meta(description="Command; replaces entrypoint and cmd.")
    ] = None
    env: Annotated[
        list[EnvVar] | None,
        Meta(description="Environment, `NAME=value` entries."),
    ] = None
    cwd: Annotated[AbsolutePath | None, Meta(description="Working directory (default /).")] = None
    net: Annotated[
        NetNamespace | None,
        Meta(description="Network namespace: host (default), new, none or a path."),
    ] = None
    pid: Annotated[
        PidNamespace | None, Meta(description="PID namespace: new (default), host or a path.")
    ] = None
    ipc: Annotated[
        IpcNamespace | None, Meta(description="IPC namespace: host (default), new or a path.")
    ] = None
    uts: Annotated[
        UtsNamespace | None, Meta(description="UTS namespace: host (default), new or a path.")
    ] = None
    userns: Annotated[
        UserNamespace | None, Meta(description="User namespace: host (default), new or a path.")
    ] = None
    readonly: Annotated[
        bool | None, Meta(description="Read-only root filesystem, /dev and /sys.")
    ] = None
    masked_paths: list[str] | None = field(default=None, name="maskedPaths")
    readonly_paths: list[str] | None = field(default=None, name="readonlyPaths")
    uid: Annotated[UserId | None, Meta(description="User id, or the name of a container.")] = None
    gid: Annotated[UserId | None, Meta(description="Group id, or the name of a container.")] = None
    additional_gids: list[UserId] | None = field(default=None, name="additionalGids")
    no_new_privileges: bool | None = field(default=None, name="noNewPrivileges")
    hostname: str | None = None
    oom_score_adj: OomScoreAdj | None = field(default=None, name="oomScoreAdj")
    rootfs_propagation: Propagation | None = field(default=None, name="rootfsPropagation")
    cgroups_path: str | None = field(default=None, name="cgroupsPath")
    resources: Resources | None = None
    sysctl: Annotated[
        dict[str, str] | None,
        Meta(description="Sysctls set in the container."),
    ] = None
    rlimits: Annotated[list[Rlimit] | None, Meta(description="Limits `name,soft,hard`.")] = None
    uid_mappings: list[IdMapping] | None = field(default=None, name="uidMappings")
    gid_mappings: list[IdMapping] | None = field(default=None, name="gidMappings")
    annotations: dict[str, str] | None = None
    runtime: Annotated[
        Runtime | None, Meta(description="Actions of the init around the container.")
    ] = None


class Container(ImageConfig, frozen=True, kw_only=True):
    """An onboot, onshutdown or service container: a name, an image and its settings."""

    name: Annotated[
        ContainerName, Meta(description="Name of the container (unique among services).")
    ]
    image: Annotated[ImageRef, Meta(description="Image to run.")]
    restart: Annotated[
        Literal["always", "on-failure", "never"] | None,
        Meta(
            description="Services only (an osbuilder extension): restart when the service exits "
            "(always), exits non-zero (on-failure, the default) or never."
        ),
    ] = None


# --- files, volumes, trust --------------------------------------------------------


class File(Model, frozen=True):
    """A file, directory or symlink added to the image after everything else.

    Exactly one of contents, source, directory, symlink and metadata is set
    (checked with the other cross-field rules in `checks`).
    """

    path: Annotated[ImagePath, Meta(description="Where it goes in the image.")]
    directory: Annotated[bool | None, Meta(description="Make a directory.")] = None
    symlink: Annotated[str | None, Meta(description="Make a symlink pointing here.")] = None
    contents: Annotated[str | None, Meta(description="The file's contents.")] = None
    source: Annotated[
        str | None, Meta(description="Copy this host file (relative to the cwd).")
    ] = None
    metadata: Annotated[
        Literal["yaml", "json"] | None, Meta(description="Write the resolved spec in this format.")
    ] = None
    optional: Annotated[bool | None, Meta(description="Skip when `source` is missing.")] = None
    mode: Annotated[
        OctalMode | None,
        Meta(description="Octal mode (default 0600, dirs 0700)."),
    ] = None
    uid: Annotated[UserId | None, Meta(description="Owner: a number or a container name.")] = None
    gid: Annotated[UserId | None, Meta(description="Group: a number or a container name.")] = None


class Volume(Model, frozen=True):
    """A volume, laid out at /containers/volumes/NAME and bound into containers by name."""

    name: Annotated[VolumeName, Meta(description="Name, ^[a-z0-9_-]*$, unique.")]
    image: Annotated[
        ImageRef | None,
        Meta(description="Image whose contents fill the volume."),
    ] = None
    readonly: Annotated[
        bool | None,
        Meta(description="Containers may only bind it with `ro`."),
    ] = None
    format: Annotated[
        Literal["oci", "filesystem"] | None,
        Meta(description="`filesystem` (default): the image's files; `oci`: an OCI layout."),
    ] = None
    platforms: Annotated[
        list[Platform] | None, Meta(description="Platforms for `format: oci`.")
    ] = None


class Trust(Model, frozen=True):
    """Docker Content Trust (Notary v1). Accepted for old specs and ignored, as in LinuxKit."""

    image: list[str] | None = None
    org: list[str] | None = None


class Spec(Model, frozen=True):
    """An osbuilder (LinuxKit) system spec."""

    kernel: Annotated[Kernel | None, Meta(description="The kernel.")] = None
    init: Annotated[
        list[ImageRef] | None,
        Meta(description="Images unpacked into / in order."),
    ] = None
    onboot: Annotated[
        list[Container] | None,
        Meta(description="Containers run once at boot."),
    ] = None
    onshutdown: Annotated[
        list[Container] | None, Meta(description="Containers run at shutdown.")
    ] = None
    services: Annotated[list[Container] | None, Meta(description="Long-running containers.")] = None
    files: Annotated[list[File] | None, Meta(description="Extra files, added last.")] = None
    volumes: Annotated[list[Volume] | None, Meta(description="Volumes.")] = None
    trust: Annotated[Trust | None, Meta(description="Ignored (Notary v1 is gone).")] = None
