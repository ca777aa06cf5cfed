"""Transfer progress: a rich display on a terminal, quiet lines otherwise.

Registry code reports through the `Progress` protocol and never prints.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:
    from rich.progress import TaskID


class Progress(Protocol):
    def begin(self, key: str, label: str, total: int | None) -> None: ...
    def advance(self, key: str, amount: int) -> None: ...
    def restart(self, key: str, completed: int) -> None: ...
    def end(self, key: str, status: str) -> None: ...


class NullProgress:
    def begin(self, key: str, label: str, total: int | None) -> None:
        pass

    def advance(self, key: str, amount: int) -> None:
        pass

    def restart(self, key: str, completed: int) -> None:
        pass

    def end(self, key: str, status: str) -> None:
        pass


class LineProgress:
    """One line per finished transfer, for logs and pipes."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self._started: dict[str, tuple[str, float, int]] = {}
        self._done: dict[str, int] = {}
        self._lock = threading.Lock()

    def begin(self, key: str, label: str, total: int | None) -> None:
        with self._lock:
            self._started[key] = (label, time.monotonic(), total or 0)
            self._done[key] = 0

    def advance(self, key: str, amount: int) -> None:
        with self._lock:
            self._done[key] = self._done.get(key, 0) + amount

    def restart(self, key: str, completed: int) -> None:
        with self._lock:
            self._done[key] = completed

    def end(self, key: str, status: str) -> None:
        with self._lock:
            label, started, total = self._started.pop(key, (key, time.monotonic(), 0))
            size = self._done.pop(key, 0) or total
        elapsed = time.monotonic() - started
        rate = f", {human_size(int(size / elapsed))}/s" if elapsed > 0.05 and size else ""
        print(f"{label}: {status} ({human_size(size)}, {elapsed:.1f} s{rate})", file=self.stream)


class RichProgress:
    """A live bar per transfer, with bytes and rate."""

    def __init__(self) -> None:
        # rich is imported only when a terminal shows progress (it costs ~40 ms).
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, TextColumn, TransferSpeedColumn
        from rich.progress import Progress as RichDisplay

        self.display = RichDisplay(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.fields[status]}"),
            console=Console(stderr=True),
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichProgress:
        self.display.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.display.stop()

    def begin(self, key: str, label: str, total: int | None) -> None:
        self._tasks[key] = self.display.add_task(label, total=total, status="")

    def advance(self, key: str, amount: int) -> None:
        self.display.advance(self._tasks[key], amount)

    def restart(self, key: str, completed: int) -> None:
        status = "resuming" if completed else "restarting"
        self.display.update(self._tasks[key], completed=completed, status=status)

    def end(self, key: str, status: str) -> None:
        task = self._tasks[key]
        total = next((t.total for t in self.display.tasks if t.id == task), None)
        self.display.update(task, completed=total, status=status)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"  # pragma: no cover - the loop always returns
