"""The spec: pydantic models of LinuxKit's YAML schema.

These models are the single source of truth: they validate specs, give the
JSON Schema (`osbuilder schema`) and generate docs/spec.md. Field names and
types are LinuxKit's (src/cmd/linuxkit/moby/schema.go), so LinuxKit specs
load unchanged; unlike LinuxKit, an unknown key is an error.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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


class SpecModel(BaseModel):
    """Strict: unknown keys are errors and YAML types are never coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @classmethod
    def field_keys(cls) -> list[str]:
        """The YAML keys this section accepts."""
        return [info.alias or name for name, info in cls.model_fields.items()]


# --- kernel -----------------------------------------------------------------


class Kernel(SpecModel):
    """The kernel image and its command line."""

    image: ImageRef | None = Field(None, description="Image holding the kernel.")
    cmdline: str | None = Field(None, description="Kernel command line.")
    binary: str | None = Field(
        None, description="File in the image that is the kernel (default `kernel`)."
    )
    tar: str | None = Field(
        None,
        description="Tarball in the image unpacked into / (default `kernel.tar`; `none` skips).",
    )
    ucode: str | None = Field(
        None, description="CPU microcode cpio in the image, prepended to the initrd."
    )


# --- container entries --------------------------------------------------------


class IdMapping(SpecModel):
    """A user namespace id mapping."""

    host_id: int = Field(alias="hostID", ge=0, description="First id on the host.")
    container_id: int = Field(alias="containerID", ge=0, description="First id in the container.")
    size: int = Field(ge=1, description="How many ids are mapped.")


class Mount(SpecModel):
    """A mount, as in the OCI runtime spec; type and destination are inferred when obvious."""

    destination: str | None = Field(None, description="Mount point in the container.")
    type: str | None = Field(None, description="Filesystem type (bind, tmpfs, proc ...).")
    source: str | None = Field(None, description="Source; a bind source without '/' is a volume.")
    options: list[str] | None = Field(None, description="Mount options.")
    uidmappings: list[IdMapping] | None = Field(None, description="Idmapped mount uid mappings.")
    gidmappings: list[IdMapping] | None = Field(None, description="Idmapped mount gid mappings.")


class Device(SpecModel):
    """A device node made in the container, allowed in its device cgroup."""

    path: str = Field(description="Device path in the container, or `all` for a cgroup rule only.")
    type: DeviceType = Field(description="a (all), b (block), c (char), u, p (fifo).")
    major: int | None = Field(None, description="Major number.")
    minor: int | None = Field(None, description="Minor number.")
    mode: OctalMode | None = Field(None, description="File mode as an octal string.")


class DeviceCgroup(SpecModel):
    """A device cgroup rule."""

    allow: bool | None = None
    type: str | None = None
    major: int | None = None
    minor: int | None = None
    access: str | None = Field(None, description="Some of r, w, m.")


class MemoryResources(SpecModel):
    limit: int | None = None
    reservation: int | None = None
    swap: int | None = None
    kernel: int | None = None
    kernel_tcp: int | None = Field(None, alias="kernelTCP")
    swappiness: int | None = None
    disable_oom_killer: bool | None = Field(None, alias="disableOOMKiller")


class CpuResources(SpecModel):
    shares: int | None = None
    quota: int | None = None
    period: int | None = None
    realtime_runtime: int | None = Field(None, alias="realtimeRuntime")
    realtime_period: int | None = Field(None, alias="realtimePeriod")
    cpus: str | None = None
    mems: str | None = None


class PidsResources(SpecModel):
    limit: int | None = None


class WeightDevice(SpecModel):
    major: int | None = None
    minor: int | None = None
    weight: int | None = None
    leaf_weight: int | None = Field(None, alias="leafWeight")


class ThrottleDevice(SpecModel):
    major: int | None = None
    minor: int | None = None
    rate: int | None = None


class BlockIoResources(SpecModel):
    weight: int | None = None
    leaf_weight: int | None = Field(None, alias="leafWeight")
    weight_device: list[WeightDevice] | None = Field(None, alias="weightDevice")
    throttle_read_bps_device: list[ThrottleDevice] | None = Field(
        None, alias="throttleReadBpsDevice"
    )
    throttle_write_bps_device: list[ThrottleDevice] | None = Field(
        None, alias="throttleWriteBpsDevice"
    )
    throttle_read_iops_device: list[ThrottleDevice] | None = Field(
        None, alias="throttleReadIOPSDevice"
    )
    throttle_write_iops_device: list[ThrottleDevice] | None = Field(
        None, alias="throttleWriteIOPSDevice"
    )


