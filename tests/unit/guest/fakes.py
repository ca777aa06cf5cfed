"""Stand-ins for the guest's collaborators: a console that records, a clock that does not
sleep, and containers that are scripted rather than run."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from osbuilder.guest.bundle import Bundle, RuntimeExtras
from osbuilder.guest.console import Console
from osbuilder.guest.container import StartError
from osbuilder.guest.protocols import ContainerHandle


class RecordingConsole(Console):
    def __init__(self) -> None:
        super().__init__(fd=-1, clock=lambda: 0.0)
        self.lines: list[str] = []
        self._record_lock = threading.Lock()

    def write_raw(self, text: str) -> None:
        with self._record_lock:
            self.lines.extend(text.rstrip("\n").split("\n"))

    @property
    def text(self) -> str:
        with self._record_lock:
            return "\n".join(self.lines)

    def wait_for(self, needle: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never appeared on the console:\n{self.text}")
            time.sleep(0.005)


class FakeClock:
    """Time moves only when someone waits: backoff delays are recorded, not slept."""

    def __init__(self) -> None:
        self.time = 1000.0
        self.waits: list[float] = []

    def now(self) -> float:
        return self.time

    def wait(
        self, condition: threading.Condition, predicate: Callable[[], bool], timeout: float
    ) -> bool:
        self.waits.append(timeout)
        self.time += timeout
        return predicate()


@dataclass
class Script:
    """What one launch does: fail to start, or run and exit with a code (after output).
    With exit_code None the container runs until signalled; `ignores_term` makes it
    survive SIGTERM."""

    exit_code: int | None = 0
    start_error: str = ""
    output: str = ""
    ignores_term: bool = False
    runs_for: float = 0.0  # clock seconds the run takes


class FakeContainer:
    def __init__(self, launcher: FakeLauncher, bundle: Bundle, script: Script, pid: int) -> None:
        self._launcher = launcher
        self._bundle = bundle
        self._script = script
        self._pid = pid
        self._exited = threading.Condition()
        self._code: int | None = script.exit_code
        self.signals: list[int] = []
        self.finished_with: bool | None = None
        self.finished_later: bool | None = None

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def name(self) -> str:
        return self._bundle.name

    def wait(self, timeout: float | None = None) -> int | None:
        with self._exited:
            self._exited.wait_for(lambda: self._code is not None, timeout)
            if self._code is not None and self._launcher.clock is not None:
                self._launcher.clock.time += self._script.runs_for
            return self._code

    def signal(self, signum: int) -> None:
        with self._exited:
            self.signals.append(signum)
            self._launcher.events.append(
                f"signal {self._bundle.name} {signal.Signals(signum).name}"
            )
            if self._code is None and not (signum == signal.SIGTERM and self._script.ignores_term):
                self._code = -signum
                self._exited.notify_all()

    def finish(self, release: bool = False, later: bool = False) -> None:
        self.finished_with = release
        self.finished_later = later
        self._launcher.events.append(f"finish {self._bundle.name}")


@dataclass
class FakeLauncher:
    """Launches by script, per bundle name; the last script of a name repeats."""

    scripts: dict[str, list[Script]] = field(default_factory=dict)
    clock: FakeClock | None = None
    events: list[str] = field(default_factory=list)
    containers: list[FakeContainer] = field(default_factory=list)
    launched: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    def launch(self, bundle: Bundle, output_fd: int) -> ContainerHandle:
        queue = self.scripts.setdefault(bundle.name, [Script()])
        script = queue.pop(0) if len(queue) > 1 else queue[0]
        self.events.append(f"launch {bundle.name}")
        self.launched.release()
        if script.start_error:
            raise StartError(script.start_error)
        if script.output:
            os.write(output_fd, script.output.encode())
        container = FakeContainer(self, bundle, script, 1000 + len(self.containers))
        self.containers.append(container)
        return container

    def launches(self, name: str) -> int:
        return self.events.count(f"launch {name}")


def make_bundle(root: Path, kind: str, directory: str, restart: str = "on-failure") -> Bundle:
    path = root / kind / directory
    path.mkdir(parents=True, exist_ok=True)
    return Bundle(kind, path, RuntimeExtras(restart=restart))
