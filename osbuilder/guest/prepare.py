"""What the init does around the OCI runtime for one bundle, from its runtime.json.

Before `create`: the mounts (the container's root: a tmpfs on tmp/ and an overlay of
lower/ onto rootfs/, or a bind of rootfs/; then the spec's own), the directories, the
cgroups. After `create`, with the container's pid: interfaces moved or created into its
network namespace, and its namespaces bound to paths (bindNS) for later containers.

Paths in runtime.json that are not absolute are relative to the bundle directory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence

from osbuilder.guest import syscalls
from osbuilder.guest.bundle import Bundle, InterfaceSpec, MountSpec
from osbuilder.guest.fspath import Path
from osbuilder.guest.mountopts import PROPAGATION_FLAGS, parse_mount_options
from osbuilder.guest.spawn import CommandResult

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at boot

if TYPE_CHECKING:
    from osbuilder.guest.protocols import Mounter

BUSYBOX = "/bin/busybox"
_OVERLAY_DIRECTORIES = ("upperdir", "workdir")
_RECURSIVE_PROPAGATION = ("rshared", "rprivate", "rslave")


class PrepareError(Exception):
    """A runtime.json step failed; the message says which and why."""


class MountStep(syscalls.MountCall):
    """One mount(2) call (skipped when only the propagation changes), then, when
    `propagation` is set, a second call that changes it: the kernel ignores propagation
    flags given together with a new mount, a bind or a remount."""

    __slots__ = ("directories", "propagation")

    def __init__(
        self,
        source: str | None,
        target: str,
        fstype: str | None,
        flags: int,
        data: str,
        propagation: int,
        directories: tuple[str, ...],  # made just before the mount
    ) -> None:
        super().__init__(source, target, fstype, flags, data)
        self.propagation = propagation
        self.directories = directories

    @property
    def mounts_something(self) -> bool:
        return bool(self.fstype or self.source or self.data or self.flags & ~syscalls.MS_REMOUNT)


def _resolve(bundle_dir: Path, path: str) -> str:
    return path if path.startswith("/") else str(bundle_dir / path)


def _resolve_data(bundle_dir: Path, data: str) -> tuple[str, list[str]]:
    """Make overlay's directory options absolute; return them and the dirs to create."""
    items: list[str] = []
    directories: list[str] = []
    for item in data.split(",") if data else []:
        key, equals, value = item.partition("=")
        if equals and key == "lowerdir":
            value = ":".join(_resolve(bundle_dir, part) for part in value.split(":"))
        elif equals and key in _OVERLAY_DIRECTORIES:
            value = _resolve(bundle_dir, value)
            directories.append(value)
        items.append(f"{key}{equals}{value}")
    return ",".join(items), directories


def plan_mount(bundle_dir: Path, spec: MountSpec) -> MountStep:
    flags, data = parse_mount_options(spec.options)
    propagation = flags & PROPAGATION_FLAGS
    flags &= ~PROPAGATION_FLAGS
    if propagation and any(option in _RECURSIVE_PROPAGATION for option in spec.options):
        propagation |= syscalls.MS_REC
        if "rbind" not in spec.options:
            flags &= ~syscalls.MS_REC
    target = _resolve(bundle_dir, spec.destination)
    source: str | None = spec.source or None
    if source is not None and flags & syscalls.MS_BIND:
        source = _resolve(bundle_dir, source)
    data, overlay_directories = _resolve_data(bundle_dir, data)
    return MountStep(
        source=source,
        target=target,
        fstype=spec.type or None,
        flags=flags,
        data=data,
        propagation=propagation,
        directories=(target, *overlay_directories),
    )


class SyscallMounter:
    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str
    ) -> None:
        syscalls.mount(source, target, fstype, flags, data)

    def umount(self, target: str, flags: int) -> None:
        syscalls.umount(target, flags)


RunCommand = Callable[[Sequence[str]], CommandResult]


