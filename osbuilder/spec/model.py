"""The spec: pydantic models of LinuxKit's YAML schema.

These models are the single source of truth: they validate specs (every error at
once, spec/validation.py), give the JSON Schema (`osbuilder schema`) and generate
docs/spec.md. Field names and types are LinuxKit's (src/cmd/linuxkit/moby/schema.go),
so LinuxKit specs load unchanged; unlike LinuxKit, an unknown key is an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from osbuilder.spec.fieldtypes import (
    AbsolutePath,
    CapabilityList,
    ContainerName,
    DeviceType,
    EnvVar,
    ImagePath,
    ImageRef,
    IpcNamespace,
    NamespacePrefix,
    NetNamespace,
    OctalMode,
    OomScoreAdj,
    PageSize,
    PidNamespace,
    Platform,
    Propagation,
    UserId,
    UserNamespace,
    UtsNamespace,
    VolumeName,
)
from osbuilder.spec.syntax import Bind, Rlimit, Tmpfs
from osbuilder.spec.validation import Model, invalid

# --- kernel -----------------------------------------------------------------


class Kernel(Model):
    """The kernel image and its command line."""

    image: Annotated[ImageRef | None, Field(description="Image holding the kernel.")] = None
    cmdline: Annotated[str | None, Field(description="Kernel command line.")] = None
    binary: Annotated[
        str | None, Field(description="File in the image that is the kernel (default `kernel`).")
    ] = None
    tar: Annotated[
        str | None,
        Field(
            description="Tarball in the image unpacked into / (default `kernel.tar`; `none` skips)."
        ),
    ] = None
    ucode: Annotated[
        str | None, Field(description="CPU microcode cpio in the image, prepended to the initrd.")
    ] = None


# --- container entries --------------------------------------------------------


class IdMapping(Model):
    """A user namespace id mapping."""

    host_id: Annotated[int, Field(alias="hostID", ge=0, description="First id on the host.")]
    container_id: Annotated[
        int, Field(alias="containerID", ge=0, description="First id in the container.")
    ]
    size: Annotated[int, Field(ge=1, description="How many ids are mapped.")]


class RuntimeMount(Model):
    """A mount the init makes before the container starts (runtime.json), as written."""

    destination: Annotated[str | None, Field(description="Mount point in the container.")] = None
    type: Annotated[str | None, Field(description="Filesystem type (bind, tmpfs, proc ...).")] = (
        None
    )
    source: Annotated[
        str | None, Field(description="Source; a bind source without '/' is a volume.")
    ] = None
    options: Annotated[list[str] | None, Field(description="Mount options.")] = None
    uidmappings: Annotated[
        list[IdMapping] | None, Field(description="Idmapped mount uid mappings.")
    ] = None
    gidmappings: Annotated[
        list[IdMapping] | None, Field(description="Idmapped mount gid mappings.")
    ] = None


# Mount types whose source names the type, and their usual mount point (LinuxKit's
# defaultMountpoint).
_DEFAULT_MOUNTPOINTS = {
    "proc": "/proc",
    "devpts": "/dev/pts",
    "sysfs": "/sys",
    "cgroup": "/sys/fs/cgroup",
    "mqueue": "/dev/mqueue",
}


class Mount(RuntimeMount):
    """A mount of the container, as in the OCI runtime spec. As in LinuxKit, a source that
    names a type (proc, devpts, sysfs, cgroup, mqueue) gives the type, that type its usual
    mount point, and /dev without a type is a tmpfs."""

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if not self.kind:
            invalid(f"mount for destination {self.destination or ''!r} is missing a type")
        if not self.mount_point:
            invalid(f"mount of type {self.kind!r} is missing a destination")
        return self

    @property
    def kind(self) -> str:
        """The type, given or inferred."""
        if self.type:
            return self.type
        if self.source in _DEFAULT_MOUNTPOINTS:
            return self.source
        return "tmpfs" if self.destination == "/dev" else ""

    @property
    def mount_point(self) -> str:
        """The destination, given or inferred."""
        return self.destination or _DEFAULT_MOUNTPOINTS.get(self.kind, "")

    @property
    def origin(self) -> str:
        """The source, the type when not given."""
        return self.source or self.kind


class Device(Model):
    """A device node made in the container, allowed in its device cgroup."""

    path: Annotated[
        str, Field(description="Device path in the container, or `all` for a cgroup rule only.")
    ]
    type: Annotated[DeviceType, Field(description="a (all), b (block), c (char), u, p (fifo).")]
    major: Annotated[int | None, Field(description="Major number.")] = None
    minor: Annotated[int | None, Field(description="Minor number.")] = None
    mode: Annotated[OctalMode | None, Field(description="File mode as an octal string.")] = None

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.type == "a" and self.path != "all":
            invalid("type 'a' (all devices) goes with path 'all' only")
        if self.path != "all" and self.type != "p" and (self.major is None or self.minor is None):
            invalid(f"a type {self.type!r} device needs major and minor")
        return self

    @property
    def cgroup_type(self) -> str | None:
        """The device cgroup's type: a, b, c; an unbuffered char device (u) is a char device;
        a fifo (p) needs no rule. (LinuxKit copies the type, and runc refuses a cgroup rule
        of type u or p.)"""
        return {"a": "a", "b": "b", "c": "c", "u": "c"}.get(self.type)


class DeviceCgroup(Model):
    """A device cgroup rule."""

    allow: Annotated[bool | None, Field(description="Allow (true) or deny access.")] = None
    type: Annotated[str | None, Field(description="a (all), b (block) or c (char).")] = None
    major: Annotated[int | None, Field(description="Major number (default: any).")] = None
    minor: Annotated[int | None, Field(description="Minor number (default: any).")] = None
    access: Annotated[str | None, Field(description="Some of r, w, m.")] = None


class MemoryResources(Model):
    """Memory limits (bytes), as the runtime spec's linux.resources.memory."""

    limit: Annotated[int | None, Field(description="Memory limit.")] = None
    reservation: Annotated[int | None, Field(description="Soft limit.")] = None
    swap: Annotated[int | None, Field(description="Memory plus swap limit.")] = None
    kernel: Annotated[int | None, Field(description="Kernel memory limit.")] = None
    kernel_tcp: Annotated[
        int | None, Field(alias="kernelTCP", description="Kernel TCP buffer memory limit.")
    ] = None
    swappiness: Annotated[int | None, Field(description="Swappiness (0 to 100).")] = None
    disable_oom_killer: Annotated[
        bool | None, Field(alias="disableOOMKiller", description="Disable the OOM killer.")
    ] = None


