"""A boot's stages read from its serial console: `osbuilder run --timeline` and bench/boot.py.

The kernel stamps its lines with its clock, and the init (osbuilder/guest/milestones.py
writes its milestones' words; this module may not import the guest, a unit test checks
that it reads them) stamps its own with the same clock. Times are seconds on the guest's
clock, or, given when that clock read zero (`kernel_zero`, seconds after QEMU started:
ConsoleWatch measures it), seconds from QEMU's start, with the firmware as a first stage.

The kernel's lines need a console loglevel that shows KERN_INFO: with `quiet` on the
command line only the init's stages are found.
"""

from __future__ import annotations

import re

from msgspec import Struct

STAMP = r"^\[\s*(?P<stamp>\d+\.\d+)\] "
# Not anchored at the line's start: a shell on the same console (getty's) may have left its
# prompt there, without a newline, just before the init wrote the line.
INIT = r"\[\s*(?P<stamp>\d+\.\d+)\] init: "
ERROR = INIT + r"\*\*\* "
# The kernel's (Linux 6.1's init/initramfs.c and init/main.c).
UNPACK_START = re.compile(STAMP + r"Trying to unpack rootfs image as initramfs", re.M)
UNPACK_END = re.compile(STAMP + r"Freeing initrd memory", re.M)
RUN_INIT = re.compile(STAMP + r"Run (?P<init>\S+) as init process", re.M)
# The init's (osbuilder/guest/milestones.py).
BANNER = re.compile(INIT + r"osbuilder \S+ \(Python ", re.M)
MODULE_ROUND = re.compile(
    INIT + r"modules round (?P<number>\d+): (?P<loaded>\d+) loaded in (?P<ms>\d+) ms", re.M
)
# All the rounds together: what an older init wrote instead of its rounds.
MODULES_DONE = re.compile(INIT + r"modules: (?P<loaded>\d+) loaded in (?P<ms>\d+) ms", re.M)
CONTAINER_STARTING = re.compile(
    INIT + r"(?P<kind>onboot|onshutdown) (?P<name>\S+): starting$", re.M
)
CONTAINER_ENDED = re.compile(
    INIT + r"(?P<kind>onboot|onshutdown) (?P<name>\S+): .*\((?P<seconds>[\d.]+) s\)$", re.M
)
CONTAINER_FAILED = re.compile(ERROR + r"(?P<kind>onboot|onshutdown) (?P<name>\S+) FAILED", re.M)
# (an older init wrote no "in S s": then the stage is only the moment it had started)
SERVICE_STARTED = re.compile(
    INIT + r"service (?P<name>\S+): started \(pid \d+\)(?: in (?P<seconds>[\d.]+) s)?", re.M
)
SERVICE_CANNOT_START = re.compile(ERROR + r"service (?P<name>\S+) cannot start", re.M)
BOOT_DONE = re.compile(INIT + r"boot done at [\d.]+ s: (?P<services>\d+) service\(s\)", re.M)
INIT_RSS = re.compile(INIT + r"boot done at .*init RSS (?P<kb>\d+) kB", re.M)
ANY_STAMP = re.compile(STAMP, re.M)

#: Shorter gaps between the init's stages are not shown as the init's own work.
GAP_SHOWN = 0.02


class Stage(Struct, frozen=True):
    name: str
    start: float
    seconds: float

    @property
    def end(self) -> float:
        return self.start + self.seconds


class Timeline(Struct, frozen=True):
    stages: list[Stage]
    #: the init said boot done and every service has started (or failed to)
    complete: bool
    #: times count from QEMU's start (else from the kernel's clock zero)
    from_qemu: bool

    def stage(self, name: str) -> Stage | None:
        return next((stage for stage in self.stages if stage.name == name), None)

    def with_stage(self, stage: Stage) -> Timeline:
        return Timeline([*self.stages, stage], self.complete, self.from_qemu)


def _first(pattern: re.Pattern[str], console: str) -> re.Match[str] | None:
    return pattern.search(console)


def _stamp(match: re.Match[str] | None) -> float | None:
    return None if match is None else float(match["stamp"])


def _span(name: str, start: float | None, end: float | None) -> list[Stage]:
    if start is None or end is None:
        return []
    return [Stage(name, start, max(0.0, end - start))]


def kernel_stages(console: str) -> list[Stage]:
    """From the kernel's clock zero to /init, split around the initrd's unpacking."""
    unpack_start = _stamp(_first(UNPACK_START, console))
    unpack_end = _stamp(_first(UNPACK_END, console))
    run_init = _stamp(_first(RUN_INIT, console))
    if unpack_start is None or unpack_end is None:
        return _span("kernel", 0.0, run_init)
    return [
        *_span("kernel", 0.0, unpack_start),
        *_span("initrd unpack", unpack_start, unpack_end),
        *_span("kernel, to /init", unpack_end, run_init),
    ]


