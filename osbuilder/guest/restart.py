"""When a service that ended is started again, and after how long.

Policies (runtime.json `restart`, an osbuilder extension; LinuxKit never restarts):
`on-failure` (the default) restarts after a non-zero exit, a death by signal or a failed
start; `always` after any end; `never` leaves it stopped. Delays double from 0.5 s up to
30 s, and start again from 0.5 s once a run has lasted 10 s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def should_restart(policy: str, exit_code: int | None) -> bool:
    """exit_code None means the service could not be started at all."""
    if policy == "never":
        return False
    if policy == "always":
        return True
    return exit_code != 0


class Backoff:
    def __init__(
        self,
        initial: float = 0.5,
        factor: float = 2.0,
        maximum: float = 30.0,
        stable_after: float = 10.0,
    ) -> None:
        self.initial = initial
        self.factor = factor
        self.maximum = maximum
        self.stable_after = stable_after
        self._next = -1.0

    def delay_after(self, ran_for: float) -> float:
        """The wait before the next start, given how long the last run lasted."""
        if self._next < 0 or ran_for >= self.stable_after:
            self._next = self.initial
        delay = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return delay

    def reset(self) -> None:
        self._next = -1.0


class RealClock:
    def now(self) -> float:
        return time.monotonic()

    def wait(
        self, condition: threading.Condition, predicate: Callable[[], bool], timeout: float
    ) -> bool:
        return condition.wait_for(predicate, timeout)
