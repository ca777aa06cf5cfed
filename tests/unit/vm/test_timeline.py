"""`run --timeline`: a boot's stages read from its console, the host reading what the
init writes (osbuilder/guest/milestones.py), and the console followed as it grows."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from osbuilder.guest import milestones
from osbuilder.guest.console import Console
from osbuilder.vm.consolewatch import ConsoleWatch
from osbuilder.vm.timeline import (
    Stage,
    as_json,
    as_table,
    boot_complete,
    init_rss_kb,
    read_timeline,
)

DATA = Path(__file__).resolve().parents[2] / "data/boot"
# A real boot of examples/redis.yml (kernel+initrd, TCG), its console log as QEMU wrote it.
RECORDED = DATA / "redis-console.log"

KERNEL = """\
[    0.000000] Linux version 6.1.0-57-cloud-amd64 (debian-kernel@lists.debian.org)
[    0.245365] printk: console [ttyS0] enabled
[    1.272773] Trying to unpack rootfs image as initramfs...
[    3.388340] Freeing initrd memory: 48296K
[    4.002384] Run /init as init process
"""
#: The stages of every boot of examples/redis.yml, in this order (others come between).
REDIS_STAGES = [
    "firmware",
    "kernel",
    "initrd unpack",
    "kernel, to /init",
    "Python start",
    "modules round 1",
    "onboot dhcpcd",
]


class SteppingClock:
    """The init's clock: each line is stamped at the time the test sets."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def guest_console(path: Path) -> tuple[Console, SteppingClock]:
    clock = SteppingClock()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    return Console(fd, clock), clock


def write_boot(path: Path) -> None:
    """A boot as the init prints it, through its own console and milestones."""
    path.write_text(KERNEL)
    console, clock = guest_console(path)
    steps: list[tuple[float, str, bool]] = [
        (4.737, milestones.banner("0.1.0", "3.11.2", "6.1.0-57-cloud-amd64"), False),
        (5.100, milestones.module_round(1, ["virtio_pci", "virtio"], 0.300), False),
        (5.320, milestones.module_round(2, ["virtio_net"], 0.220), False),
        (5.327, milestones.modules_done(3, 0.527), False),
        (5.510, milestones.container_starting("onboot", "dhcpcd"), False),
        (6.290, milestones.container_ended("onboot", "dhcpcd", "exit code 0", 0.78), False),
        (6.300, milestones.container_starting("onboot", "broken"), False),
        (6.310, milestones.container_failed("onboot", "broken", "nope", at_start=True), True),
        (6.322, milestones.boot_done(6.322, 2, "crun", "12436 kB"), False),
        (6.850, milestones.service_started("getty", 133, 0.52), False),
        (6.927, milestones.service_started("redis", 135, 0.60), False),
    ]
    for stamp, message, error in steps:
        clock.now = stamp
        (console.error if error else console.info)(message)


def test_the_host_reads_every_stage_the_init_writes(tmp_path: Path) -> None:
    console_log = tmp_path / "console.log"
    write_boot(console_log)
    timeline = read_timeline(console_log.read_text())
    assert [stage.name for stage in timeline.stages] == [
        "kernel",
        "initrd unpack",
        "kernel, to /init",
        "Python start",
        "init",
        "modules round 1",
        "modules round 2",
        "init",
        "onboot dhcpcd",
        "onboot broken",
        "service redis started",  # in order of their start: redis's took longer
        "service getty started",
    ]
    assert timeline.complete and not timeline.from_qemu
    assert timeline.stage("initrd unpack") == Stage(
        "initrd unpack", 1.272773, pytest.approx(2.115567)
    )
    assert timeline.stage("modules round 1") == Stage("modules round 1", pytest.approx(4.8), 0.3)
    assert timeline.stage("onboot dhcpcd") == Stage("onboot dhcpcd", 5.51, pytest.approx(0.78))
    assert timeline.stage("service redis started") == Stage(
        "service redis started", pytest.approx(6.327), 0.6
    )
    assert init_rss_kb(console_log.read_text()) == 12436


def test_with_the_kernels_clock_zero_times_count_from_qemus_start(tmp_path: Path) -> None:
    console_log = tmp_path / "console.log"
    write_boot(console_log)
    timeline = read_timeline(console_log.read_text(), kernel_zero=1.1)
    assert timeline.from_qemu
    assert timeline.stages[0] == Stage("firmware", 0.0, 1.1)
    assert timeline.stage("kernel") == Stage("kernel", 1.1, pytest.approx(1.272773))
    assert timeline.stage("Python start") == Stage(
        "Python start", pytest.approx(5.102384), pytest.approx(0.734616)
    )


