"""Signals of PID 1, taken synchronously by one thread with sigtimedwait(2).

The handled signals are blocked in every thread (the mask is set before any thread starts
and threads inherit it), so none interrupts the init at a random point; this thread takes
them one at a time. The kernel only lets signals reach PID 1 when it has a handler, so
each also gets a no-op Python handler.

busybox init's conventions are kept, so `poweroff`, `reboot` and `halt` from busybox work:
SIGUSR2 powers off, SIGTERM reboots, SIGUSR1 halts; SIGINT is ctrl-alt-del (once
reboot(2) has been told to send it instead of rebooting at once) and SIGPWR a power fail.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

from osbuilder.guest.console import Console
from osbuilder.guest.reaper import Reaper

SHUTDOWN_SIGNALS: dict[signal.Signals, str] = {
    signal.SIGUSR2: "poweroff",
    signal.SIGPWR: "poweroff",
    signal.SIGTERM: "reboot",
    signal.SIGINT: "reboot",
    signal.SIGUSR1: "halt",
}
HANDLED = (signal.SIGCHLD, *SHUTDOWN_SIGNALS)
_POLL_SECONDS = 1.0  # reap now and then even without SIGCHLD, as a safety net


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Never runs while the signals stay blocked; its existence lets them reach PID 1."""


def block_handled_signals() -> None:
    """Call in the main thread before starting any other thread."""
    for signum in HANDLED:
        signal.signal(signum, _ignore)
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)


class SignalLoop:
    def __init__(
        self, reaper: Reaper, request_shutdown: Callable[[str], None], console: Console
    ) -> None:
        self._reaper = reaper
        self._request_shutdown = request_shutdown
        self._console = console
        self._thread = threading.Thread(target=self._run, name="signals", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                info = signal.sigtimedwait(HANDLED, _POLL_SECONDS)
                if info is not None and info.si_signo != signal.SIGCHLD:
                    action = SHUTDOWN_SIGNALS[signal.Signals(info.si_signo)]
                    name = signal.Signals(info.si_signo).name
                    self._console.info(f"{name} from pid {info.si_pid}: {action}")
                    self._request_shutdown(action)
                self._reaper.reap()
            except Exception as error:  # the loop must outlive anything
                self._console.error(f"signal loop: {error!r}")
