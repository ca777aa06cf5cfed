"""Stopping the machine: onshutdown containers, services (SIGTERM, then SIGKILL past the
timeout), every other process, swap off, sync, unmount, reboot(2).

Each step is guarded: a failing step is reported and the next one still runs, so the
machine always reaches reboot(2).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable

from osbuilder.guest import syscalls
from osbuilder.guest.console import Console
from osbuilder.guest.fspath import Path

REBOOT_COMMANDS = {
    "poweroff": syscalls.RB_POWER_OFF,
    "reboot": syscalls.RB_AUTOBOOT,
    "halt": syscalls.RB_HALT_SYSTEM,
}


class ShutdownSwitch:
    """Set once, by the first of: a signal, the power button, a control request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requested = threading.Event()
        self.action: str | None = None

    def request(self, action: str) -> None:
        with self._lock:
            if self.action is None and action in REBOOT_COMMANDS:
                self.action = action
                self._requested.set()

    @property
    def requested(self) -> bool:
        return self._requested.is_set()

    def wait(self, timeout: float | None = None) -> str | None:
        self._requested.wait(timeout)
        return self.action


class ShutdownSteps:
    def __init__(
        self,
        run_onshutdown: Callable[[], None],
        stop_services: Callable[[float], None],
        kill_remaining: Callable[[float], None],
        release_swap: Callable[[], None],
        sync: Callable[[], None],
        unmount_all: Callable[[], None],
        reboot: Callable[[int], None],
    ) -> None:
        self.run_onshutdown = run_onshutdown
        self.stop_services = stop_services
        self.kill_remaining = kill_remaining
        self.release_swap = release_swap
        self.sync = sync
        self.unmount_all = unmount_all
        self.reboot = reboot


def shut_down(action: str, steps: ShutdownSteps, console: Console, timeout: float) -> None:
    """Run every step in order; returns only if reboot(2) itself failed."""
    console.info(f"shutting down ({action})")
    sequence: list[tuple[str, Callable[[], None]]] = [
        ("onshutdown", steps.run_onshutdown),
        ("stopping services", lambda: steps.stop_services(timeout)),
        ("stopping remaining processes", lambda: steps.kill_remaining(min(timeout, 2.0))),
        ("swap off", steps.release_swap),
        ("sync", steps.sync),
        ("unmounting", steps.unmount_all),
    ]
    for what, step in sequence:
        try:
            step()
        except Exception as error:
            console.error(f"shutdown: {what}: {error!r}")
    console.info(f"{action}")
    try:
        steps.reboot(REBOOT_COMMANDS[action])
    except Exception as error:
        console.error(f"reboot(2) failed: {error!r}")


def other_processes(proc: Path = Path("/proc")) -> list[int]:
    """User-space processes other than us (kernel threads have an empty cmdline)."""
    found: list[int] = []
    me = os.getpid()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def kill_remaining(grace: float) -> None:
    """SIGTERM to every process but us (kill(-1) from PID 1), SIGKILL to what is left."""
    try:
        os.kill(-1, signal.SIGTERM)
    except ProcessLookupError:
        return  # nobody left
    deadline = time.monotonic() + grace
    while other_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(-1, signal.SIGKILL)


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code in ("040", "011", "012", "134"):
        field = field.replace("\\" + code, chr(int(code, 8)))
    return field


def mount_points(mountinfo: str) -> list[str]:
    """Mount points in mount order (parents before children)."""
    return [_unescape(line.split()[4]) for line in mountinfo.splitlines() if line.strip()]


def swap_areas(swaps: str) -> list[str]:
    """The swap files and devices in use, from /proc/swaps (a header line, then one line
    each, the name escaped as in mountinfo)."""
    return [_unescape(line.split()[0]) for line in swaps.splitlines()[1:] if line.strip()]


def release_swap(
    swaps_path: Path = Path("/proc/swaps"),
    mountinfo_path: Path = Path("/proc/self/mountinfo"),
) -> None:
    """swapoff(2) every swap area, then remove the device-mapper devices left unused (an
    encrypted swap's): a swap file, or a mapping over one, keeps its file system busy,
    which then could not be unmounted cleanly.

    An area turned on inside a container is named in /proc/swaps from the root of the mount
    it was opened through, which the init's namespace does not have: a data disk's file
    shows as /swapfile, a mapped device as /mapper/NAME. So each name is tried as it is,
    then under each of the init's mount points, deepest first; swapoff(2) takes only the
    area itself (another file of that name is refused)."""
    mounts = [point for point in reversed(mount_points(mountinfo_path.read_text())) if point != "/"]
    failures = []
    for area in swap_areas(swaps_path.read_text()):
        error: OSError | None = None
        for candidate in (area, *(point + area for point in mounts)):
            try:
                syscalls.swapoff(candidate)
                break
            except OSError as failure:
                error = error or failure
        else:
            failures.append(str(error.strerror if error else area))
    syscalls.remove_unused_device_mappings()
    if failures:
        raise OSError("; ".join(failures))


def unmount_all(mountinfo_path: Path = Path("/proc/self/mountinfo")) -> None:
    """Detach every mount but / itself, children first. The root stays: it is RAM."""
    for target in reversed(mount_points(mountinfo_path.read_text())):
        if target == "/":
            continue
        with contextlib.suppress(OSError):
            syscalls.umount(target, syscalls.MNT_DETACH)
