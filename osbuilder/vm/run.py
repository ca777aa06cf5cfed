"""Running a VM: in the foreground on the terminal, or detached in the background.

The exit status tells how the guest ended: 0 for a clean poweroff; non-zero
for a kernel panic (QEMU exits with a failure through pvpanic, and the
console log is checked too), a QEMU failure, or a timeout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from osbuilder.errors import ExternalError, UserError
from osbuilder.runner import run
from osbuilder.vm import tpm
from osbuilder.vm.consolewatch import ConsoleWatch
from osbuilder.vm.control import (
    alive,
    read_pid,
    refuse_running,
    register,
    stop,
    user_network_state,
)
from osbuilder.vm.disks import prepare_disks
from osbuilder.vm.qemu import KernelBoot, VmConfig, qemu_command
from osbuilder.vm.secureboot import OPTION as SECURE_BOOT_OPTION
from osbuilder.vm.secureboot import STARTED, enrol, refusal
from osbuilder.vm.timeline import Stage, Timeline, as_table
from osbuilder.vm.userdata import write_data_iso

log = logging.getLogger(__name__)

PANIC = b"Kernel panic - not syncing"
# The kernel could not unpack the initrd into memory: its tmpfs root was full (a command
# line with rootfstype=tmpfs), or memory ran out (the OOM report's trace names the unpacker).
INITRD_DID_NOT_FIT = (b"Initramfs unpacking failed: write error", b"unpack_to_rootfs+")
# A --verity root's block read after boot was not the one built (its mapping panics then).
VERITY_CORRUPTED = b"dm-verity device corrupted"
TIMEOUT_EXIT = 124


def prepare_state(config: VmConfig) -> None:
    refuse_running(config.state)
    config.state.mkdir(parents=True, exist_ok=True)
    for stale in (config.console_log, config.qmp_socket, config.agent_socket, config.pid_file):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    if (uefi := config.firmware()) is not None:
        code, variables, package = uefi
        for firmware in (code, variables):
            if not firmware.is_file():
                raise UserError(f"{firmware}: not found; install it (apt-get install {package})")
        if config.secure_boot is not None:
            enrol(variables, config.secure_boot, config.efi_vars)
        else:
            shutil.copyfile(variables, config.efi_vars)  # every boot starts from the defaults
    prepare_disks(config.disks)
    if config.user_data is not None:
        write_data_iso(config.user_data, config.data_iso)


def require_emulator(config: VmConfig) -> None:
    machine = config.machine
    if shutil.which(machine.emulator) is None:
        raise ExternalError(
            f"{machine.emulator}: command not found (apt-get install {machine.package})"
        )


def run_foreground(
    config: VmConfig, cache: Path, timeout: float | None, timeline: bool = False
) -> int:
    """Boot on the terminal until the VM ends; with `timeline`, the boot's timeline goes
    to stderr once the services have started (or when the VM ends before)."""
    require_emulator(config)
    prepare_state(config)
    with _tpm_while_running(config):
        command = qemu_command(config)
        log.debug("run: %s", " ".join(command))
        started = time.monotonic()
        process = subprocess.Popen(command)
        register(cache, config.state, _record(config, process.pid))
        if not timeline:
            return _wait_foreground(config, process, timeout)
        with ConsoleWatch(config.console_log, started) as watch:
            reporter = _TimelineReporter(watch, process)
            try:
                return _wait_foreground(config, process, timeout)
            finally:
                reporter.finish()


@contextlib.contextmanager
def _tpm_while_running(config: VmConfig, detached: bool = False) -> Iterator[None]:
    """With --tpm, swtpm from before QEMU starts; ended after QEMU (in the foreground),
    or if QEMU failed to start (detached: it ends with QEMU's connection)."""
    if not config.tpm:
        yield
        return
    tpm.start(config.state)
    try:
        yield
    except BaseException:
        tpm.stop(config.state)
        raise
    if not detached:
        tpm.stop(config.state)


class _TimelineReporter:
    """Prints the timeline to stderr once the boot is complete, or when the VM has ended."""

    def __init__(self, watch: ConsoleWatch, process: subprocess.Popen[bytes]) -> None:
        self._watch = watch
        self._process = process
        self._printed = False
        self._printing = threading.Lock()
        self._thread = threading.Thread(target=self._report, name="timeline", daemon=True)
        self._thread.start()

    def _report(self) -> None:
        while self._process.poll() is None and not self._printed:
            if self._watch.boot_complete():
                self._print()
                return
            time.sleep(POLL_READY)

    def _print(self) -> None:
        with self._printing:
            if self._printed:
                return
            self._printed = True
            print(f"\n{as_table(self._watch.timeline())}", file=sys.stderr, flush=True)

    def finish(self) -> None:
        self._thread.join(1.0)
        self._watch.poll()
        if self._watch.timeline().stages:
            self._print()


def _wait_foreground(
    config: VmConfig, process: subprocess.Popen[bytes], timeout: float | None
) -> int:
    try:
        code = wait_unrefused(config, process, timeout)
    except FirmwareRefused:
        process.terminate()
        process.wait()
        raise
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        process.kill()
        process.wait()
        print(f"\nosbuilder: the VM did not power off within {timeout:g} s; stopped it", flush=True)
        return TIMEOUT_EXIT
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see cli.py): the VM goes with us
        process.terminate()
        process.wait()
        raise
    if _panicked(config):
        if (hint := panic_hint(config)) is not None:
            print(f"osbuilder: {hint}", file=sys.stderr, flush=True)
        return code or 1
    return code