class HugepageLimit(SpecModel):
    page_size: int | None = Field(None, alias="pageSize")
    limit: int | None = None


class InterfacePriority(SpecModel):
    name: str | None = None
    priority: int | None = None


class NetworkResources(SpecModel):
    class_id: int | None = Field(None, alias="classID")
    priorities: list[InterfacePriority] | None = None


class Resources(SpecModel):
    """cgroup limits, as the OCI runtime spec's linux.resources."""

    devices: list[DeviceCgroup] | None = None
    memory: MemoryResources | None = None
    cpu: CpuResources | None = None
    pids: PidsResources | None = None
    blockio: BlockIoResources | None = None
    hugepage_limits: list[HugepageLimit] | None = Field(None, alias="hugepageLimits")
    network: NetworkResources | None = None


class Interface(SpecModel):
    """A network interface the init creates or moves into the container's namespace."""

    name: str | None = Field(None, description="Interface name inside the container.")
    add: str | None = Field(None, description="Kind of interface to create (e.g. veth).")
    peer: str | None = Field(None, description="Name of the veth peer.")
    create_in_root: bool | None = Field(
        None, alias="createInRoot", description="Create in the root namespace, then move it."
    )


class BindNamespaces(SpecModel):
    """Paths where the init bind-mounts the container's namespaces once it runs."""

    cgroup: str | None = None
    ipc: str | None = None
    mnt: str | None = None
    net: str | None = None
    pid: str | None = None
    user: str | None = None
    uts: str | None = None


class Runtime(SpecModel):
    """Actions the init performs around a container; not part of the OCI spec (runtime.json)."""

    cgroups: list[str] | None = Field(None, description="cgroups to create.")
    mounts: list[Mount] | None = Field(None, description="Mounts made before the container starts.")
    mkdir: list[str] | None = Field(None, description="Directories to create first.")
    interfaces: list[Interface] | None = Field(None, description="Network interfaces to set up.")
    bind_ns: BindNamespaces | None = Field(None, alias="bindNS")
    namespace: str | None = Field(None, description="containerd namespace (services).")


class ImageConfig(SpecModel):
    """Runtime settings of a container.

    The same settings are accepted in an image's `org.mobyproject.config`
    label; a value in the spec replaces the label's, which replaces the image
    config's (command, env, cwd).
    """

    capabilities: CapabilityList | None = Field(
        None, description="Capabilities (CAP_*, or a lone `all`/`none`); replaces the label's."
    )
    capabilities_add: CapabilityList | None = Field(
        None, alias="capabilities.add", description="Capabilities added to the label's."
    )
    ambient: CapabilityList | None = Field(None, description="Ambient capabilities.")
    mounts: list[Mount] | None = Field(None, description="Extra mounts.")
    binds: list[Bind] | None = Field(
        None, description="Bind mounts `src:dst[:opts]`; replaces the label's binds."
    )
    binds_add: list[Bind] | None = Field(
        None, alias="binds.add", description="Bind mounts added to the label's."
    )
    devices: list[Device] | None = Field(None, description="Device nodes and cgroup rules.")
    tmpfs: list[Tmpfs] | None = Field(None, description="tmpfs mounts `dst[:opts]`.")
    command: list[str] | None = Field(None, description="Command; replaces entrypoint and cmd.")
    env: list[EnvVar] | None = Field(None, description="Environment, `NAME=value` entries.")
    cwd: AbsolutePath | None = Field(None, description="Working directory (default /).")
    net: NetNamespace | None = Field(
        None, description="Network namespace: host (default), new, none or a path."
    )
    pid: PidNamespace | None = Field(
        None, description="PID namespace: new (default), host or a path."
    )
    ipc: IpcNamespace | None = Field(
        None, description="IPC namespace: host (default), new or a path."
    )
    uts: UtsNamespace | None = Field(
        None, description="UTS namespace: host (default), new or a path."
    )
    userns: UserNamespace | None = Field(
        None, description="User namespace: host (default), new or a path."
    )
    readonly: bool | None = Field(None, description="Read-only root filesystem, /dev and /sys.")
    masked_paths: list[str] | None = Field(None, alias="maskedPaths")
    readonly_paths: list[str] | None = Field(None, alias="readonlyPaths")
    uid: UserId | None = Field(None, description="User id, or the name of a container.")
    gid: UserId | None = Field(None, description="Group id, or the name of a container.")
    additional_gids: list[UserId] | None = Field(None, alias="additionalGids")
    no_new_privileges: bool | None = Field(None, alias="noNewPrivileges")
    hostname: str | None = None
    oom_score_adj: OomScoreAdj | None = Field(None, alias="oomScoreAdj")
    rootfs_propagation: Propagation | None = Field(None, alias="rootfsPropagation")
    cgroups_path: str | None = Field(None, alias="cgroupsPath")
    resources: Resources | None = None
    sysctl: dict[str, str] | None = Field(None, description="Sysctls set in the container.")
    rlimits: list[Rlimit] | None = Field(None, description="Limits `name,soft,hard`.")
    uid_mappings: list[IdMapping] | None = Field(None, alias="uidMappings")
    gid_mappings: list[IdMapping] | None = Field(None, alias="gidMappings")
    annotations: dict[str, str] | None = None
    runtime: Runtime | None = Field(None, description="Actions of the init around the container.")


