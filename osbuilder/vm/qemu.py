"""QEMU command lines for built systems.

kernel+initrd outputs (PREFIX-kernel, PREFIX-initrd.img, PREFIX-cmdline) boot
with -kernel/-initrd/-append; a boot medium (an ISO, raw or qcow2 image), known
by its contents (osbuilder/media.py), boots through the firmware (SeaBIOS, or
OVMF for a GPT) from a read-only CD or virtio disk (the system lives in its
initrd and never writes it). Every VM gets virtio-rng (Python's start does
not wait for entropy), virtio-net user networking with published ports on
127.0.0.1, a QMP socket, a pid file and its serial console logged to
STATE/console.log; a guest kernel panic makes QEMU exit with a failure
(pvpanic). `--net restricted` keeps the guest off every network but the
published ports, as the tests use it. Data disks (`--disk`, vm/disks.py) are
writable virtio disks after the boot medium.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from osbuilder.errors import UserError
from osbuilder.media import MediaBoot
from osbuilder.vm.disks import DataDisk

NETWORKS = ("user", "restricted", "none")
QEMU_FORMATS = {"raw": "raw", "qcow2": "qcow2", "vhd": "vpc"}  # disk medium -> QEMU's name
# UEFI firmware (Debian's ovmf), for GPT disks: the code, and the variable store each VM
# gets a fresh copy of.
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
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
    disks: list[DataDisk] = field(default_factory=list)

    @property
    def efi_vars(self) -> Path:
        """The VM's own copy of the UEFI variable store (booting a GPT disk)."""
        return self.state / "efi-vars.fd"

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
        *(
            option
            for disk in config.disks
            for option in (
                "-drive",
                f"file={_escaped(disk.path)},format={disk.drive_format()},if=virtio",
            )
        ),
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
    firmware = []
    if boot.firmware == "efi":
        firmware = [
            "-drive",
            f"if=pflash,format=raw,readonly=on,file={_escaped(OVMF_CODE)}",
            "-drive",
            f"if=pflash,format=raw,file={_escaped(config.efi_vars)}",
        ]
    drive = f"file={_escaped(boot.path)},readonly=on"
    if boot.medium == "iso":
        return [*firmware, "-drive", f"{drive},format=raw,media=cdrom", "-boot", "order=d"]
    return [*firmware, "-drive", f"{drive},format={QEMU_FORMATS[boot.medium]},if=virtio"]


def _escaped(path: Path) -> str:
    return str(path).replace(",", ",,")  # commas separate QEMU's options: a path doubles them
