"""Services: started together, each watched by its own thread, restarted by its policy,
stopped with SIGTERM and, past a timeout, SIGKILL.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable

from osbuilder.guest import milestones
from osbuilder.guest.bundle import Bundle
from osbuilder.guest.console import Console
from osbuilder.guest.container import StartError
from osbuilder.guest.fspath import Path
from osbuilder.guest.logpump import DEFAULT_LOG_LIMIT, LogLimit, OutputPump
from osbuilder.guest.reaper import describe_exit
from osbuilder.guest.restart import Backoff, RealClock, should_restart

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at boot

if TYPE_CHECKING:
    from typing import Any

    from osbuilder.guest.protocols import Clock, ContainerHandle, Launcher

_KILL_GRACE_SECONDS = 5.0
ACTIVE_STATES = ("starting", "running")


class ServiceError(Exception):
    """A control request that cannot be done (unknown service ...)."""


class Service:
    def __init__(
        self,
        bundle: Bundle,
        launcher: Launcher,
        console: Console,
        log_dir: Path,
        clock: Clock,
        backoff: Backoff,
        log_limit: LogLimit = DEFAULT_LOG_LIMIT,
    ) -> None:
        self.bundle = bundle
        self._launcher = launcher
        self._console = console
        self._log_dir = log_dir
        self._log_limit = log_limit
        self._clock = clock
        self._backoff = backoff
        self._changed = threading.Condition()
        self._want_running = True
        self._closed = False
        self._start_now = False
        self._handle: ContainerHandle | None = None
        self._pump: OutputPump | None = None
        self.state = "starting"
        self.launches = 0
        self.pid: int | None = None
        self.started_at: float | None = None
        self.last_exit: int | None = None
        self.last_error = ""
        self._thread = threading.Thread(
            target=self._supervise, name=f"service {bundle.name}", daemon=True
        )

    @property
    def name(self) -> str:
        return self.bundle.name

    @property
    def log_path(self) -> Path:
        return self._log_dir / f"{self.bundle.log_name}.log"

    def begin(self) -> None:
        self._thread.start()

    # --- the service's own thread ---

    def _supervise(self) -> None:
        while True:
            try:
                if not self._wait_until_wanted():
                    return
                exit_code, ran_for = self._run_once()
                if not self._after_exit(exit_code, ran_for):
                    return
            except Exception as error:  # the supervisor must outlive any bug of its own
                self._console.error(f"service {self.name}: supervisor error: {error!r}")
                with self._changed:
                    self._handle = None
                    self.state = "failed"
                    self._want_running = False
                    self._changed.notify_all()

    def _wait_until_wanted(self) -> bool:
        with self._changed:
            while not (self._want_running or self._closed):
                self._changed.wait()
            if self._closed:
                self.state = "stopped"
                self._changed.notify_all()
                return False
            self.state = "starting"
            self._start_now = False
            self._changed.notify_all()
            return True

    def _output(self) -> OutputPump:
        if self._pump is None:
            self._pump = OutputPump(
                self.bundle.label, self.log_path, self._console, self._log_limit
            )
        return self._pump

    def _run_once(self) -> tuple[int | None, float]:
        self.launches += 1
        asked = self._clock.now()
        try:
            handle = self._launcher.launch(self.bundle, self._output().write_fd)
        except Exception as error:
            reason = str(error) if isinstance(error, StartError) else repr(error)
            self._console.error(milestones.service_cannot_start(self.name, reason))
            with self._changed:
                self.last_error = reason
                self.last_exit = None
            return None, 0.0
        with self._changed:
            self._handle = handle
            self.pid = handle.pid
            self.started_at = self._clock.now()
            self.state = "running"
            self.last_error = ""
            stop_now = not self._want_running or self._closed
            self._changed.notify_all()
        if stop_now:
            handle.signal(signal.SIGTERM)
        else:
            self._console.info(
                milestones.service_started(self.name, handle.pid, self._clock.now() - asked)
            )
        exit_code = handle.wait(None)
        ran_for = self._clock.now() - (self.started_at or 0.0)
        try:
            handle.finish()
        except Exception as error:
            self._console.error(f"service {self.name}: cleaning up: {error!r}")
        with self._changed:
            self.last_exit = exit_code
            intended = not self._want_running or self._closed
        if intended:
            self._console.info(f"service {self.name}: stopped ({describe_exit(exit_code)})")
        elif exit_code == 0:
            self._console.info(f"service {self.name}: exited ({describe_exit(exit_code)})")
        else:
            self._console.error(f"service {self.name} FAILED: {describe_exit(exit_code)}")
        return exit_code, ran_for

    def _after_exit(self, exit_code: int | None, ran_for: float) -> bool:
        with self._changed:
            self._handle = None
            self.pid = None
            if self._closed:
                self.state = "stopped"
                self._changed.notify_all()
                return False
            if not self._want_running:
                self.state = "stopped"
                self._changed.notify_all()
                return True
            policy = self.bundle.extras.restart
            if not should_restart(policy, exit_code):
                self._want_running = False
                self.state = "exited" if exit_code == 0 else "failed"
                self._changed.notify_all()
                return True
            delay = self._backoff.delay_after(ran_for)
            self.state = "backoff"
            self._changed.notify_all()
            self._console.info(
                f"service {self.name}: restarting in {delay:g} s (restart: {policy})"
            )
            self._clock.wait(
                self._changed,
                lambda: self._closed or not self._want_running or self._start_now,
                delay,
            )
            return True

    # --- requests from other threads ---

    def request_stop(self) -> None:
        """SIGTERM now; no restart until start()."""
        with self._changed:
            self._want_running = False
            handle = self._handle
            if self.state == "backoff":
                self.state = "stopped"
            self._changed.notify_all()
        if handle is not None:
            handle.signal(signal.SIGTERM)

    def kill(self) -> None:
        with self._changed:
            handle = self._handle
        if handle is not None:
            handle.signal(signal.SIGKILL)

    def wait_settled(self, timeout: float) -> bool:
        """After start(): wait until it is running, or has ended or failed again."""
        with self._changed:
            return self._changed.wait_for(
                lambda: not self._start_now and self.state not in ("stopped", "starting"), timeout
            )

    def wait_stopped(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.state not in ACTIVE_STATES, timeout)

    def start(self) -> None:
        with self._changed:
            if self.state in ACTIVE_STATES:
                return
            self._want_running = True
            self._start_now = True
            self._backoff.reset()
            self._changed.notify_all()

    def close(self) -> None:
        """End the supervising thread (at shutdown, once stopped)."""
        with self._changed:
            self._closed = True
            self._want_running = False
            self._changed.notify_all()

    def describe(self) -> dict[str, Any]:
        with self._changed:
            uptime = None
            if self.state == "running" and self.started_at is not None:
                uptime = round(self._clock.now() - self.started_at, 1)
            return {
                "name": self.name,
                "state": self.state,
                "pid": self.pid,
                "restarts": max(0, self.launches - 1),
                "uptime": uptime,
                "last_exit": None if self.last_exit is None else describe_exit(self.last_exit),
                "error": self.last_error,
                "restart": self.bundle.extras.restart,
                "log": str(self.log_path),
            }


class Supervisor:
    def __init__(
        self,
        launcher: Launcher,
        console: Console,
        log_dir: Path,
        clock: Clock | None = None,
        backoff: Callable[[], Backoff] = Backoff,
        log_limit: LogLimit = DEFAULT_LOG_LIMIT,
    ) -> None:
        self._launcher = launcher
        self._console = console
        self._log_dir = log_dir
        self._log_limit = log_limit
        self._clock = clock or RealClock()
        self._backoff = backoff
        self.services: dict[str, Service] = {}

    def start_all(self, bundles: Iterable[Bundle]) -> None:
        """Each service starts in its own thread, so they start concurrently."""
        for bundle in bundles:
            service = Service(
                bundle,
                self._launcher,
                self._console,
                self._log_dir,
                self._clock,
                self._backoff(),
                self._log_limit,
            )
            self.services[service.name] = service
            service.begin()

    def get(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            known = ", ".join(sorted(self.services)) or "none"
            raise ServiceError(f"no service {name!r} (services: {known})") from None

    def describe(self) -> list[dict[str, Any]]:
        return [self.services[name].describe() for name in sorted(self.services)]

    def stop(self, name: str, timeout: float) -> None:
        self._stop([self.get(name)], timeout)

    def start(self, name: str, timeout: float = 0.0) -> None:
        """Start it; with a timeout, wait that long for it to be up (or to fail)."""
        service = self.get(name)
        service.start()
        service.wait_settled(timeout)

    def restart(self, name: str, timeout: float) -> None:
        service = self.get(name)
        self._stop([service], timeout)
        service.start()
        service.wait_settled(timeout)

    def stop_all(self, timeout: float) -> None:
        services = list(self.services.values())
        self._stop(services, timeout)
        for service in services:
            service.close()

    def _stop(self, services: list[Service], timeout: float) -> None:
        for service in services:
            service.request_stop()
        deadline = time.monotonic() + timeout  # a real wait, whatever the restart clock
        stubborn = [
            service
            for service in services
            if not service.wait_stopped(max(0.0, deadline - time.monotonic()))
        ]
        for service in stubborn:
            self._console.info(
                f"service {service.name}: still running after {timeout:g} s: SIGKILL"
            )
            service.kill()
        for service in stubborn:
            if not service.wait_stopped(_KILL_GRACE_SECONDS):
                self._console.error(f"service {service.name} did not die from SIGKILL")