def init_stages(console: str) -> list[Stage]:
    """Python's start, each module round, each onboot container, each service's start."""
    stages = _span(
        "Python start", _stamp(_first(RUN_INIT, console)), _stamp(_first(BANNER, console))
    )
    rounds = list(MODULE_ROUND.finditer(console))
    for match in rounds or list(MODULES_DONE.finditer(console))[:1]:
        seconds = int(match["ms"]) / 1000
        end = float(match["stamp"])
        name = f"modules round {match['number']}" if rounds else "modules"
        stages.append(Stage(name, end - seconds, seconds))
    stages += _containers(console, "onboot")
    started: set[str] = set()
    for match in SERVICE_STARTED.finditer(console):
        if match["name"] in started:
            continue  # a restart
        started.add(match["name"])
        seconds = float(match["seconds"] or 0)
        end = float(match["stamp"])
        stages.append(Stage(f"service {match['name']} started", end - seconds, seconds))
    return stages


def _containers(console: str, kind: str) -> list[Stage]:
    starts = {
        match["name"]: float(match["stamp"])
        for match in CONTAINER_STARTING.finditer(console)
        if match["kind"] == kind
    }
    stages: list[Stage] = []
    ends = [*CONTAINER_ENDED.finditer(console), *CONTAINER_FAILED.finditer(console)]
    for match in sorted(ends, key=lambda found: found.start()):
        name, end = match["name"], float(match["stamp"])
        if match["kind"] != kind:
            continue
        if name in starts:
            stages += _span(f"{kind} {name}", starts.pop(name), end)
        elif "seconds" in match.groupdict() and match["seconds"]:  # an older init's
            stages += _span(f"{kind} {name}", end - float(match["seconds"]), end)
    return stages


def with_init_gaps(stages: list[Stage]) -> list[Stage]:
    """The stages in order of their start, with the init's own work (its imports, its
    setup between stages) shown where nothing else ran after Python started."""
    ordered = sorted(stages, key=lambda stage: stage.start)
    python = next((stage for stage in ordered if stage.name == "Python start"), None)
    if python is None:
        return ordered
    shown: list[Stage] = []
    reached = python.end
    for stage in ordered:
        if stage.start >= python.end and stage.start - reached > GAP_SHOWN:
            shown.append(Stage("init", reached, stage.start - reached))
        shown.append(stage)
        if stage.start >= python.start:
            reached = max(reached, stage.end)
    return shown


def settled_services(console: str) -> set[str]:
    found = {match["name"] for match in SERVICE_STARTED.finditer(console)}
    return found | {match["name"] for match in SERVICE_CANNOT_START.finditer(console)}


def boot_complete(console: str) -> bool:
    """The init said boot done, and each of its services has started or failed to."""
    done = BOOT_DONE.search(console)
    return done is not None and len(settled_services(console)) >= int(done["services"])


def read_timeline(console: str, kernel_zero: float | None = None) -> Timeline:
    """The stages found in `console` (text of a console log)."""
    console = console.replace("\r", "")
    stages = with_init_gaps([*kernel_stages(console), *init_stages(console)])
    if kernel_zero is None:
        return Timeline(stages, boot_complete(console), from_qemu=False)
    shifted = [Stage(stage.name, stage.start + kernel_zero, stage.seconds) for stage in stages]
    firmware = Stage("firmware", 0.0, max(0.0, kernel_zero))
    return Timeline([firmware, *shifted], boot_complete(console), from_qemu=True)


def init_rss_kb(console: str) -> int | None:
    """The init's resident memory when boot was done (its VmRSS), if it said."""
    match = INIT_RSS.search(console.replace("\r", ""))
    return None if match is None else int(match["kb"])


def stamps(text: str) -> list[float]:
    """The clock stamps of the lines of `text`, in order."""
    return [float(match["stamp"]) for match in ANY_STAMP.finditer(text.replace("\r", ""))]


def as_table(timeline: Timeline) -> str:
    origin = "QEMU's start" if timeline.from_qemu else "the kernel's clock zero"
    rows = [(stage.name, f"{stage.start:.2f}", f"{stage.seconds:.2f}") for stage in timeline.stages]
    width = max([len("stage"), *(len(name) for name, _, _ in rows)])
    lines = [
        f"boot timeline, seconds from {origin}:",
        f"  {'stage':<{width}}  {'start':>7}  {'duration':>8}",
        *(f"  {name:<{width}}  {start:>7}  {seconds:>8}" for name, start, seconds in rows),
    ]
    if not timeline.complete:
        lines.append("  (the boot had not finished: no service started yet, or not all)")
    return "\n".join(lines)


def as_json(timeline: Timeline) -> list[dict[str, object]]:
    return [
        {"stage": stage.name, "start": round(stage.start, 3), "seconds": round(stage.seconds, 3)}
        for stage in timeline.stages
    ]
