"""Command line, power button events, runtime choice and errors, hostname, the reaper."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import struct
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from osbuilder.guest.cmdline import BootOptions, parse_cmdline
from osbuilder.guest.control import tail_lines
from osbuilder.guest.logpump import LogLimit, OutputPump
from osbuilder.guest.network import default_hostname, first_mac
from osbuilder.guest.power import KEY_POWER, has_bit, power_button_devices, power_presses
from osbuilder.guest.reaper import Reaper, ReaperThread, describe_exit
from osbuilder.guest.runtime import OciRuntime, choose_runtime, reason_from_log, sealed_copy
from osbuilder.guest.spawn import CommandResult, CommandRunner

from .fakes import RecordingConsole


def test_cmdline_options() -> None:
    options = parse_cmdline(
        "console=ttyS0 osbuilder.runtime=runc osbuilder.shutdown_timeout=2.5 "
        "osbuilder.debug osbuilder.modules=wireguard,dm_crypt osbuilder.modules_skip=sr_mod quiet "
        "osbuilder.rootwait=5 osbuilder.log_size=64K osbuilder.log_files=0"
    )
    assert options == BootOptions(
        runtime="runc",
        shutdown_timeout=2.5,
        debug=True,
        extra_modules=("wireguard", "dm_crypt"),
        skipped_modules=("sr_mod",),
        log_limit=LogLimit(64 * 1024, 0),
    )
    assert parse_cmdline("osbuilder.log_size=0").log_limit == LogLimit(0, 2)  # no limit
    assert parse_cmdline("console=ttyS0") == BootOptions()


def test_bad_cmdline_values_are_reported_not_fatal() -> None:
    options = parse_cmdline(
        "osbuilder.runtime=docker osbuilder.shutdown_timeout=soon osbuilder.colour=1 "
        "osbuilder.rootwait=1.5 osbuilder.log_size=1T osbuilder.log_files=-1"
    )
    assert options.runtime == "" and options.shutdown_timeout == 10.0
    assert options.log_limit == LogLimit(1024 * 1024, 2)
    assert options.problems == (
        "osbuilder.runtime=docker: expected crun or runc",
        "osbuilder.shutdown_timeout=soon: expected seconds",
        "osbuilder.rootwait=1.5: expected whole seconds",
        "osbuilder.log_size=1T: expected bytes, or with K, M or G",
        "osbuilder.log_files=-1: expected a number of old files",
        "osbuilder.colour: unknown option",
    )


def test_power_button_capability_bits_and_events(tmp_path: Path) -> None:
    # A real "Power Button" device: key bitmap "10000000000000 0" has bit 116 set.
    assert has_bit("10000000000000 0", KEY_POWER)
    assert not has_bit("0", KEY_POWER)
    for name, keys in (("event0", "10000000000000 0"), ("event1", "402000000 3803078f800d001")):
        (tmp_path / "sys/class/input" / name / "device/capabilities").mkdir(parents=True)
        (tmp_path / "sys/class/input" / name / "device/capabilities/key").write_text(keys + "\n")
    assert power_button_devices(tmp_path / "sys", Path("/dev")) == [Path("/dev/input/event0")]
    event = struct.Struct("@llHHi")
    press = event.pack(1, 0, 1, KEY_POWER, 1) + event.pack(1, 0, 0, 0, 0)
    release = event.pack(1, 0, 1, KEY_POWER, 0)
    assert power_presses(press + release) == 1
    assert power_presses(release) == 0


def test_runtime_choice() -> None:
    both = {"/usr/bin/crun", "/usr/sbin/runc"}.__contains__
    assert choose_runtime("", both) == "/usr/bin/crun"
    assert choose_runtime("runc", both) == "/usr/sbin/runc"
    assert choose_runtime("crun", {"/usr/bin/runc"}.__contains__) == "/usr/bin/runc"
    assert choose_runtime("", lambda path: False) is None


def test_runtime_reasons_from_logs() -> None:
    runc = (
        'time="2026-01-01T00:00:00Z" level=error msg="runc create failed: unable to start '
        'container process: exec: \\"/bin/nope\\": stat /bin/nope: no such file or directory"\n'
    )
    assert reason_from_log(runc) == (
        'runc create failed: unable to start container process: exec: "/bin/nope": '
        "stat /bin/nope: no such file or directory"
    )
    assert reason_from_log("executable file `/bin/nope` not found in $PATH: No such file\n") == (
        "executable file `/bin/nope` not found in $PATH: No such file"
    )


class RecordingRunner:
    def __init__(self) -> None:
        self.argvs: list[list[str]] = []
        self.executables: list[str | None] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 60.0,
        output_fd: int | None = None,
        executable: str | None = None,
    ) -> CommandResult:
        self.argvs.append(list(argv))
        self.executables.append(executable)
        return CommandResult(tuple(argv), 0, "", "")


def test_runtime_command_lines() -> None:
    runner = RecordingRunner()
    runtime = OciRuntime("/usr/bin/crun", runner, global_args=["--root=/run/x"], no_pivot=True)
    runtime.create("redis", Path("/b"), Path("/p"), Path("/l"), 5)
    runtime.start("redis", Path("/l"))
    runtime.run_detached("getty", Path("/g"), Path("/q"), Path("/m"), 6)
    runtime.kill("redis", "TERM")
    runtime.delete("redis", force=True)
    assert runner.argvs == [
        [
            "/usr/bin/crun",
            "--root=/run/x",
            "--log=/l",
            "create",
            "--bundle=/b",
            "--pid-file=/p",
            "--no-pivot",
            "redis",
        ],
        ["/usr/bin/crun", "--root=/run/x", "--log=/l", "start", "redis"],
        [
            "/usr/bin/crun",
            "--root=/run/x",
            "--log=/m",
            "run",
            "--detach",
            "--bundle=/g",
            "--pid-file=/q",
            "--no-pivot",
            "getty",
        ],
        ["/usr/bin/crun", "--root=/run/x", "kill", "redis", "TERM"],
        ["/usr/bin/crun", "--root=/run/x", "delete", "--force", "redis"],
    ]


def test_hostname_from_the_mac(tmp_path: Path) -> None:
    for name, mac in (("lo", "00:00:00:00:00:00"), ("eth0", "52:54:00:12:AB:56")):
        (tmp_path / "class/net" / name).mkdir(parents=True)
        (tmp_path / "class/net" / name / "address").write_text(mac + "\n")
    assert first_mac(tmp_path) == "52:54:00:12:AB:56"
    assert default_hostname(first_mac(tmp_path)) == "osbuilder-12ab56"
    assert default_hostname(None) == "osbuilder"


def test_exit_descriptions() -> None:
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(-15) == "killed by SIGTERM"
    assert describe_exit(None) == "still running"


def test_reaper_keeps_an_exit_that_came_before_the_watch() -> None:
    statuses = [(4242, 3 << 8), (0, 0)]
    reaper = Reaper(lambda pid, flags: statuses.pop(0) if statuses else (0, 0))
    assert reaper.reap() == 1
    reaper.watch(4242)
    assert reaper.wait(4242, 0) == 3


@pytest.fixture
def reaper() -> Iterator[Reaper]:
    reaping = Reaper()
    thread = ReaperThread(reaping, interval=0.005)
    thread.start()
    yield reaping
    thread.stop()


def test_command_runner_captures_output_and_exit_code(reaper: Reaper) -> None:
    runner = CommandRunner(reaper)
    result = runner.run(["/bin/sh", "-c", "echo out; echo err >&2; exit 4"])
    assert (result.exit_code, result.stdout, result.stderr) == (4, "out\n", "err\n")
    started = time.monotonic()
    slow = runner.run(["/bin/sleep", "5"], timeout=0.1)
    assert slow.exit_code is None and time.monotonic() - started < 2


def test_a_sealed_copy_runs_and_cannot_be_changed(reaper: Reaper) -> None:
    """The runtime's commands run from such a copy: crun then does not copy itself again."""
    true = shutil.which("true")
    assert true is not None
    copy = sealed_copy(true)
    assert copy != true
    with open(copy, "rb") as file:
        seals = fcntl.fcntl(file.fileno(), fcntl.F_GET_SEALS)
    assert seals == fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
    writable = os.open(copy, os.O_WRONLY)
    try:
        with pytest.raises(PermissionError):
            os.write(writable, b"\0")
    finally:
        os.close(writable)
    assert CommandRunner(reaper).run(["true"], executable=copy).exit_code == 0
    # Without a file to copy, the runtime runs as it is (and copies itself).
    assert sealed_copy("/nonexistent/crun") == "/nonexistent/crun"


