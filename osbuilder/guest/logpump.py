"""A container's output: read from a pipe, appended to /var/log/NAME.log and shown on the
console line by line with a "NAME: " prefix.

The init keeps the pipe's write end for the container's whole life (restarts included),
so the pump runs until closed. A partial line is shown after a short quiet spell, so a
prompt without a newline is not held back.
"""

from __future__ import annotations

import os
import select
import threading
from pathlib import Path

from osbuilder.guest.console import Console

_QUIET_SECONDS = 0.3
_LONGEST_LINE = 8192


class OutputPump:
    def __init__(self, label: str, log_path: Path, console: Console) -> None:
        self.label = label
        self.log_path = log_path
        self._console = console
        self._read_fd, self.write_fd = os.pipe()
        self._log_fd: int | None = None
        self._log_failing = False
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_fd = os.open(
                log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640
            )
        except OSError as error:
            console.error(f"{label}: cannot open {log_path}: {error.strerror}; console only")
        self._thread = threading.Thread(target=self._run, name=f"output {label}", daemon=True)
        self._thread.start()

    def close_writer(self) -> None:
        """Drop our write end; the pump ends once the container's copies are closed too."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def join(self, timeout: float) -> bool:
        """Wait for the pump to drain; False if something still holds the pipe open."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        pending = b""
        try:
            while True:
                ready, _, _ = select.select(
                    [self._read_fd], [], [], _QUIET_SECONDS if pending else None
                )
                if not ready:
                    self._emit(pending)
                    pending = b""
                    continue
                chunk = os.read(self._read_fd, 65536)
                if not chunk:
                    break
                self._log(chunk)
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    self._emit(line)
                if len(pending) > _LONGEST_LINE:
                    self._emit(pending)
                    pending = b""
            if pending:
                self._emit(pending)
        except Exception as error:  # the container must not lose its output silently
            self._console.error(f"{self.label}: output lost: {error!r}")
        finally:
            os.close(self._read_fd)
            if self._log_fd is not None:
                os.close(self._log_fd)

    def _log(self, chunk: bytes) -> None:
        if self._log_fd is None:
            return
        view = memoryview(chunk)
        try:
            while view:  # a write to a filling file system can be short
                view = view[os.write(self._log_fd, view) :]
        except OSError as error:
            # Said once per spell of failures (a full /var/log would say it per chunk);
            # the output still reaches the console, and the log resumes when it can.
            if not self._log_failing:
                self._console.error(
                    f"{self.label}: cannot write {self.log_path}: {error.strerror}; "
                    "its output goes on to the console only"
                )
                self._log_failing = True
            return
        if self._log_failing:
            self._console.error(f"{self.label}: writing {self.log_path} again (with a gap)")
            self._log_failing = False

    def _emit(self, line: bytes) -> None:
        self._console.output(self.label, line.rstrip(b"\r").decode("utf-8", errors="replace"))