class CpuResources(Model):
    """CPU limits, as the runtime spec's linux.resources.cpu."""

    shares: Annotated[int | None, Field(description="Relative CPU weight.")] = None
    quota: Annotated[int | None, Field(description="CPU time (us) allowed per period.")] = None
    period: Annotated[int | None, Field(description="Period (us) of the quota.")] = None
    realtime_runtime: Annotated[
        int | None, Field(alias="realtimeRuntime", description="Realtime time (us) per period.")
    ] = None
    realtime_period: Annotated[
        int | None, Field(alias="realtimePeriod", description="Realtime period (us).")
    ] = None
    cpus: Annotated[str | None, Field(description="CPUs to run on, e.g. `0-3,6`.")] = None
    mems: Annotated[str | None, Field(description="Memory nodes to use, e.g. `0`.")] = None


class PidsResources(Model):
    """Process count limit."""

    limit: Annotated[int | None, Field(description="Most tasks in the cgroup.")] = None


class WeightDevice(Model):
    """A block device's I/O weight."""

    major: Annotated[int | None, Field(description="Major number.")] = None
    minor: Annotated[int | None, Field(description="Minor number.")] = None
    weight: Annotated[int | None, Field(description="Weight (10 to 1000).")] = None
    leaf_weight: Annotated[
        int | None, Field(alias="leafWeight", description="Weight among the cgroup's children.")
    ] = None


class ThrottleDevice(Model):
    """A block device's I/O rate limit."""

    major: Annotated[int | None, Field(description="Major number.")] = None
    minor: Annotated[int | None, Field(description="Minor number.")] = None
    rate: Annotated[int | None, Field(description="Bytes or operations per second.")] = None