def test_children_start_with_default_signals(reaper: Reaper) -> None:
    old = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
    try:
        result = CommandRunner(reaper).run(
            ["/bin/sh", "-c", "grep -E '^Sig(Blk|Ign)' /proc/self/status"]
        )
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    blocked = int(result.stdout.split("SigBlk:")[1].split()[0], 16)
    ignored = int(result.stdout.split("SigIgn:")[1].split()[0], 16)
    assert blocked == 0
    assert not ignored & (1 << (signal.SIGPIPE - 1))


def test_output_pump_shows_a_partial_line_after_a_pause(tmp_path: Path) -> None:
    console = RecordingConsole()
    pump = OutputPump("getty", tmp_path / "getty.log", console)
    os.write(pump.write_fd, b"login: ")
    console.wait_for("getty: login: ", timeout=2)
    os.write(pump.write_fd, b"root\r\nbye\n")
    pump.close_writer()
    assert pump.join(2)
    assert console.lines == ["getty: login: ", "getty: root", "getty: bye"]
    assert (tmp_path / "getty.log").read_bytes() == b"login: root\r\nbye\n"


def test_output_pump_says_once_that_the_log_is_full_and_goes_on(tmp_path: Path) -> None:
    console = RecordingConsole()
    pump = OutputPump("redis", Path("/dev/full"), console)  # every write: ENOSPC
    for line in (b"one\n", b"two\n", b"three\n"):
        os.write(pump.write_fd, line)
        console.wait_for(f"redis: {line.decode().strip()}", timeout=2)
    pump.close_writer()
    assert pump.join(2)
    errors = [line for line in console.lines if "***" in line]
    assert len(errors) == 1  # once, not once per chunk
    assert errors[0].endswith(
        "init: *** redis: cannot write /dev/full: No space left on device; "
        "its output goes on to the console only ***"
    )
    assert [line for line in console.lines if "***" not in line] == [
        "redis: one",
        "redis: two",
        "redis: three",
    ]


