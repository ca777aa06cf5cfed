"""The words of the init's milestones: the console lines a boot's stages are read from.

`osbuilder run --timeline` and bench/boot.py read them back on the host
(osbuilder/vm/timeline.py, which may not import the guest: a unit test checks that it
reads what these functions write). Each line is an `init:` message, stamped by the
console with the kernel's clock; a stage's start is written into its line as its length
in seconds, so that a line printed at its end still tells where the stage began.
"""

from __future__ import annotations

BANNER = "osbuilder"


def banner(version: str, python: str, kernel: str) -> str:
    """The init's first line: Python has started."""
    return f"{BANNER} {version} (Python {python}, kernel {kernel})"


def module_round(number: int, loaded: list[str], seconds: float) -> str:
    """One round of module loading ended (a round: the drivers of the devices found so far)."""
    names = ", ".join(loaded) or "none"
    return f"modules round {number}: {len(loaded)} loaded in {seconds * 1000:.0f} ms ({names})"


def modules_done(loaded: int, seconds: float) -> str:
    return f"modules: {loaded} loaded in {seconds * 1000:.0f} ms"


def container_starting(kind: str, name: str) -> str:
    """An onboot or onshutdown container is about to start."""
    return f"{kind} {name}: starting"


def container_ended(kind: str, name: str, how: str, seconds: float) -> str:
    """It ran to its end: `how` is describe_exit's, e.g. 'exit code 0'."""
    return f"{kind} {name}: {how} ({seconds:.2f} s)"


def container_failed(kind: str, name: str, problem: str, *, at_start: bool = False) -> str:
    """It did not run to a clean end, or did not start (printed as an error)."""
    return f"{kind} {name} FAILED{' to start' if at_start else ''}: {problem}"


def service_started(name: str, pid: int, seconds: float) -> str:
    """A service's process runs, `seconds` after its start was asked for."""
    return f"service {name}: started (pid {pid}) in {seconds:.2f} s"


def service_cannot_start(name: str, reason: str) -> str:
    """(printed as an error)"""
    return f"service {name} cannot start: {reason}"


def boot_done(uptime: float, services: int, runtime: str, resident: str) -> str:
    """onboot is over and every service's start has been asked for."""
    return (
        f"boot done at {uptime:.2f} s: {services} service(s) starting with {runtime}; "
        f"init RSS {resident}"
    )
