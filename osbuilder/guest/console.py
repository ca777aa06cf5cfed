"""Lines on the system console: the init's own messages and its containers' output.

Every line goes out in one write(2) under a lock, so lines from several threads never
interleave mid-line. The console may be gone or full; writing must never raise.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable


def seconds_since_boot() -> float:
    """CLOCK_BOOTTIME, the clock the kernel's own log lines are stamped with."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class Console:
    """Writes timestamped messages of the init and prefixed lines of containers to the
    console: one fd, or every console the kernel command line names (console=tty0
    console=ttyS0 ...), since /dev/console is only the last of them."""

    def __init__(self, fd: int = 2, clock: Callable[[], float] = seconds_since_boot) -> None:
        self._fds = [fd]
        self._clock = clock
        self._lock = threading.Lock()
        self.debug_enabled = False

    def reopen(self, fd: int) -> None:
        """Switch to another fd (once /dev/console can be opened)."""
        self.use([fd])

    def use(self, fds: list[int]) -> None:
        """Write to each of these fds from now on."""
        with self._lock:
            self._fds = list(fds)

    def info(self, message: str) -> None:
        self._stamped("init: " + message)

    def debug(self, message: str) -> None:
        if self.debug_enabled:
            self._stamped("init: (debug) " + message)

    def error(self, message: str) -> None:
        """A failure the person at the console must notice."""
        self._stamped("init: *** " + message + " ***")

    def output(self, prefix: str, line: str) -> None:
        """One line of a container's output, prefixed with its name and nothing else."""
        self.write_raw(f"{prefix}: {line}\n")

    def write_raw(self, text: str) -> None:
        encoded = text.encode("utf-8", errors="replace")
        with self._lock:
            for fd in self._fds:
                data = encoded
                try:
                    while data:
                        written = os.write(fd, data)
                        data = data[written:]
                except OSError:
                    pass  # no console: nothing sensible left to do with the message

    def _stamped(self, message: str) -> None:
        lines = message.rstrip("\n").split("\n")
        stamp = f"[{self._clock():9.3f}] "
        self.write_raw("".join(stamp + line + "\n" for line in lines))
