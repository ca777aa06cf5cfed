"""QEMU command lines for built systems.

kernel+initrd outputs (PREFIX-kernel, PREFIX-initrd.img, PREFIX-cmdline) boot with
-kernel/-initrd/-append (kernel+squashfs and kernel+erofs ones too, with their boot stage
as the initrd and the root's image as a read-only first virtio disk), on a PC (q35), or
for an arm64 kernel on QEMU's virt machine through UEFI (see MACHINES); a boot medium
(an ISO, raw or qcow2 image), known by its contents (osbuilder/media.py), boots through the firmware
(SeaBIOS, or OVMF for a GPT) from a read-only CD or virtio disk (the system lives in its
initrd and never writes it); `--secure-boot CERT` boots it through OVMF's Secure Boot
firmware with CERT in db (vm/secureboot.py). Every VM gets virtio-rng (Python's start does
not wait for entropy), virtio-net user networking with published ports on 127.0.0.1, a QMP socket, a
pid file and its serial console logged to STATE/console.log; a guest kernel panic makes
QEMU exit with a failure (pvpanic; for a kernel QEMU boots, panic=-1 as well).
`--net restricted` keeps the guest off every network but the published ports, as the
tests use it. Data disks
(`--disk`, vm/disks.py) are writable virtio disks after the boot medium, user data
(`--data`, vm/userdata.py) a read-only one after them.
"""

from __future__ import annotations

import re
from pathlib import Path

from msgspec import Struct, field

from osbuilder.errors import UserError
from osbuilder.formats.catalog import names
from osbuilder.formats.uefi_signing import CERT_OPTION, KEY_OPTION, signable_formats
from osbuilder.media import MediaBoot, is_image_archive, unpack_image_archive
from osbuilder.vm import tpm
from osbuilder.vm.control import refuse_running
from osbuilder.vm.disks import DataDisk
from osbuilder.vm.secureboot import OPTION as SECURE_BOOT_OPTION
from osbuilder.vm.secureboot import OVMF_SECURE_CODE

NETWORKS = ("user", "restricted", "none")
ARM64_IMAGE_MAGIC = (0x38, b"ARM\x64")  # in the header of an arm64 kernel Image
# disk medium -> QEMU's name
QEMU_FORMATS = {"raw": "raw", "qcow2": "qcow2", "vhd": "vpc", "vmdk": "vmdk"}
# UEFI firmware (Debian's ovmf), for GPT disks: the code, and the variable store each VM
# gets a fresh copy of.
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
# UEFI firmware for arm64 (Debian's qemu-efi-aarch64).
AAVMF_CODE = Path("/usr/share/AAVMF/AAVMF_CODE.fd")
AAVMF_VARS = Path("/usr/share/AAVMF/AAVMF_VARS.fd")
_PUBLISH = re.compile(r"(?P<host>\d{1,5}):(?P<guest>\d{1,5})(?:/(?P<proto>tcp|udp))?")


class Publish(Struct, frozen=True):
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


class Machine(Struct, frozen=True):
    """How QEMU emulates a PC or an arm64 server for a system of that architecture."""

    architecture: str
    emulator: str
    package: str  # the Debian package that has `emulator`
    options: tuple[str, ...]  # "{accel}" is replaced by the accelerator
    panic_device: str | None  # a device through which a guest panic ends QEMU
    # UEFI firmware (code, variables) to boot a kernel through, or None for QEMU's own
    # loader; and the Debian package that has it.
    kernel_firmware: tuple[Path, Path] | None = None
    firmware_package: str = ""
    tpm_device: str = "tpm-tis"  # QEMU's TPM device for the machine (`run --tpm`)


MACHINES = {
    "amd64": Machine(
        "amd64",
        "qemu-system-x86_64",
        "qemu-system-x86",
        ("-machine", "q35,accel={accel}"),
        "pvpanic",
    ),
    # Debian's arm64 cloud kernel has ACPI's power button but neither the device tree's
    # (GPIO keys) nor pvpanic: booted through UEFI firmware, QEMU's virt machine gives
    # it ACPI, so `osbuilder stop` powers it off cleanly; panic=-1 (with -no-reboot)
    # ends QEMU on a panic instead.
    "arm64": Machine(
        "arm64",
        "qemu-system-aarch64",
        "qemu-system-arm",
        ("-machine", "virt,accel={accel}", "-cpu", "max"),
        None,
        (AAVMF_CODE, AAVMF_VARS),
        "qemu-efi-aarch64",
        "tpm-tis-device",
    ),
}