class FirmwareRefused(UserError):
    """Secure Boot's firmware would not start the medium's EFI image."""


POLL_FIRMWARE = 0.2  # seconds between two looks at the console for a firmware's refusal
FIRMWARE_CONSOLE = 1 << 16  # the console's start, where the firmware writes (the kernel after)


def firmware_refusal(config: VmConfig) -> FirmwareRefused | None:
    """Under Secure Boot, the error for a boot image the firmware refused, if it did."""
    if config.secure_boot is None:
        return None
    try:
        with config.console_log.open("rb") as console:
            refused = refusal(console.read(FIRMWARE_CONSOLE))
    except OSError:
        return None
    if refused is None:
        return None
    return FirmwareRefused(
        f"{SECURE_BOOT_OPTION}: the firmware refused to start {refused} (Access Denied): the "
        f"image is not signed by the key of {config.secure_boot}"
    )


def wait_unrefused(
    config: VmConfig, process: subprocess.Popen[bytes], timeout: float | None
) -> int:
    """process.wait(timeout), raising FirmwareRefused as soon as the firmware refuses."""
    if config.secure_boot is None:
        return process.wait(timeout=timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            return process.wait(timeout=POLL_FIRMWARE)
        except subprocess.TimeoutExpired:
            if (refused := firmware_refusal(config)) is not None:
                raise refused from None
            if deadline is not None and time.monotonic() > deadline:
                raise


def run_detached(
    config: VmConfig,
    cache: Path,
    wait_tcp: int | None,
    wait_timeout: float,
    timeline: bool = False,
) -> Timeline | None:
    """Start the VM in the background; with `wait_tcp`, return once that guest port
    answers; with `timeline`, once the boot is complete too, and return its timeline
    (the port's answer its last stage)."""
    published = [p for p in config.publish if p.guest == wait_tcp and p.protocol == "tcp"]
    if wait_tcp is not None and not published:  # checked before a VM is started for nothing
        raise UserError(f"--wait-tcp {wait_tcp}: publish that port (--publish HOST:{wait_tcp})")
    require_emulator(config)
    prepare_state(config)
    started = time.monotonic()
    watch = ConsoleWatch(config.console_log, started)
    with watch if timeline else contextlib.nullcontext(watch):
        with _tpm_while_running(config, detached=True):
            run(qemu_command(config))  # -daemonize: returns once the VM runs
        pid = read_pid(config.state)
        register(cache, config.state, _record(config, pid))
        deadline = started + wait_timeout
        answered = None
        if wait_tcp is not None:
            answered = _wait_port(config, pid, published[0].host, wait_tcp, wait_timeout) - started
        elif config.secure_boot is not None:
            wait_firmware_verdict(config, pid, wait_timeout)
        if not timeline:
            return None
        while not watch.boot_complete():
            _check_alive(config, pid, "its services had started")
            if time.monotonic() > deadline:
                raise ExternalError(
                    f"the boot did not finish within {wait_timeout:g} s (the VM runs on; "
                    f"see {config.console_log}):\n{as_table(watch.timeline())}"
                )
            time.sleep(POLL_READY)
    found = watch.timeline()
    if answered is None or wait_tcp is None:
        return found
    return found.with_stage(_port_stage(found, wait_tcp, answered))


POLL_READY = 0.1  # seconds between two looks at whether the boot is complete


def _port_stage(found: Timeline, port: int, answered: float) -> Stage:
    """From the last service's start (or the last stage) to the port's first answer."""
    services = [stage for stage in found.stages if stage.name.startswith("service ")]
    last = max(stage.end for stage in services or found.stages or [Stage("", 0.0, 0.0)])
    last = min(last, answered)
    return Stage(f"port {port} answers", last, answered - last)


def wait_firmware_verdict(config: VmConfig, pid: int | None, timeout: float) -> None:
    """Under Secure Boot: return once the firmware started the image, raise if it refused."""
    deadline = time.monotonic() + timeout
    while True:
        _check_alive(config, pid, "the firmware started the image")
        with contextlib.suppress(OSError):
            if STARTED in config.console_log.read_bytes():
                return
        if time.monotonic() > deadline:
            raise ExternalError(
                f"the firmware had not started the image within {timeout:g} s (the VM "
                f"runs on; see {config.console_log})"
            )
        time.sleep(POLL_FIRMWARE)


def _check_alive(config: VmConfig, pid: int | None, waiting_for: str) -> None:
    if (refused := firmware_refusal(config)) is not None:
        with contextlib.suppress(UserError):  # (gone already)
            stop(config.state, timeout=0)
        raise refused
    hint = panic_hint(config)
    if not alive(pid):
        raise ExternalError(
            f"the VM stopped before {waiting_for}:\n"
            + console_tail(config.console_log)
            + (f"\n{hint}" if hint else "")
        )
    if hint is not None:  # e.g. the init runs on a partial root: nothing it starts is trusted
        stop(config.state, timeout=1.0)  # no clean powerdown to wait for
        raise ExternalError(f"stopped the VM before {waiting_for}: {hint}")


def _wait_port(
    config: VmConfig, pid: int | None, host_port: int, port: int, timeout: float
) -> float:
    """The time.monotonic() at which the guest first answered on `port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _check_alive(config, pid, f"port {port} answered")
        asked = time.monotonic()
        if guest_port_answers(config.state, host_port, port):
            return asked
        time.sleep(0.2)
    raise ExternalError(
        f"port {port} did not answer within {timeout:g} s "
        f"(the VM runs on; see {config.console_log})"
    )


def guest_port_answers(state: Path, host_port: int, guest_port: int) -> bool:
    """Whether the guest accepted a connection forwarded to its port.

    QEMU's user network accepts every connection on the host side at once and
    holds it while it tries the guest, so only QEMU's own table tells: a
    connection to the guest port in state ESTABLISHED means the guest answered.
    """
    try:
        with socket.create_connection(("127.0.0.1", host_port), timeout=1.0) as connection:
            connection.settimeout(0.3)
            with contextlib.suppress(OSError):
                connection.recv(1)  # give the guest a moment to complete the handshake
            table = user_network_state(state)
    except (OSError, ExternalError):
        return False
    return established(table, guest_port)


def established(usernet_table: str, guest_port: int) -> bool:
    """In `info usernet` output: a TCP connection to `guest_port` the guest accepted."""
    for line in usernet_table.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[0] == "TCP[ESTABLISHED]" and fields[5] == str(guest_port):
            return True
    return False


def console_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no console log)"
    return "\n".join(text.splitlines()[-lines:])


def panic_hint(config: VmConfig) -> str | None:
    """What to do about a panic whose cause the console shows, if it is one we know."""
    try:
        console = config.console_log.read_bytes()
    except OSError:
        return None
    if any(sign in console for sign in INITRD_DID_NOT_FIT):
        return (
            f"the initrd did not fit in the VM's {config.memory} MB (the kernel could not "
            "unpack it); give it more memory (--mem), or build kernel+squashfs or "
            "kernel+erofs, whose root stays on a disk"
        )
    if VERITY_CORRUPTED in console:
        return (
            "the root failed verification while the system ran (dm-verity read a block "
            "that is not the one built): its disk changed under it; boot the image as built"
        )
    return None


def _panicked(config: VmConfig) -> bool:
    try:
        return PANIC in config.console_log.read_bytes()
    except OSError:
        return False


def _record(config: VmConfig, pid: int | None) -> dict[str, object]:
    boot = config.boot
    booted: dict[str, object] = (
        {
            "kernel": str(boot.kernel),
            "initrd": str(boot.initrd),
            "root": None if boot.root is None else str(boot.root),
            "architecture": boot.architecture,
        }
        if isinstance(boot, KernelBoot)
        else {"image": str(boot.path), "medium": boot.medium, "firmware": boot.firmware}
    )
    return {
        **booted,
        "pid": pid,
        "accel": config.accel,
        "memory": config.memory,
        "cpus": config.cpus,
        "publish": [f"{p.host}:{p.guest}/{p.protocol}" for p in config.publish],
        "disks": [str(disk.path) for disk in config.disks],
        "agent": str(config.agent_socket),
        "detached": config.detach,
        "secure_boot": None if config.secure_boot is None else str(config.secure_boot),
        "tpm": config.tpm,
        "started": time.time(),
        "user": os.getuid(),
    }