class Container(ImageConfig):
    """An onboot, onshutdown or service container: a name, an image and its settings."""

    name: ContainerName = Field(description="Name of the container (unique among services).")
    image: ImageRef = Field(description="Image to run.")
    restart: Literal["always", "on-failure", "never"] | None = Field(
        None,
        description="Services only (an osbuilder extension): restart when the service exits "
        "(always), exits non-zero (on-failure, the default) or never.",
    )


# --- files, volumes, trust --------------------------------------------------------


class File(SpecModel):
    """A file, directory or symlink added to the image after everything else.

    Exactly one of contents, source, directory, symlink and metadata is set
    (checked with the other cross-field rules in `checks`).
    """

    path: ImagePath = Field(description="Where it goes in the image.")
    directory: bool | None = Field(None, description="Make a directory.")
    symlink: str | None = Field(None, description="Make a symlink pointing here.")
    contents: str | None = Field(None, description="The file's contents.")
    source: str | None = Field(None, description="Copy this host file (relative to the cwd).")
    metadata: Literal["yaml", "json"] | None = Field(
        None, description="Write the resolved spec in this format."
    )
    optional: bool | None = Field(None, description="Skip when `source` is missing.")
    mode: OctalMode | None = Field(None, description="Octal mode (default 0600, dirs 0700).")
    uid: UserId | None = Field(None, description="Owner: a number or a container name.")
    gid: UserId | None = Field(None, description="Group: a number or a container name.")


class Volume(SpecModel):
    """A volume, laid out at /containers/volumes/NAME and bound into containers by name."""

    name: VolumeName = Field(description="Name, ^[a-z0-9_-]*$, unique.")
    image: ImageRef | None = Field(None, description="Image whose contents fill the volume.")
    readonly: bool | None = Field(None, description="Containers may only bind it with `ro`.")
    format: Literal["oci", "filesystem"] | None = Field(
        None, description="`filesystem` (default): the image's files; `oci`: an OCI layout."
    )
    platforms: list[Platform] | None = Field(None, description="Platforms for `format: oci`.")


class Trust(SpecModel):
    """Docker Content Trust (Notary v1). Accepted for old specs and ignored, as in LinuxKit."""

    image: list[str] | None = None
    org: list[str] | None = None


class Spec(SpecModel):
    """An osbuilder (LinuxKit) system spec."""

    kernel: Kernel | None = Field(None, description="The kernel.")
    init: list[ImageRef] | None = Field(None, description="Images unpacked into / in order.")
    onboot: list[Container] | None = Field(None, description="Containers run once at boot.")
    onshutdown: list[Container] | None = Field(None, description="Containers run at shutdown.")
    services: list[Container] | None = Field(None, description="Long-running containers.")
    files: list[File] | None = Field(None, description="Extra files, added last.")
    volumes: list[Volume] | None = Field(None, description="Volumes.")
    trust: Trust | None = Field(None, description="Ignored (Notary v1 is gone).")