class BlockIoResources(Model):
    """Block I/O weights and limits, as the runtime spec's linux.resources.blockIO."""

    weight: Annotated[int | None, Field(description="Weight (10 to 1000).")] = None
    leaf_weight: Annotated[
        int | None, Field(alias="leafWeight", description="Weight among the cgroup's children.")
    ] = None
    weight_device: Annotated[
        list[WeightDevice] | None, Field(alias="weightDevice", description="Per-device weights.")
    ] = None
    throttle_read_bps_device: Annotated[
        list[ThrottleDevice] | None,
        Field(alias="throttleReadBpsDevice", description="Read bytes per second, per device."),
    ] = None
    throttle_write_bps_device: Annotated[
        list[ThrottleDevice] | None,
        Field(alias="throttleWriteBpsDevice", description="Write bytes per second, per device."),
    ] = None
    throttle_read_iops_device: Annotated[
        list[ThrottleDevice] | None,
        Field(
            alias="throttleReadIOPSDevice", description="Read operations per second, per device."
        ),
    ] = None
    throttle_write_iops_device: Annotated[
        list[ThrottleDevice] | None,
        Field(
            alias="throttleWriteIOPSDevice", description="Write operations per second, per device."
        ),
    ] = None


class HugepageLimit(Model):
    """A huge page limit."""

    page_size: Annotated[
        PageSize, Field(alias="pageSize", description="Page size in bytes (e.g. 2097152).")
    ]
    limit: Annotated[int | None, Field(description="Most bytes of pages of this size.")] = None


class InterfacePriority(Model):
    """The priority of a network interface's traffic."""

    name: Annotated[str | None, Field(description="Interface name.")] = None
    priority: Annotated[int | None, Field(description="Priority.")] = None


class NetworkResources(Model):
    """Network class and priorities, as the runtime spec's linux.resources.network."""

    class_id: Annotated[
        int | None, Field(alias="classID", description="Class id of the cgroup's packets.")
    ] = None
    priorities: Annotated[
        list[InterfacePriority] | None, Field(description="Per-interface priorities.")
    ] = None


class Resources(Model):
    """cgroup limits, as the OCI runtime spec's linux.resources."""

    devices: Annotated[list[DeviceCgroup] | None, Field(description="Device cgroup rules.")] = None
    memory: Annotated[MemoryResources | None, Field(description="Memory limits.")] = None
    cpu: Annotated[CpuResources | None, Field(description="CPU limits.")] = None
    pids: Annotated[PidsResources | None, Field(description="Process count limit.")] = None
    blockio: Annotated[BlockIoResources | None, Field(description="Block I/O limits.")] = None
    hugepage_limits: Annotated[
        list[HugepageLimit] | None, Field(alias="hugepageLimits", description="Huge page limits.")
    ] = None
    network: Annotated[NetworkResources | None, Field(description="Network settings.")] = None


class Interface(Model):
    """A network interface the init creates or moves into the container's namespace."""

    name: Annotated[str | None, Field(description="Interface name inside the container.")] = None
    add: Annotated[str | None, Field(description="Kind of interface to create (e.g. veth).")] = None
    peer: Annotated[str | None, Field(description="Name of the veth peer.")] = None
    create_in_root: Annotated[
        bool | None,
        Field(alias="createInRoot", description="Create in the root namespace, then move it."),
    ] = None


class BindNamespaces(Model):
    """Paths where the init bind-mounts the container's namespaces once it runs."""

    cgroup: Annotated[str | None, Field(description="Where the cgroup namespace goes.")] = None
    ipc: Annotated[str | None, Field(description="Where the IPC namespace goes.")] = None
    mnt: Annotated[str | None, Field(description="Where the mount namespace goes.")] = None
    net: Annotated[str | None, Field(description="Where the network namespace goes.")] = None
    pid: Annotated[str | None, Field(description="Where the PID namespace goes.")] = None
    user: Annotated[str | None, Field(description="Where the user namespace goes.")] = None
    uts: Annotated[str | None, Field(description="Where the UTS namespace goes.")] = None


class Runtime(Model):
    """Actions the init performs around a container; not part of the OCI spec (runtime.json)."""

    cgroups: Annotated[list[str] | None, Field(description="cgroups to create.")] = None
    mounts: Annotated[
        list[RuntimeMount] | None,
        Field(description="Mounts made before the container starts."),
    ] = None
    mkdir: Annotated[list[str] | None, Field(description="Directories to create first.")] = None
    interfaces: Annotated[
        list[Interface] | None, Field(description="Network interfaces to set up.")
    ] = None
    bind_ns: Annotated[
        BindNamespaces | None,
        Field(alias="bindNS", description="Where to bind-mount the container's namespaces."),
    ] = None
    namespace: Annotated[str | None, Field(description="containerd namespace (services).")] = None


