"""The seams where tests put fakes. Imported only by type checkers (under TYPE_CHECKING),
so PID 1 never pays for importing typing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from osbuilder.guest.bundle import Bundle
from osbuilder.guest.fspath import Path
from osbuilder.guest.spawn import CommandResult


class ContainerHandle(Protocol):
    @property
    def pid(self) -> int: ...

    def wait(self, timeout: float | None = None) -> int | None:
        """Its exit code (negative: killed by that signal), or None if still running."""

    def signal(self, signum: int) -> None: ...

    def finish(self, release: bool = False, later: bool = False) -> None:
        """Delete it from the runtime; with release, also undo the bundle's mounts; with
        later, on a low-priority thread, after this returns."""


class Launcher(Protocol):
    def launch(self, bundle: Bundle, output_fd: int) -> ContainerHandle:
        """Start the container with stdout and stderr on output_fd; raise StartError."""


class Mounter(Protocol):
    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str
    ) -> None: ...

    def umount(self, target: str, flags: int) -> None: ...


class CommandRunnerLike(Protocol):
    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 60.0,
        output_fd: int | None = None,
        executable: str | None = None,
    ) -> CommandResult: ...


class Clock(Protocol):
    def now(self) -> float: ...

    def wait(
        self, condition: threading.Condition, predicate: Callable[[], bool], timeout: float
    ) -> bool:
        """Wait (holding `condition`) until predicate() or timeout; return predicate()."""


__all__ = ["Clock", "CommandRunnerLike", "ContainerHandle", "Launcher", "Mounter", "Path"]
