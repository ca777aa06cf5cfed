"""QEMU command lines for built systems.

kernel+initrd outputs (PREFIX-kernel, PREFIX-initrd.img, PREFIX-cmdline) boot
with -kernel/-initrd/-append; a boot medium (iso-bios, raw-bios, qcow2-bios),
known by its contents, boots through the firmware from a read-only CD or
virtio disk (the system lives in its initrd and never writes it). Every VM
gets virtio-rng (Python's start does not wait for entropy), virtio-net user
networking with published ports on 127.0.0.1, a QMP socket, a pid file and
its serial console logged to STATE/console.log; a guest kernel panic makes
QEMU exit with a failure (pvpanic). `--net restricted` keeps the guest off every network but the
published ports, as the tests use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from osbuilder.errors import UserError

NETWORKS = ("user", "restricted", "none")
_PUBLISH = re.compile(r"(?P<host>\d{1,5}):(?P<guest>\d{1,5})(?:/(?P<proto>tcp|udp))?")


@dataclass(frozen=True)
class Publish:
    host: int
    guest: int
    protocol: str = "tcp"

    def hostfwd(self) -> str:
        return f"hostfwd={self.protocol}:127.0.0.1:{self.host}-:{self.guest}"


def parse_publish(text: str) -> Publish:
    match = _PUBLISH.fullmatch(text)
    if match is None:
        raise UserError(f"--publish {text!r}: use HOST:GUEST or HOST:GUEST/udp, e.g. 6379:6379")
    host, guest = int(match["host"]), int(match["guest"])
    if not (0 < host < 65536 and 0 < guest < 65536):
        raise UserError(f"--publish {text!r}: ports are 1 to 65535")
    return Publish(host, guest, match["proto"] or "tcp")


@dataclass(frozen=True)
class KernelBoot:
    kernel: Path
    initrd: Path
    cmdline: str

    @classmethod
    def from_prefix(cls, prefix: Path) -> KernelBoot:
        kernel = Path(f"{prefix}-kernel")
        initrd = Path(f"{prefix}-initrd.img")
        cmdline = Path(f"{prefix}-cmdline")
        missing = [p.name for p in (kernel, initrd) if not p.is_file()]
        if missing:
            raise UserError(
                f"{prefix}: no {' or '.join(missing)}; build it first "
                "(osbuilder build FILE.yml, format kernel+initrd)"
            )
        text = cmdline.read_text().strip() if cmdline.is_file() else "console=ttyS0"
        return cls(kernel, initrd, text)


# The medium each boots from: a CD for ISO 9660, else a virtio disk of that format.
MEDIA = ("iso", "raw", "qcow2")
_ISO_MAGIC = (0x8001, b"CD001")  # the primary volume descriptor's identifier
_QCOW2_MAGIC = (0, b"QFI\xfb")
_MBR_MAGIC = (0x1FE, b"\x55\xaa")


@dataclass(frozen=True)
class MediaBoot:
    path: Path
    medium: str  # one of MEDIA

    @classmethod
    def from_file(cls, path: Path) -> MediaBoot:
        """The boot medium `path` is (a hybrid ISO is an ISO), or a clear error."""
        try:
            with path.open("rb") as file:
                head = file.read(_ISO_MAGIC[0] + len(_ISO_MAGIC[1]))
        except OSError as exc:
            raise UserError(f"{path}: cannot read: {exc.strerror}") from None
        for medium, (offset, magic) in (
            ("iso", _ISO_MAGIC),
            ("qcow2", _QCOW2_MAGIC),
            ("raw", _MBR_MAGIC),
        ):
            if head[offset : offset + len(magic)] == magic:
                return cls(path, medium)
        raise UserError(
            f"{path}: not a bootable image (ISO, MBR disk or qcow2); give the PREFIX of a "
            "kernel+initrd build (e.g. output/redis) or its .iso, -bios.img or .qcow2"
        )


def boot_target(target: Path) -> KernelBoot | MediaBoot:
    """What `osbuilder run TARGET` boots: an image file, or a kernel+initrd PREFIX."""
    if target.is_file():
        return MediaBoot.from_file(target)
    return KernelBoot.from_prefix(target)


@dataclass
class VmConfig:
    boot: KernelBoot | MediaBoot
    state: Path
    accel: str = "tcg"
    memory: str = "1024"
    cpus: int = 1
    network: str = "user"
    publish: list[Publish] = field(default_factory=list)
    append: str = ""  # extra kernel command line words
    detach: bool = False

    def __post_init__(self) -> None:
        if self.append and isinstance(self.boot, MediaBoot):
            raise UserError(
                f"--append: {self.boot.path} boots with the cmdline of its boot loader's "
                "configuration; change the spec and rebuild, or run the kernel+initrd"
            )

    @property
    def console_log(self) -> Path:
        return self.state / "console.log"

    @property
    def qmp_socket(self) -> Path:
        return self.state / "qmp.sock"

    @property
    def pid_file(self) -> Path:
        return self.state / "qemu.pid"


def qemu_command(config: VmConfig) -> list[str]:
    command = [
        "qemu-system-x86_64",
        "-machine",
        f"q35,accel={config.accel}",
        "-m",
        config.memory,
        "-smp",
        str(config.cpus),
        *_boot_options(config),
        "-device",
        "virtio-rng-pci",
        "-device",
        "pvpanic",
        "-action",
        "panic=exit-failure",
        "-no-reboot",
        "-display",
        "none",
        "-qmp",
        f"unix:{config.qmp_socket},server=on,wait=off",
        "-pidfile",
        str(config.pid_file),
    ]
    if config.network == "none":
        command += ["-nic", "none"]
    else:
        options = ["user", "model=virtio-net-pci"]
        if config.network == "restricted":
            options.append("restrict=on")
        options += [p.hostfwd() for p in config.publish]
        command += ["-nic", ",".join(options)]
    # The serial console: the terminal in the foreground, nothing when detached; logged
    # to console.log either way.
    backend = "null" if config.detach else "stdio,signal=off"
    command += [
        "-chardev",
        f"{backend},id=console,logfile={config.console_log}",
        "-serial",
        "chardev:console",
    ]
    if config.detach:
        command.append("-daemonize")
    return command


def _boot_options(config: VmConfig) -> list[str]:
    boot = config.boot
    if isinstance(boot, KernelBoot):
        cmdline = " ".join(p for p in (boot.cmdline, config.append) if p)
        return ["-kernel", str(boot.kernel), "-initrd", str(boot.initrd), "-append", cmdline]
    # Commas are QEMU's option separator: a path doubles them.
    drive = f"file={str(boot.path).replace(',', ',,')},readonly=on"
    if boot.medium == "iso":
        return ["-drive", f"{drive},format=raw,media=cdrom", "-boot", "order=d"]
    return ["-drive", f"{drive},format={boot.medium},if=virtio"]
