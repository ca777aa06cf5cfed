"""Following a VM's console log as it grows, to time its boot (`run --timeline`).

A line reaches the log a moment after the guest stamped it with its clock, never
before, so the smallest (arrival - stamp) over the lines is when the guest's clock read
zero, in seconds after QEMU's start: the firmware's time, and what puts the guest's
stamps on the host's clock. The log is read every POLL seconds on a thread of its own.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from osbuilder.vm.timeline import Timeline, boot_complete, read_timeline, stamps

POLL = 0.02


class ConsoleWatch:
    def __init__(self, path: Path, qemu_started: float) -> None:
        """`qemu_started`: time.monotonic() just before QEMU was started."""
        self._path = path
        self._qemu_started = qemu_started
        self._file: BinaryIO | None = None
        self._partial = b""
        self._text: list[str] = []
        self._zero: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="console watch", daemon=True)

    def __enter__(self) -> ConsoleWatch:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()  # what came last
        if self._file is not None:
            self._file.close()

    def _follow(self) -> None:
        while not self._stop.wait(POLL):
            self.poll()

    def poll(self) -> None:
        """Read what the log gained since the last call."""
        arrived = time.monotonic() - self._qemu_started
        with self._lock:
            if self._file is None:
                with contextlib.suppress(FileNotFoundError):
                    self._file = self._path.open("rb")
                if self._file is None:
                    return
            data = self._partial + self._file.read()
            complete, _, self._partial = data.rpartition(b"\n")
            if not complete:
                return
            text = complete.decode(errors="replace") + "\n"
            self._text.append(text)
            for stamp in stamps(text):
                if self._zero is None or arrived - stamp < self._zero:
                    self._zero = arrived - stamp

    @property
    def text(self) -> str:
        with self._lock:
            return "".join(self._text)

    @property
    def kernel_zero(self) -> float | None:
        """Seconds after QEMU's start at which the guest's clock read zero, once a line came."""
        with self._lock:
            return self._zero

    def boot_complete(self) -> bool:
        return boot_complete(self.text)

    def timeline(self) -> Timeline:
        return read_timeline(self.text, self.kernel_zero)