def kernel_architecture(kernel: Path) -> str:
    """arm64 for an arm64 kernel Image, else amd64 (the x86 bzImage)."""
    offset, magic = ARM64_IMAGE_MAGIC
    with kernel.open("rb") as image:
        image.seek(offset)
        return "arm64" if image.read(len(magic)) == magic else "amd64"


# kernel+FS formats: the root in PREFIX-FS.img, mounted by the boot stage PREFIX-FS-initrd.img.
ROOT_IMAGE_FILESYSTEMS = ("squashfs", "erofs")


class KernelBoot(Struct, frozen=True):
    kernel: Path
    initrd: Path
    cmdline: str
    architecture: str = "amd64"
    root: Path | None = None  # kernel+squashfs/erofs: the root's image, a read-only first disk

    @classmethod
    def from_prefix(cls, prefix: Path) -> KernelBoot:
        """PREFIX's kernel+initrd, or its kernel+squashfs or kernel+erofs (the newest build
        when several are there: an older build's files may linger)."""
        kernel = Path(f"{prefix}-kernel")
        cmdline = Path(f"{prefix}-cmdline")
        initrd = Path(f"{prefix}-initrd.img")
        # (the initrd to boot, the root's image or None, the file whose age tells)
        found: list[tuple[Path, Path | None, Path]] = []
        if initrd.is_file():
            found.append((initrd, None, initrd))
        for filesystem in ROOT_IMAGE_FILESYSTEMS:
            root = Path(f"{prefix}-{filesystem}.img")
            stage = Path(f"{prefix}-{filesystem}-initrd.img")
            if not root.is_file():
                continue
            if not stage.is_file():
                raise UserError(
                    f"{prefix}: {root.name} has no {stage.name} beside it to mount it with; "
                    f"build again (osbuilder build -f kernel+{filesystem} FILE.yml)"
                )
            found.append((stage, root, root))
        missing = [p.name for p in (kernel,) if not p.is_file()]
        if not found:
            missing.append(initrd.name)
        if missing:
            raise UserError(
                f"{prefix}: no {' or '.join(missing)}; build it first (osbuilder build "
                "FILE.yml, format kernel+initrd, kernel+squashfs or kernel+erofs)"
            )
        boot_initrd, root_image, _ = max(found, key=lambda item: _modified(item[2]))
        text = cmdline.read_text().strip() if cmdline.is_file() else "console=ttyS0"
        return cls(kernel, boot_initrd, text, kernel_architecture(kernel), root_image)


def _modified(path: Path) -> int:
    return path.stat().st_mtime_ns


def boot_target(target: Path, state: Path | None = None) -> KernelBoot | MediaBoot:
    """What `osbuilder run TARGET` boots: an image file, or a kernel+initrd PREFIX. A
    Compute Engine image archive (gcp) has its disk unpacked into the VM's `state`
    directory, which no VM may be running in, and boots from there."""
    if target.is_file():
        if state is not None and is_image_archive(target):
            refuse_running(state)
            try:
                state.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"{state}: cannot create: {exc.strerror}") from None
            return MediaBoot.from_file(unpack_image_archive(target, state))
        return MediaBoot.from_file(target)
    return KernelBoot.from_prefix(target)


