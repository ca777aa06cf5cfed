"""onboot and onshutdown: each container run to its end, one after the other.

A failure (cannot start, non-zero exit, timeout) is reported loudly and the next one
still runs, as in LinuxKit.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence

from osbuilder.guest import milestones
from osbuilder.guest.bundle import Bundle
from osbuilder.guest.console import Console
from osbuilder.guest.container import StartError
from osbuilder.guest.fspath import Path
from osbuilder.guest.logpump import DEFAULT_LOG_LIMIT, LogLimit, OutputPump
from osbuilder.guest.reaper import describe_exit
from osbuilder.guest.records import Record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at boot

if TYPE_CHECKING:
    from osbuilder.guest.protocols import Launcher

_KILL_GRACE_SECONDS = 5.0
_DRAIN_SECONDS = 1.0


class StepResult(Record):
    __slots__ = ("bundle", "error", "exit_code", "seconds")

    def __init__(
        self, bundle: Bundle, exit_code: int | None, error: str = "", seconds: float = 0.0
    ) -> None:
        self.bundle = bundle
        self.exit_code = exit_code
        self.error = error  # why it did not run to a clean end, when it did not
        self.seconds = seconds

    @property
    def ok(self) -> bool:
        return not self.error and self.exit_code == 0


def run_to_completion(
    bundle: Bundle,
    launcher: Launcher,
    console: Console,
    log_dir: Path,
    timeout: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    cleanup_later: bool = False,
    log_limit: LogLimit = DEFAULT_LOG_LIMIT,
) -> StepResult:
    """Run one container to its end. With cleanup_later its deletion runs in the
    background at the lowest priority: a container that has ended holds nothing the
    next one needs (onboot), and the boot goes on a little sooner."""
    started = clock()
    kind, name = bundle.kind, bundle.name
    console.info(milestones.container_starting(kind, name))
    pump = OutputPump(bundle.label, log_dir / f"{bundle.log_name}.log", console, log_limit)
    try:
        try:
            handle = launcher.launch(bundle, pump.write_fd)
        finally:
            pump.close_writer()  # the container has its own copy now
    except StartError as error:
        console.error(milestones.container_failed(kind, name, str(error), at_start=True))
        return StepResult(bundle, None, f"cannot start: {error}", clock() - started)
    except Exception as error:
        console.error(milestones.container_failed(kind, name, repr(error), at_start=True))
        return StepResult(bundle, None, f"cannot start: {error!r}", clock() - started)
    problem = ""
    code = handle.wait(timeout)
    if code is None:
        problem = f"still running after {timeout:g} s, killed"
        handle.signal(signal.SIGKILL)
        code = handle.wait(_KILL_GRACE_SECONDS)
    try:
        handle.finish(release=True, later=cleanup_later)
    except Exception as failure:
        console.error(f"{kind} {name}: cleaning up: {failure!r}")
    pump.join(_DRAIN_SECONDS)
    seconds = clock() - started
    if not problem and code != 0:
        problem = describe_exit(code)
    if problem:
        console.error(milestones.container_failed(kind, name, problem))
    else:
        console.info(milestones.container_ended(kind, name, describe_exit(code), seconds))
    return StepResult(bundle, code, problem, seconds)


def run_sequence(
    bundles: Sequence[Bundle],
    launcher: Launcher,
    console: Console,
    log_dir: Path,
    *,
    timeout: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    cleanup_later: bool = False,
    log_limit: LogLimit = DEFAULT_LOG_LIMIT,
) -> list[StepResult]:
    """Run each in order; stop early (before the next one) when should_stop() says so."""
    results: list[StepResult] = []
    for bundle in bundles:
        if should_stop():
            console.info(f"{bundle.kind}: skipping {bundle.name} and the rest")
            break
        results.append(
            run_to_completion(
                bundle,
                launcher,
                console,
                log_dir,
                timeout,
                cleanup_later=cleanup_later,
                log_limit=log_limit,
            )
        )
    return results
