"""Early setup of PID 1: the root, the kernel filesystems, the console, devices' modules,
the hostname and loopback. Every step is guarded: a failure is reported and boot goes on.
"""

from __future__ import annotations

import _socket  # socket.py's sethostname, without its enums (see control)
import errno
import os
import resource
from collections.abc import Callable

from osbuilder.guest import milestones, network, rootmove, syscalls
from osbuilder.guest.cmdline import BootOptions
from osbuilder.guest.console import Console
from osbuilder.guest.fspath import Path
from osbuilder.guest.modload import ModuleLoader

NODEV, NOSUID, NOEXEC = syscalls.MS_NODEV, syscalls.MS_NOSUID, syscalls.MS_NOEXEC
RELATIME = syscalls.MS_RELATIME


class EarlyMount(syscalls.MountCall):
    __slots__ = ("optional",)

    def __init__(
        self,
        source: str,
        target: str,
        fstype: str,
        flags: int = 0,
        data: str = "",
        optional: bool = False,  # a kernel without it is fine: say nothing
    ) -> None:
        super().__init__(source, target, fstype, flags, data)
        self.optional = optional


EARLY_MOUNTS = (
    EarlyMount("proc", "/proc", "proc", NODEV | NOSUID | NOEXEC | RELATIME),
    EarlyMount("sysfs", "/sys", "sysfs", NODEV | NOSUID | NOEXEC),
    EarlyMount("devtmpfs", "/dev", "devtmpfs", NOSUID | NOEXEC | RELATIME, "mode=0755"),
    EarlyMount("devpts", "/dev/pts", "devpts", NOSUID | NOEXEC, "gid=5,mode=0620,ptmxmode=0666"),
    EarlyMount("shm", "/dev/shm", "tmpfs", NODEV | NOSUID | NOEXEC, "mode=1777"),
    EarlyMount("mqueue", "/dev/mqueue", "mqueue", NODEV | NOSUID | NOEXEC, optional=True),
    EarlyMount("tmpfs", "/run", "tmpfs", NODEV | NOSUID | NOEXEC | RELATIME, "mode=0755"),
    EarlyMount("tmpfs", "/tmp", "tmpfs", NODEV | NOSUID | NOEXEC | RELATIME, "mode=1777"),
    EarlyMount("cgroup2", "/sys/fs/cgroup", "cgroup2", NODEV | NOSUID | NOEXEC | RELATIME),
    EarlyMount(
        "securityfs", "/sys/kernel/security", "securityfs", NODEV | NOSUID | NOEXEC, optional=True
    ),
    EarlyMount("bpf", "/sys/fs/bpf", "bpf", NODEV | NOSUID | NOEXEC, "mode=0700", optional=True),
)
DEV_SYMLINKS = {
    "/dev/fd": "/proc/self/fd",
    "/dev/stdin": "/proc/self/fd/0",
    "/dev/stdout": "/proc/self/fd/1",
    "/dev/stderr": "/proc/self/fd/2",
}
DIRECTORIES = {"/var/log": 0o755, "/var/tmp": 0o1777, "/var/lib": 0o755, "/run/osbuilder": 0o700}
OPEN_FILES_LIMIT = 1048576