class ImageConfig(Model):
    """Runtime settings of a container.

    The same settings are accepted in an image's `org.mobyproject.config`
    label; a value in the spec replaces the label's, which replaces the image
    config's (command, env, cwd).
    """

    capabilities: Annotated[
        CapabilityList | None,
        Field(description="Capabilities (CAP_*, or a lone `all`/`none`); replaces the label's."),
    ] = None
    capabilities_add: Annotated[
        CapabilityList | None,
        Field(alias="capabilities.add", description="Capabilities added to the label's."),
    ] = None
    ambient: Annotated[CapabilityList | None, Field(description="Ambient capabilities.")] = None
    mounts: Annotated[list[Mount] | None, Field(description="Extra mounts.")] = None
    binds: Annotated[
        list[Bind] | None,
        Field(description="Bind mounts `src:dst[:opts]`; replaces the label's binds."),
    ] = None
    binds_add: Annotated[
        list[Bind] | None, Field(alias="binds.add", description="Bind mounts added to the label's.")
    ] = None
    devices: Annotated[list[Device] | None, Field(description="Device nodes and cgroup rules.")] = (
        None
    )
    tmpfs: Annotated[list[Tmpfs] | None, Field(description="tmpfs mounts `dst[:opts]`.")] = None
    command: Annotated[
        list[str] | None, Field(description="Command; replaces entrypoint and cmd.")
    ] = None
    env: Annotated[list[EnvVar] | None, Field(description="Environment, `NAME=value` entries.")] = (
        None
    )
    cwd: Annotated[AbsolutePath | None, Field(description="Working directory (default /).")] = None
    net: Annotated[
        NetNamespace | None,
        Field(description="Network namespace: host (default; `root` alike), new, none or a path."),
    ] = None
    pid: Annotated[
        PidNamespace | None,
        Field(description="PID namespace: new (default), host (`root` alike) or a path."),
    ] = None
    ipc: Annotated[
        IpcNamespace | None,
        Field(description="IPC namespace: host (default; `root` alike), new or a path."),
    ] = None
    uts: Annotated[
        UtsNamespace | None,
        Field(description="UTS namespace: host (default; `root` alike), new or a path."),
    ] = None
    userns: Annotated[
        UserNamespace | None,
        Field(description="User namespace: host (default; `root` alike), new or a path."),
    ] = None
    readonly: Annotated[
        bool | None, Field(description="Read-only root filesystem, /dev and /sys.")
    ] = None
    masked_paths: Annotated[
        list[str] | None,
        Field(alias="maskedPaths", description="Paths hidden from the container."),
    ] = None
    readonly_paths: Annotated[
        list[str] | None,
        Field(alias="readonlyPaths", description="Paths made read-only in the container."),
    ] = None
    uid: Annotated[UserId | None, Field(description="User id, or the name of a container.")] = None
    gid: Annotated[UserId | None, Field(description="Group id, or the name of a container.")] = None
    additional_gids: Annotated[
        list[UserId] | None,
        Field(alias="additionalGids", description="More group ids, or names of containers."),
    ] = None
    no_new_privileges: Annotated[
        bool | None,
        Field(alias="noNewPrivileges", description="Forbid gaining privileges (setuid)."),
    ] = None
    hostname: Annotated[str | None, Field(description="Hostname in the container.")] = None
    oom_score_adj: Annotated[
        OomScoreAdj | None,
        Field(alias="oomScoreAdj", description="OOM killer score adjustment (-1000 to 1000)."),
    ] = None
    rootfs_propagation: Annotated[
        Propagation | None,
        Field(alias="rootfsPropagation", description="Mount propagation of the root."),
    ] = None
    cgroups_path: Annotated[
        str | None, Field(alias="cgroupsPath", description="The container's cgroup path.")
    ] = None
    resources: Annotated[Resources | None, Field(description="cgroup limits.")] = None
    sysctl: Annotated[dict[str, str] | None, Field(description="Sysctls set in the container.")] = (
        None
    )
    rlimits: Annotated[list[Rlimit] | None, Field(description="Limits `name,soft,hard`.")] = None
    uid_mappings: Annotated[
        list[IdMapping] | None,
        Field(alias="uidMappings", description="User namespace uid mappings."),
    ] = None
    gid_mappings: Annotated[
        list[IdMapping] | None,
        Field(alias="gidMappings", description="User namespace gid mappings."),
    ] = None
    annotations: Annotated[
        dict[str, str] | None, Field(description="OCI annotations of the container.")
    ] = None
    runtime: Annotated[
        Runtime | None, Field(description="Actions of the init around the container.")
    ] = None


