"""A container's output: read from a pipe, appended to /var/log/NAME.log and shown on the
console line by line with a "NAME: " prefix.

The log lives in the root file system, which is memory: past LogLimit.max_bytes it is
renamed NAME.log.1 (the older ones shifting up to NAME.log.KEEP, the oldest dropped) and
a new one begun, so a chatty service cannot fill the machine's memory.

The init keeps the pipe's write end for the container's whole life (restarts included),
so the pump runs until closed. A partial line is shown after a short quiet spell, so a
prompt without a newline is not held back.
"""

from __future__ import annotations

import os
import select
import threading

from osbuilder.guest.console import Console
from osbuilder.guest.fspath import Path
from osbuilder.guest.records import Record

_QUIET_SECONDS = 0.3
_LONGEST_LINE = 8192


class LogLimit(Record):
    __slots__ = ("keep", "max_bytes")

    def __init__(self, max_bytes: int, keep: int) -> None:
        self.max_bytes = max_bytes  # 0: no limit
        self.keep = keep  # rotated files kept: NAME.log.1 ... NAME.log.KEEP


DEFAULT_LOG_LIMIT = LogLimit(1024 * 1024, 2)


class OutputPump:
    def __init__(
        self, label: str, log_path: Path, console: Console, limit: LogLimit = DEFAULT_LOG_LIMIT
    ) -> None:
        self.label = label
        self.log_path = log_path
        self.limit = limit
        self._console = console
        self._read_fd, self.write_fd = os.pipe()
        self._log_fd: int | None = None
        self._log_size = 0
        self._log_failing = False
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self._open_log()
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

    def _open_log(self) -> None:
        self._log_fd = os.open(
            self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640
        )
        self._log_size = os.fstat(self._log_fd).st_size  # a restart appends to its log

    def _rotate(self) -> None:
        """NAME.log becomes NAME.log.1, NAME.log.1 NAME.log.2 ...; a new NAME.log begins."""
        assert self._log_fd is not None
        os.close(self._log_fd)
        self._log_fd = None
        base = str(self.log_path)
        try:
            if self.limit.keep > 0:
                for number in range(self.limit.keep - 1, 0, -1):
                    if os.path.exists(f"{base}.{number}"):
                        os.replace(f"{base}.{number}", f"{base}.{number + 1}")
                os.replace(base, f"{base}.1")
            else:
                os.unlink(base)
        finally:  # (a failed rename leaves the log growing, and is said like a failed write)
            self._open_log()

    def _log(self, chunk: bytes) -> None:
        if self._log_fd is None:
            return
        try:
            limit = self.limit.max_bytes
            while chunk:
                part = chunk
                if limit and self._log_size + len(chunk) > limit:
                    # The whole lines that fit; none: a new file first (or, for a line
                    # longer than a whole file, its first part).
                    room = limit - self._log_size
                    cut = chunk.rfind(b"\n", 0, room) + 1 if room > 0 else 0
                    if cut == 0 and self._log_size:
                        self._rotate()
                        continue
                    part = chunk[: cut or limit]
                view = memoryview(part)
                while view:  # a write to a filling file system can be short
                    view = view[os.write(self._log_fd, view) :]
                self._log_size += len(part)
                chunk = chunk[len(part) :]
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
