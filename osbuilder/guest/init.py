"""PID 1 from start to power-off: early setup, volumes, onboot, services, then waiting for
a shutdown request and carrying it out. Each phase is guarded: an error is reported on
the console and the boot goes on to the next phase.

Only what the early setup needs is imported up front; the code that runs containers is
imported after it, once the kernel modules are loading (under emulation every import
costs milliseconds, and the network driver's link is ready only a second after it is
loaded: see modload).
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable

from osbuilder import __version__
from osbuilder.guest import milestones, signals, syscalls
from osbuilder.guest.cmdline import BootOptions, parse_cmdline
from osbuilder.guest.console import Console, seconds_since_boot
from osbuilder.guest.early import early_setup
from osbuilder.guest.fspath import Path
from osbuilder.guest.paths import GuestPaths
from osbuilder.guest.reaper import Reaper
from osbuilder.guest.shutdown import (
    ShutdownSteps,
    ShutdownSwitch,
    kill_remaining,
    release_swap,
    shut_down,
    unmount_all,
)

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at boot

if TYPE_CHECKING:
    from osbuilder.guest.container import OciLauncher
    from osbuilder.guest.supervisor import Supervisor


def banner() -> str:
    return milestones.banner(__version__, sys.version.split()[0], os.uname().release)


def resident_memory() -> str:
    """This process's VmRSS, e.g. '14236 kB' (the benchmark watches it)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def idle_seconds() -> float | None:
    """How long the CPUs have been idle since boot (/proc/stat): time a boot could still
    overlap (the benchmark's debug line)."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")  # idle, iowait
    except (OSError, ValueError, IndexError):
        return None


def read_boot_options() -> BootOptions:
    return parse_cmdline(Path("/proc/cmdline").read_text())


class Init:
    def __init__(self, console: Console, paths: GuestPaths | None = None) -> None:
        self.console = console
        self.paths = paths or GuestPaths()
        self.reaper = Reaper()
        self.switch = ShutdownSwitch()
        self.options = BootOptions()
        self.launcher: OciLauncher | None = None
        self.supervisor: Supervisor | None = None
        self.reaping = False  # the signal thread runs, reaping every child

    def guard(self, what: str, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception:
            import traceback  # only when something failed: it imports a lot

            self.console.error(f"{what} failed:\n{traceback.format_exc().rstrip()}")

    def run(self) -> None:
        """Boot, serve, shut down; returns only if reboot(2) failed. Whatever goes wrong
        while booting, the init still waits for a shutdown request and carries it out."""
        signals.block_handled_signals()
        signals.SignalLoop(self.reaper, self.switch.request, self.console).start()
        self.reaping = True
        self.guard("boot", self._boot)
        # What booting made lives on (modules, threads, services): kept out of every
        # collection from now on, which then looks at new objects only (see __main__).
        gc.freeze()
        gc.enable()
        action = None
        while action is None:
            action = self.switch.wait(None)
        steps = ShutdownSteps(
            run_onshutdown=lambda: self._run_kind("onshutdown", self.options.shutdown_timeout),
            stop_services=self._stop_services,
            kill_remaining=kill_remaining,
            release_swap=release_swap,
            sync=os.sync,
            unmount_all=unmount_all,
            reboot=syscalls.reboot,
        )
        shut_down(action, steps, self.console, self.options.shutdown_timeout)

    def _boot(self) -> None:
        self.options = early_setup(read_boot_options, self.console, banner())
        from osbuilder.guest.commands import ControlCommands
        from osbuilder.guest.container import OciLauncher
        from osbuilder.guest.control import ControlServer
        from osbuilder.guest.prepare import BundlePreparer, SyscallMounter
        from osbuilder.guest.runtime import OciRuntime, choose_runtime
        from osbuilder.guest.spawn import CommandRunner
        from osbuilder.guest.supervisor import Supervisor
        from osbuilder.guest.volumes import mount_volumes

        runner = CommandRunner(self.reaper)
        binary = choose_runtime(self.options.runtime)
        if binary is None:
            self.console.error("no OCI runtime (crun or runc) in the image: containers cannot run")
        runtime = OciRuntime(binary or "/usr/bin/crun", runner, no_pivot=self.options.no_pivot)
        preparer = BundlePreparer(SyscallMounter(), runner.run, self.paths.cgroup)
        self.launcher = OciLauncher(
            runtime, self.reaper, preparer, self.paths.run_dir / "containers", self.console
        )
        self.supervisor = Supervisor(
            self.launcher, self.console, self.paths.log_dir, log_limit=self.options.log_limit
        )
        commands = ControlCommands(
            self.supervisor, self.switch.request, self.options.shutdown_timeout
        )
        control = ControlServer(self.paths.control_socket, commands, self.console)
        self.guard("control socket", control.start)
        self.guard("power button", self._watch_power_button)
        self.guard(
            "volumes", lambda: mount_volumes(self.paths.volumes, SyscallMounter(), self.console)
        )
        self.guard("onboot", lambda: self._run_kind("onboot", None))
        if not self.switch.requested:
            self.guard("services", lambda: self._start_services(runtime.name))

    def _run_kind(self, kind: str, timeout: float | None) -> None:
        """Run the onboot or onshutdown containers in order."""
        if self.launcher is None:
            return
        from osbuilder.guest import bundle
        from osbuilder.guest.sequence import run_sequence

        bundles, problems = bundle.discover(self.paths.containers, kind)
        for problem in problems:
            self.console.error(f"{kind}: {problem}")

        def stop() -> bool:  # a shutdown request skips the rest of onboot
            return kind == "onboot" and self.switch.requested

        run_sequence(
            bundles,
            self.launcher,
            self.console,
            self.paths.log_dir,
            timeout=timeout,
            should_stop=stop,
            # onshutdown containers are cleaned up before the unmounting that follows
            cleanup_later=kind == "onboot",
            log_limit=self.options.log_limit,
        )

    def _start_services(self, runtime_name: str) -> None:
        assert self.supervisor is not None
        from osbuilder.guest import bundle

        bundles, problems = bundle.discover(self.paths.containers, "services")
        for problem in problems:
            self.console.error(f"services: {problem}")
        self.supervisor.start_all(bundles)
        self.console.info(
            milestones.boot_done(
                seconds_since_boot(), len(bundles), runtime_name, resident_memory()
            )
        )
        if self.console.debug_enabled:
            self.console.debug(f"CPU idle since boot: {idle_seconds()} s")

    def _stop_services(self, timeout: float) -> None:
        if self.supervisor is not None:
            self.supervisor.stop_all(timeout)

    def _watch_power_button(self) -> None:
        from osbuilder.guest.power import PowerButtonWatcher, power_button_devices

        devices = power_button_devices(self.paths.sysfs, self.paths.root / "dev")
        watcher = PowerButtonWatcher(devices, lambda: self.switch.request("poweroff"), self.console)
        watcher.start()
        if not watcher.watching:
            self.console.info("no power button found (ACPI power off will not work)")