class Container(ImageConfig):
    """An onboot, onshutdown or service container: a name, an image and its settings."""

    name: Annotated[
        ContainerName,
        Field(description="Name of the container (unique among services), a runc container id."),
    ]
    image: Annotated[ImageRef, Field(description="Image to run.")]
    restart: Annotated[
        Literal["always", "on-failure", "never"] | None,
        Field(
            description="Services only (an osbuilder extension): restart when the service exits "
            "(always), exits non-zero (on-failure, the default) or never."
        ),
    ] = None


# --- files, volumes, trust --------------------------------------------------------


class File(Model):
    """A file, directory or symlink added to the image after everything else.

    Exactly one of contents, source, directory, symlink and metadata is set
    (checked with the other cross-field rules in `checks`).
    """

    path: Annotated[ImagePath, Field(description="Where it goes in the image.")]
    directory: Annotated[bool | None, Field(description="Make a directory.")] = None
    symlink: Annotated[str | None, Field(description="Make a symlink pointing here.")] = None
    contents: Annotated[str | None, Field(description="The file's contents.")] = None
    source: Annotated[
        str | None, Field(description="Copy this host file (relative to the cwd).")
    ] = None
    metadata: Annotated[
        Literal["yaml", "json"] | None, Field(description="Write the resolved spec in this format.")
    ] = None
    optional: Annotated[bool | None, Field(description="Skip when `source` is missing.")] = None
    mode: Annotated[
        OctalMode | None,
        Field(description="Octal mode (default 0600, dirs 0700)."),
    ] = None
    uid: Annotated[UserId | None, Field(description="Owner: a number or a container name.")] = None
    gid: Annotated[UserId | None, Field(description="Group: a number or a container name.")] = None


class Volume(Model):
    """A volume, laid out at /containers/volumes/NAME and bound into containers by name."""

    name: Annotated[VolumeName, Field(description="Name, ^[a-z0-9_-]*$, unique.")]
    image: Annotated[
        ImageRef | None,
        Field(description="Image whose contents fill the volume."),
    ] = None
    readonly: Annotated[
        bool | None,
        Field(description="Containers may only bind it with `ro`."),
    ] = None
    format: Annotated[
        Literal["oci", "filesystem"] | None,
        Field(description="`filesystem` (default): the image's files; `oci`: an OCI layout."),
    ] = None
    platforms: Annotated[
        list[Platform] | None, Field(description="Platforms for `format: oci`.")
    ] = None


class Trust(Model):
    """Images that must be signed: the signature policy (containers-policy.json) must
    require a signature for each of them, and the build verifies it (docs/trust.md)."""

    image: Annotated[
        list[ImageRef] | None,
        Field(description="Images (a repository, or one tag or digest) that must be signed."),
    ] = None
    org: Annotated[
        list[NamespacePrefix] | None,
        Field(description="Namespaces (linuxkit, ghcr.io/acme) whose images must be signed."),
    ] = None


class Spec(Model):
    """An osbuilder (LinuxKit) system spec."""

    kernel: Annotated[Kernel | None, Field(description="The kernel.")] = None
    init: Annotated[
        list[ImageRef] | None,
        Field(description="Images unpacked into / in order."),
    ] = None
    onboot: Annotated[
        list[Container] | None,
        Field(description="Containers run once at boot."),
    ] = None
    onshutdown: Annotated[
        list[Container] | None, Field(description="Containers run at shutdown.")
    ] = None
    services: Annotated[list[Container] | None, Field(description="Long-running containers.")] = (
        None
    )
    files: Annotated[list[File] | None, Field(description="Extra files, added last.")] = None
    volumes: Annotated[list[Volume] | None, Field(description="Volumes.")] = None
    trust: Annotated[Trust | None, Field(description="Images whose signatures are required.")] = (
        None
    )

    def containers(self) -> Iterator[tuple[str, int, Container]]:
        """Each container as (section, index, entry), section by section in the order they
        run (CONTAINER_SECTIONS): the one walk over them everything else takes."""
        for section in CONTAINER_SECTIONS:
            entries: list[Container] | None = getattr(self, section)
            for index, container in enumerate(entries or []):
                yield section, index, container


#: The sections that hold containers, in the order they run and are laid out: the fields
#: of Spec whose entries are Containers (onboot, onshutdown, services), declared by the
#: model alone. Code reading raw spec data (checks, templates, merging) walks these.
CONTAINER_SECTIONS: tuple[str, ...] = tuple(
    name for name, info in Spec.model_fields.items() if info.annotation == list[Container] | None
)
