"""One owner for wait(2): PID 1 must reap every orphan, so nothing else may wait.

All children, ours and orphans re-parented to us, are collected by `reap()`; a thread that
wants the exit status of one process `watch`es its pid and `wait`s for it. A process that
ends before it is watched (a container can exit before its pid file is read) keeps its
status in a small buffer until it is claimed.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import OrderedDict
from collections.abc import Callable

_UNCLAIMED_LIMIT = 512


def describe_exit(code: int | None) -> str:
    """0 -> 'exit code 0'; -15 -> 'killed by SIGTERM'."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Reaper:
    def __init__(self, waitpid: Callable[[int, int], tuple[int, int]] = os.waitpid) -> None:
        self._waitpid = waitpid
        self._changed = threading.Condition()
        self._watched: set[int] = set()
        self._exited: dict[int, int] = {}
        self._unclaimed: OrderedDict[int, int] = OrderedDict()
        self.orphans_reaped = 0

    def watch(self, pid: int) -> None:
        with self._changed:
            self._watched.add(pid)
            if pid in self._unclaimed:
                self._exited[pid] = self._unclaimed.pop(pid)
                self._changed.notify_all()

    def forget(self, pid: int) -> None:
        with self._changed:
            self._watched.discard(pid)
            self._exited.pop(pid, None)

    def reap(self) -> int:
        """Collect every child that has ended; returns how many."""
        count = 0
        while True:
            try:
                pid, status = self._waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            if pid == 0:
                break
            count += 1
            self._record(pid, os.waitstatus_to_exitcode(status))
        return count

    def _record(self, pid: int, code: int) -> None:
        with self._changed:
            if pid in self._watched:
                self._exited[pid] = code
                self._changed.notify_all()
                return
            self.orphans_reaped += 1
            self._unclaimed[pid] = code
            while len(self._unclaimed) > _UNCLAIMED_LIMIT:
                self._unclaimed.popitem(last=False)

    def has_exited(self, pid: int) -> bool:
        with self._changed:
            return pid in self._exited

    def wait(self, pid: int, timeout: float | None = None) -> int | None:
        """The exit code (negative: killed by that signal), or None on timeout."""
        with self._changed:
            if not self._changed.wait_for(lambda: pid in self._exited, timeout):
                return None
            self._watched.discard(pid)
            return self._exited.pop(pid)


class ReaperThread:
    """Reaps by polling, for use where SIGCHLD is not routed to us (tests, not PID 1)."""

    def __init__(self, reaper: Reaper, interval: float = 0.02) -> None:
        self._reaper = reaper
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._reaper.reap()