class VmConfig(Struct):
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
    user_data: bytes | None = None  # --data: given to the guest on STATE/data.iso
    secure_boot: Path | None = None  # --secure-boot: the certificate db holds
    tpm: bool = False  # --tpm: a TPM 2.0 (swtpm, vm/tpm.py)

    @property
    def efi_vars(self) -> Path:
        """The VM's own copy of the UEFI variable store (booting a GPT disk, or arm64)."""
        return self.state / "efi-vars.fd"

    @property
    def machine(self) -> Machine:
        return MACHINES[self.boot.architecture if isinstance(self.boot, KernelBoot) else "amd64"]

    def firmware(self) -> tuple[Path, Path, str] | None:
        """The UEFI code, variables and their package, when this VM boots through UEFI."""
        if isinstance(self.boot, MediaBoot):
            code = OVMF_CODE if self.secure_boot is None else OVMF_SECURE_CODE
            return (code, OVMF_VARS, "ovmf") if self.boot.firmware == "efi" else None
        firmware = self.machine.kernel_firmware
        return (*firmware, self.machine.firmware_package) if firmware else None

    def __post_init__(self) -> None:
        if self.append and isinstance(self.boot, MediaBoot):
            raise UserError(
                f"--append: {self.boot.path} boots with the cmdline of its boot loader's "
                "configuration; change the spec and rebuild, or run the kernel+initrd"
            )
        if self.secure_boot is not None and not (
            isinstance(self.boot, MediaBoot) and self.boot.firmware == "efi"
        ):
            what = self.boot.path if isinstance(self.boot, MediaBoot) else self.boot.kernel
            raise UserError(
                f"{SECURE_BOOT_OPTION}: {what} does not boot through UEFI; give an image built "
                f"as {', '.join(names(signable_formats()))} and signed (build {KEY_OPTION} "
                f"KEY {CERT_OPTION} CERT)"
            )

    def machine_options(self) -> list[str]:
        """QEMU's machine options; Secure Boot's firmware keeps its variables in flash
        only SMM may write."""
        options = [option.format(accel=self.accel) for option in self.machine.options]
        if self.secure_boot is None:
            return options
        machine = options.index("-machine") + 1
        options[machine] += ",smm=on"
        return [*options, "-global", "driver=cfi.pflash01,property=secure,value=on"]

    @property
    def data_iso(self) -> Path:
        return self.state / "data.iso"

    @property
    def console_log(self) -> Path:
        return self.state / "console.log"

    @property
    def qmp_socket(self) -> Path:
        return self.state / "qmp.sock"

    @property
    def pid_file(self) -> Path:
        return self.state / "qemu.pid"

    @property
    def agent_socket(self) -> Path:
        """The host's end of the guest agent's channel (the qemu-ga package)."""
        return self.state / "qga.sock"


AGENT_CHANNEL = "org.qemu.guest_agent.0"


def qemu_command(config: VmConfig) -> list[str]:
    machine = config.machine
    command = [
        machine.emulator,
        *config.machine_options(),
        "-m",
        config.memory,
        "-smp",
        str(config.cpus),
        *_boot_options(config),
        *(
            ("-drive", f"file={_escaped(root)},format=raw,if=virtio,readonly=on")
            if isinstance(config.boot, KernelBoot) and (root := config.boot.root) is not None
            else ()
        ),
        *(
            option
            for disk in config.disks
            for option in (
                "-drive",
                f"file={_escaped(disk.path)},format={disk.drive_format()},if=virtio",
            )
        ),
        *(
            ("-drive", f"file={_escaped(config.data_iso)},format=raw,if=virtio,readonly=on")
            if config.user_data is not None
            else ()
        ),
        *(tpm.qemu_options(config.state, machine.tpm_device) if config.tpm else ()),
        "-device",
        "virtio-rng-pci",
        *(("-device", machine.panic_device) if machine.panic_device else ()),
        # A channel for a guest agent (the qemu-ga package), named as hypervisors name it.
        "-device",
        "virtio-serial-pci",
        "-chardev",
        f"socket,id=agent,path={_escaped(config.agent_socket)},server=on,wait=off",
        "-device",
        f"virtserialport,chardev=agent,name={AGENT_CHANNEL}",
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
    firmware: list[str] = []
    if (uefi := config.firmware()) is not None:
        firmware = [
            "-drive",
            f"if=pflash,format=raw,readonly=on,file={_escaped(uefi[0])}",
            "-drive",
            f"if=pflash,format=raw,file={_escaped(config.efi_vars)}",
        ]
    if isinstance(boot, KernelBoot):
        # panic=-1 (a reboot, which -no-reboot makes QEMU's exit) also ends a panic that
        # comes before the init loads the pvpanic driver: an initrd too big for the memory.
        cmdline = " ".join(p for p in (boot.cmdline, "panic=-1", config.append) if p)
        kernel = ["-kernel", str(boot.kernel), "-initrd", str(boot.initrd), "-append", cmdline]
        return [*firmware, *kernel]
    drive = f"file={_escaped(boot.path)},readonly=on"
    if boot.medium == "iso":
        return [*firmware, "-drive", f"{drive},format=raw,media=cdrom", "-boot", "order=d"]
    return [*firmware, "-drive", f"{drive},format={QEMU_FORMATS[boot.medium]},if=virtio"]


def _escaped(path: Path) -> str:
    return str(path).replace(",", ",,")  # commas separate QEMU's options: a path doubles them