class Steps:
    """Runs named steps, each guarded; remembers which failed."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self.failed: list[str] = []

    def run(self, name: str, step: Callable[[], object]) -> None:
        try:
            step()
        except Exception as error:
            self.failed.append(name)
            detail = (
                error.strerror if isinstance(error, OSError) and error.strerror else repr(error)
            )
            self._console.error(f"{name}: {detail}")


def mounted_targets(mounts_file: str = "/proc/self/mounts") -> set[str]:
    try:
        with open(mounts_file) as file:
            return {line.split()[1] for line in file if line.strip()}
    except OSError:
        return set()


def mount_early_filesystems(console: Console) -> None:
    already = mounted_targets()  # /init or the kernel may have mounted some already
    for entry in EARLY_MOUNTS:
        if entry.target in already:
            continue
        try:
            os.makedirs(entry.target, 0o755, exist_ok=True)
            syscalls.mount(*entry.arguments)
        except OSError as error:
            if not entry.optional and error.errno != errno.EBUSY:
                console.error(f"mount {entry.fstype} on {entry.target}: {error.strerror}")


def mount_proc() -> None:
    if not os.path.exists("/proc/self"):
        os.makedirs("/proc", 0o555, exist_ok=True)
        syscalls.mount(*EARLY_MOUNTS[0].arguments)


def ensure_console_fds(console: Console) -> None:
    """Without /dev/console in the initramfs the kernel starts us with no fds 0-2."""
    try:
        os.fstat(1)
        return
    except OSError:
        pass
    fd = os.open("/dev/console", os.O_RDWR | os.O_NOCTTY)
    for target in (0, 1, 2):
        if fd != target:
            os.dup2(fd, target)
    if fd > 2:
        os.close(fd)
    console.reopen(2)


def open_cmdline_consoles(console: Console, cmdline: str) -> None:
    """Write to every console= device of the command line that exists, not only the last."""
    fds = []
    for word in cmdline.split():
        if not word.startswith("console="):
            continue
        device = "/dev/" + word.removeprefix("console=").split(",")[0]
        try:
            fds.append(os.open(device, os.O_WRONLY | os.O_NOCTTY))
        except OSError:
            continue  # e.g. ttyAMA0 on a PC: the command line names consoles of other machines
    if fds:
        console.use(fds)


def make_dev_links_and_directories() -> None:
    for link, target in DEV_SYMLINKS.items():
        if not os.path.lexists(link):
            os.symlink(target, link)
    for directory, mode in DIRECTORIES.items():
        os.makedirs(directory, exist_ok=True)
        os.chmod(directory, mode)
    if not os.path.lexists("/var/run"):
        os.symlink("/run", "/var/run")


def prepare_resolv_conf() -> None:
    """A symlinked /etc/resolv.conf (LinuxKit's /run/resolvconf/...) gets its target made."""
    if os.path.islink("/etc/resolv.conf"):
        target = os.path.join("/etc", os.readlink("/etc/resolv.conf"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            with open(target, "w"):
                pass


def raise_limits() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES_LIMIT, OPEN_FILES_LIMIT))


def set_hostname(console: Console) -> None:
    name = ""
    try:
        with open("/etc/hostname") as file:
            name = file.readline().strip()
    except OSError:
        pass
    name = name or network.default_hostname(network.first_mac())
    _socket.sethostname(name)
    console.info(f"hostname {name}")


def load_modules(options: BootOptions, console: Console) -> None:
    release = os.uname().release
    loader = ModuleLoader(
        Path("/lib/modules") / release,
        Path("/sys"),
        console,
        on_round=lambda *finished: console.info(milestones.module_round(*finished)),
    )
    report = loader.load(options.extra_modules, options.skipped_modules)
    console.info(milestones.modules_done(len(report.loaded), report.seconds))
    slowest = sorted(report.timings.items(), key=lambda item: -item[1])[:5]
    console.debug("slowest modules: " + ", ".join(f"{n} {t * 1000:.0f} ms" for n, t in slowest))
    for name, reason in report.failed.items():
        if name in options.extra_modules or name in ("overlay", "modules.dep"):
            console.error(f"module {name}: {reason}")
        else:
            console.debug(f"module {name}: {reason}")


def early_setup(
    options_reader: Callable[[], BootOptions], console: Console, banner: str
) -> BootOptions:
    """Everything before the containers; returns the boot options."""
    steps = Steps(console)
    steps.run("mounting /proc", mount_proc)
    options = BootOptions()
    try:
        options = options_reader()
    except Exception as error:
        console.error(f"kernel command line: {error!r}")
    console.debug_enabled = options.debug

    def move_root() -> None:
        if not options.no_pivot and rootmove.on_initramfs():
            rootmove.move_root_to_bind_mount()  # recursive: /proc comes along

    steps.run("leaving the initramfs root", move_root)
    steps.run("mounting kernel filesystems", lambda: mount_early_filesystems(console))
    steps.run("opening /dev/console", lambda: ensure_console_fds(console))
    steps.run("opening the consoles", lambda: open_cmdline_consoles(console, _cmdline()))
    console.info(banner)
    for problem in options.problems:
        console.error(problem)
    steps.run("disabling ctrl-alt-del", lambda: syscalls.reboot(syscalls.RB_DISABLE_CAD))
    steps.run("making / shared", make_root_shared)
    steps.run("creating directories", make_dev_links_and_directories)
    steps.run("resolv.conf", prepare_resolv_conf)
    steps.run("raising limits", raise_limits)
    steps.run("loading kernel modules", lambda: load_modules(options, console))
    steps.run("bringing up lo", lambda: network.interface_up("lo"))
    steps.run("bringing up the network links", network.links_up)
    steps.run("setting the hostname", lambda: set_hostname(console))
    return options


def _cmdline() -> str:
    with open("/proc/cmdline") as stream:
        return stream.read()


def make_root_shared() -> None:
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_SHARED, "")