class BundlePreparer:
    """Does and undoes runtime.json's steps; a bundle's mounts are made once and kept
    across restarts of a service (its writable layer survives a restart, as in Docker)."""

    def __init__(
        self,
        mounter: Mounter,
        run_command: RunCommand,
        cgroup_root: Path = Path("/sys/fs/cgroup"),
        proc: Path = Path("/proc"),
    ) -> None:
        self._mounter = mounter
        self._run = run_command
        self._cgroup_root = cgroup_root
        self._proc = proc
        self._mounted: dict[Path, list[str]] = {}

    def prepare(self, bundle: Bundle) -> None:
        if bundle.path not in self._mounted:
            done: list[str] = []
            try:
                for spec in bundle.extras.mounts:
                    self._apply(plan_mount(bundle.path, spec), done)
            except PrepareError:
                self._unmount(done)
                raise
            self._mounted[bundle.path] = done
        for directory in bundle.extras.mkdir:
            path = _resolve(bundle.path, directory)
            try:
                os.makedirs(path, 0o755, exist_ok=True)
            except OSError as error:
                raise PrepareError(f"mkdir {path}: {error.strerror}") from None
        for cgroup in bundle.extras.cgroups:
            try:
                (self._cgroup_root / cgroup.lstrip("/")).mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise PrepareError(f"cgroup {cgroup}: {error.strerror}") from None

    def _apply(self, step: MountStep, done: list[str]) -> None:
        for directory in step.directories:
            try:
                os.makedirs(directory, 0o755, exist_ok=True)
            except OSError as error:
                raise PrepareError(f"mkdir {directory}: {error.strerror}") from None
        try:
            if step.mounts_something:
                self._mounter.mount(*step.arguments)
                if not step.flags & syscalls.MS_REMOUNT:
                    done.append(step.target)
            if step.propagation:
                self._mounter.mount(None, step.target, None, step.propagation, "")
        except OSError as error:
            what = step.fstype or step.source or "remount"
            raise PrepareError(f"mount {what} on {step.target}: {error.strerror}") from None

    def has_after_create(self, bundle: Bundle) -> bool:
        """Whether after_create has work: then the runtime must create and start apart."""
        return bool(bundle.extras.interfaces or bundle.extras.bind_ns)

    def after_create(self, bundle: Bundle, pid: int) -> None:
        for interface in bundle.extras.interfaces:
            self._interface(interface, pid)
        for namespace, path in bundle.extras.bind_ns:
            self._bind_namespace(namespace, path, pid)

    def _interface(self, interface: InterfaceSpec, pid: int) -> None:
        # Created in the root namespace, then moved: the same for every link type, and what
        # wireguard needs (LinuxKit creates non-veth links in the container's namespace).
        kind = interface.add or ("veth" if interface.peer else "")
        if kind == "veth" and not interface.peer:
            raise PrepareError(f"interface {interface.name}: a veth needs a peer")
        if kind:
            command = [BUSYBOX, "ip", "link", "add", interface.name, "type", kind]
            if kind == "veth":
                command += ["peer", "name", interface.peer]
            self._ip(command, interface)
        self._ip([BUSYBOX, "ip", "link", "set", interface.name, "netns", str(pid)], interface)

    def _ip(self, command: Sequence[str], interface: InterfaceSpec) -> None:
        result = self._run(command)
        if not result.ok:
            reason = (result.stderr or result.stdout).strip() or f"exit {result.exit_code}"
            raise PrepareError(f"interface {interface.name}: {' '.join(command[1:])}: {reason}")

    def _bind_namespace(self, namespace: str, path: str, pid: int) -> None:
        try:
            os.makedirs(os.path.dirname(path) or "/", 0o755, exist_ok=True)
            with open(path, "a"):
                pass
            self._mounter.mount(
                str(self._proc / str(pid) / "ns" / namespace), path, None, syscalls.MS_BIND, ""
            )
        except OSError as error:
            raise PrepareError(f"bindNS {namespace} at {path}: {error.strerror}") from None

    def cleanup(self, bundle: Bundle) -> None:
        """Undo the mounts (best effort: a busy mount is detached lazily)."""
        self._unmount(self._mounted.pop(bundle.path, []))

    def _unmount(self, targets: list[str]) -> None:
        for target in reversed(targets):
            with contextlib.suppress(OSError):
                self._mounter.umount(target, syscalls.MNT_DETACH)