def test_a_boot_whose_services_have_not_all_started_is_not_complete(tmp_path: Path) -> None:
    console_log = tmp_path / "console.log"
    write_boot(console_log)
    text = console_log.read_text()
    cut = text[: text.rindex("\n", 0, text.index("service redis")) + 1]  # getty's started
    assert not boot_complete(cut)
    assert not read_timeline(cut).complete
    assert "had not finished" in as_table(read_timeline(cut))
    console, clock = guest_console(tmp_path / "more.log")
    clock.now = 7.0
    console.error(milestones.service_cannot_start("redis", "crun: no such file"))
    assert boot_complete(cut + (tmp_path / "more.log").read_text())  # settled: it failed


def test_a_milestone_after_a_shells_prompt_on_the_same_line_is_read(tmp_path: Path) -> None:
    # getty's shell shares the console: its prompt (and a terminal query) may come just
    # before the init's line, with no newline between them (seen in a CI boot).
    console_log = tmp_path / "console.log"
    write_boot(console_log)
    text = console_log.read_text()
    getty = text.index("[", text.rindex("\n", 0, text.index("service getty")))
    prompted = text[:getty] + "/ # \x1b[6n" + text[getty:]
    assert boot_complete(prompted)
    found = read_timeline(prompted)
    assert found.complete
    assert "service getty started" in [stage.name for stage in found.stages]


def test_a_quiet_kernel_leaves_the_init_stages(tmp_path: Path) -> None:
    console_log = tmp_path / "console.log"
    write_boot(console_log)
    quiet = "".join(
        line
        for line in console_log.read_text().splitlines(keepends=True)
        if "init:" in line or "Linux version" in line
    )
    names = [stage.name for stage in read_timeline(quiet).stages]
    assert names[0] == "modules round 1" and "kernel" not in names


def test_the_table_and_json_show_each_stage_with_its_start_and_duration(tmp_path: Path) -> None:
    console_log = tmp_path / "console.log"
    write_boot(console_log)
    timeline = read_timeline(console_log.read_text(), kernel_zero=1.0)
    table = as_table(timeline)
    assert table.splitlines()[0] == "boot timeline, seconds from QEMU's start:"
    assert table.splitlines()[1].split() == ["stage", "start", "duration"]
    assert "  onboot dhcpcd" in table and "6.51" in table  # 5.51 s + 1 s of firmware
    rows = as_json(timeline)
    assert rows[0] == {"stage": "firmware", "start": 0.0, "seconds": 1.0}
    assert len(rows) == len(table.splitlines()) - 2


def test_an_older_inits_lines_still_give_its_stages() -> None:
    """A system built before the init wrote its rounds and starts (one on main, #24)."""
    older = KERNEL + (
        "[    4.737] init: osbuilder 0.1.0 (Python 3.11.2, kernel 6.1.0-57-cloud-amd64)\n"
        "[    5.326] init: modules: 15 loaded in 575 ms (virtio_pci, virtio_net)\n"
        "[    6.290] init: onboot dhcpcd: exit code 0 (0.78 s)\n"
        "[    6.322] init: boot done at 6.32 s: 1 service(s) starting with crun; init RSS 1 kB\n"
        "[    6.927] init: service redis: started (pid 135)\n"
    )
    timeline = read_timeline(older)
    assert timeline.complete
    assert timeline.stage("modules") == Stage("modules", pytest.approx(4.751), 0.575)
    assert timeline.stage("onboot dhcpcd") == Stage(
        "onboot dhcpcd", pytest.approx(5.51), pytest.approx(0.78)
    )
    assert timeline.stage("service redis started") == Stage("service redis started", 6.927, 0.0)


def test_a_recorded_boot_has_every_stage_in_order() -> None:
    timeline = read_timeline(RECORDED.read_text(errors="replace"), kernel_zero=1.0)
    names = [stage.name for stage in timeline.stages]
    assert [name for name in names if name in REDIS_STAGES] == REDIS_STAGES
    assert timeline.complete
    assert all(stage.seconds >= 0 for stage in timeline.stages)
    starts = [stage.start for stage in timeline.stages]
    assert starts == sorted(starts)


def test_the_watch_puts_the_guests_clock_on_qemus(tmp_path: Path) -> None:
    """A line arrives after it was stamped: the smallest delay tells the clock's zero."""
    console_log = tmp_path / "console.log"
    started = time.monotonic()
    with ConsoleWatch(console_log, started) as watch:
        assert watch.kernel_zero is None
        time.sleep(0.3)  # QEMU and its firmware: the guest's clock starts now
        zero = time.monotonic() - started
        with console_log.open("a") as log:
            log.write("[    0.000000] Linux version 6.1.0\n")  # printed late, as the kernel does
            log.flush()
            time.sleep(0.2)
            log.write(f"[{time.monotonic() - started - zero:12.6f}] Run /init as init process\n")
            log.write("[    0.2")  # half a line: not read yet
            log.flush()
            time.sleep(0.1)
    assert watch.kernel_zero == pytest.approx(zero, abs=0.05)
    assert watch.text.endswith("as init process\n")
    assert [stage.name for stage in watch.timeline().stages] == ["firmware", "kernel"]