def pump_lines(pump: OutputPump, console: RecordingConsole, lines: list[bytes]) -> None:
    """Each line through the pump as a chunk of its own (it is on the console before the
    next is written), then the pump closed and drained."""
    for line in lines:
        os.write(pump.write_fd, line)
        console.wait_for(f"{pump.label}: {line.decode().strip()}", timeout=2)
    pump.close_writer()
    assert pump.join(2)


def test_a_log_is_rotated_past_its_limit_and_the_oldest_dropped(tmp_path: Path) -> None:
    log = tmp_path / "chatty.log"
    log.write_bytes(b"from the last run\n")  # a restarted container's: counted
    lines = [b"line %02d of the chatty service's output\n" % n for n in range(12)]  # 40 B
    console = RecordingConsole()
    pump_lines(OutputPump("chatty", log, console, LogLimit(100, 2)), console, lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "chatty.log",
        "chatty.log.1",
        "chatty.log.2",
    ]
    assert all(p.stat().st_size <= 100 for p in tmp_path.iterdir())
    kept = b"".join((tmp_path / n).read_bytes() for n in ("chatty.log.2", "chatty.log.1"))
    assert kept + log.read_bytes() == b"".join(lines[-6:])  # in order, nothing torn
    # `osbuilder-ctl logs` reads across the last rotation.
    assert tail_lines(log, 3) == [line.decode().strip() for line in lines[-3:]]
    assert tail_lines(log, 100) == [line.decode().strip() for line in lines[-4:]]


def test_output_read_in_one_chunk_is_split_at_lines_between_files(tmp_path: Path) -> None:
    lines = [b"line %02d of the chatty service's output\n" % n for n in range(5)]  # 40 B
    console = RecordingConsole()
    pump = OutputPump("chatty", tmp_path / "chatty.log", console, LogLimit(100, 3))
    os.write(pump.write_fd, b"".join(lines))  # read in one chunk of 200 bytes
    pump.close_writer()
    assert pump.join(2)
    files = [tmp_path / n for n in ("chatty.log.2", "chatty.log.1", "chatty.log")]
    assert [f.read_bytes() for f in files] == [lines[0] + lines[1], lines[2] + lines[3], lines[4]]
    # A line longer than a whole file is cut (the console still has it whole).
    pump = OutputPump("long", tmp_path / "long.log", console, LogLimit(30, 1))
    os.write(pump.write_fd, lines[0])
    pump.close_writer()
    assert pump.join(2)
    assert (tmp_path / "long.log.1").read_bytes() + (tmp_path / "long.log").read_bytes() == (
        lines[0]
    )
    assert (tmp_path / "long.log.1").stat().st_size == 30


def test_a_log_without_old_files_or_without_a_limit(tmp_path: Path) -> None:
    lines = [b"line %04d\n" % n for n in range(9)]  # 10 B each
    for limit, expected in ((LogLimit(25, 0), lines[-1:]), (LogLimit(0, 0), lines)):
        console = RecordingConsole()
        log = tmp_path / f"{limit.max_bytes}.log"
        pump_lines(OutputPump(str(limit.max_bytes), log, console, limit), console, lines)
        assert log.read_bytes() == b"".join(expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.log", "25.log"]


def test_crun_runs_from_one_sealed_copy_and_runc_from_its_own_binary(tmp_path: Path) -> None:
    binaries = {}
    for name in ("crun", "runc"):
        binaries[name] = tmp_path / name
        shutil.copyfile("/bin/true", binaries[name])
    crun_runner, runc_runner = RecordingRunner(), RecordingRunner()
    crun = OciRuntime(str(binaries["crun"]), crun_runner)
    runc = OciRuntime(str(binaries["runc"]), runc_runner)
    for runtime in (crun, runc):
        runtime.kill("redis", "TERM")
        runtime.delete("redis", force=True)
    [copy, again] = crun_runner.executables
    assert copy == again and copy is not None and copy.startswith(f"/proc/{os.getpid()}/fd/")
    assert runc_runner.executables == [str(binaries["runc"])] * 2
