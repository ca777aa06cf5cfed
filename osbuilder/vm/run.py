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
import time
from pathlib import Path

from osbuilder.errors import ExternalError, UserError
from osbuilder.runner import run
from osbuilder.vm.control import alive, read_pid, refuse_running, register, user_network_state
from osbuilder.vm.disks import prepare_disks
from osbuilder.vm.qemu import KernelBoot, VmConfig, qemu_command
from osbuilder.vm.userdata import write_data_iso

log = logging.getLogger(__name__)

PANIC = b"Kernel panic - not syncing"
INITRD_DID_NOT_FIT = b"Initramfs unpacking failed: write error"  # its ramfs is full
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


def run_foreground(config: VmConfig, cache: Path, timeout: float | None) -> int:
    require_emulator(config)
    prepare_state(config)
    command = qemu_command(config)
    log.debug("run: %s", " ".join(command))
    process = subprocess.Popen(command)
    register(cache, config.state, _record(config, process.pid))
    try:
        code = process.wait(timeout=timeout)
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


def run_detached(config: VmConfig, cache: Path, wait_tcp: int | None, wait_timeout: float) -> None:
    published = [p for p in config.publish if p.guest == wait_tcp and p.protocol == "tcp"]
    if wait_tcp is not None and not published:  # checked before a VM is started for nothing
        raise UserError(f"--wait-tcp {wait_tcp}: publish that port (--publish HOST:{wait_tcp})")
    require_emulator(config)
    prepare_state(config)
    run(qemu_command(config))  # -daemonize: returns once the VM runs
    pid = read_pid(config.state)
    register(cache, config.state, _record(config, pid))
    if wait_tcp is None:
        return
    host_port = published[0].host
    deadline = time.monotonic() + wait_timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            hint = panic_hint(config)
            raise ExternalError(
                f"the VM stopped before port {wait_tcp} answered:\n"
                + console_tail(config.console_log)
                + (f"\n{hint}" if hint else "")
            )
        if guest_port_answers(config.state, host_port, wait_tcp):
            return
        time.sleep(0.2)
    raise ExternalError(
        f"port {wait_tcp} did not answer within {wait_timeout:g} s "
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
    if INITRD_DID_NOT_FIT in console:
        return (
            f"the initrd did not fit in the VM's {config.memory} MB (the kernel: "
            "'Initramfs unpacking failed'); give it more memory (--mem), or build "
            "kernel+squashfs or kernel+erofs, whose root stays on a disk"
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
        "started": time.time(),
        "user": os.getuid(),
    }
