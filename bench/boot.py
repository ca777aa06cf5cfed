#!/usr/bin/env python3
"""Benchmark: boot-to-ready of the Redis OS against the fastest this kernel can serve Redis.

Boot-to-ready is the wall time from starting `osbuilder run --detach --accel tcg
--net restricted --publish PORT:6379 --wait-tcp 6379` on examples/redis.yml (built
kernel+initrd) until `redis-cli -p PORT ping` answers PONG. The clock starts with the
osbuilder command; PING is polled right after it returns (a new redis-cli every POLL
seconds, several in flight, each given up after ATTEMPT_TIMEOUT: a connection QEMU's user
network accepted before the guest had an address would otherwise hang).

The floor, in the same run: the SAME kernel and the SAME initrd with /init replaced by a
few busybox lines that load the network modules (insmod, in modules.dep's order), set the
address QEMU's DHCP would give (10.0.2.15/24 on eth0), mount proc, sys and dev into the
redis container's root and exec redis-server there with chroot: no Python, no OCI
runtime, no supervision. It boots with osbuilder's own QEMU command line
(osbuilder.vm.qemu.qemu_command, without -daemonize) and is timed from QEMU's start to
PONG, polled the same way.

The same system built kernel+squashfs is booted the same way after each floor and its
median shown against the floor too (no target: the root is read from a disk as needed
instead of unpacked whole before /init).

RUNS interleaved runs each (osbuilder, floor, kernel+squashfs, osbuilder ...), a fresh
free port for every boot, every VM stopped after its run (and on any error). Then the
kernel+initrd system once more with `--mem 160` (unless `--no-small-memory`): whether it
answers PONG in that little memory (#24's target). Prints both medians, the ratio
osbuilder/floor (target under TCG: <= 1.3), the init's own RSS from the console's "boot
done" line (VmRSS of /proc/1/status; target <= 12 MB), the PONG with 160 MB, and the
median of each boot stage's start and duration (osbuilder/vm/timeline.py reads them from
the console, as `run --timeline` does; times on the guest's clock), which say where the
time goes.

The system is built first with `osbuilder build --offline --cache STORE`; when that
fails, the packages are built into STORE (`osbuilder pkg build pkg/* kernels/*`) and the
build is retried. `--system PREFIX` boots a kernel+initrd built elsewhere instead, and
`--baseline PREFIX` boots another one in the same runs (e.g. main's build, to see a
change's gain against the same floor). Exit status: 0 when every target is met, 1
otherwise or on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    OSBUILDER,
    add_store_argument,
    build_packages,
    byte_compile,
)
from osbuilder.formats.compression import ZSTD_LEVEL  # noqa: E402
from osbuilder.vm.control import alive  # noqa: E402
from osbuilder.vm.qemu import KernelBoot, Publish, VmConfig, qemu_command  # noqa: E402
from osbuilder.vm.timeline import Stage, init_rss_kb, kernel_stages, read_timeline  # noqa: E402
from tests.boot.conftest import run_detached  # noqa: E402
from tests.conftest import stop_process, trust_options  # noqa: E402

SPEC = REPO / "examples/redis.yml"
NAME = "redis"
RUNS = 5
RATIO_TARGET = 1.3
RSS_TARGET_MB = 12.0
SMALL_MEMORY_MB = 160  # the kernel+initrd system must answer PONG with this much
GUEST_PORT = 6379
GUEST_ADDRESS = "10.0.2.15/24"  # what QEMU user networking's DHCP gives the first guest
NET_MODULES = ("virtio_pci", "virtio_net")  # with everything they depend on
REDIS_ROOT = "containers/services/redis/lower"
REDIS_COMMAND = ("/usr/bin/redis-server", "/etc/redis/osbuilder.conf")
POLL = 0.1  # seconds between two redis-cli starts
ATTEMPT_TIMEOUT = 2.0  # a redis-cli that has not answered by then is given up
BOOT_TIMEOUT = 300.0

# The floor's own milestones (its /init prints them); the kernel's are read as for osbuilder.
FLOOR_MODULES = re.compile(r"^\[\s*([\d.]+)\] floor: modules loaded", re.M)
FLOOR_EXEC = re.compile(r"^\[\s*([\d.]+)\] floor: exec redis-server", re.M)


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


@dataclass
class Boot:
    seconds: float
    console: str


@dataclass
class Results:
    ours: list[Boot] = field(default_factory=list)
    floor: list[Boot] = field(default_factory=list)
    squashfs: list[Boot] = field(default_factory=list)  # kernel+squashfs: shown, no target
    baseline: list[Boot] = field(default_factory=list)  # --baseline: shown, no target
    small_memory: Boot | None = None  # the system with SMALL_MEMORY_MB, if it answered
    small_memory_failure: str = ""  # why not; empty when it was not tried


def progress(message: str) -> None:
    print(f"bench/boot.py: {message}", file=sys.stderr, flush=True)


def check_tools() -> str:
    for tool in ("qemu-system-x86_64", "zstd", "cpio", "find"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool}: command not found")
    redis_cli = shutil.which("redis-cli")
    if redis_cli is None:
        raise BenchError("redis-cli: command not found (apt-get install redis-tools)")
    return redis_cli


# --- building ---------------------------------------------------------------------------


def build_system(store: Path, out: Path, format_name: str = "kernel+initrd") -> Path:
    """Build examples/redis.yml to `format_name` in `out`; returns the output prefix."""
    command = [
        *OSBUILDER,
        "build",
        *trust_options(store),
        "--offline",
        "--cache",
        str(store),
        "-f",
        format_name,
        "-o",
        str(out),
        str(SPEC),
    ]
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if first.returncode != 0:
        last = (first.stderr.strip().splitlines() or ["?"])[-1]
        progress(f"the build failed ({last}); building the packages into {store}")
        if (code := build_packages(store)) != 0:
            raise BenchError(f"osbuilder pkg build failed ({code})")
        second = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
        if second.returncode != 0:
            raise BenchError(f"osbuilder build failed ({second.returncode}):\n{second.stderr}")
    return out / NAME


def pipeline(commands: Sequence[Sequence[str]], cwd: Path) -> None:
    """Run `commands` as a shell pipeline would (stdin of the first: /dev/null); check all."""
    processes: list[subprocess.Popen[bytes]] = []
    previous: int | None = subprocess.DEVNULL
    try:
        for index, command in enumerate(commands):
            last = index == len(commands) - 1
            process = subprocess.Popen(
                command, cwd=cwd, stdin=previous, stdout=None if last else subprocess.PIPE
            )
            if processes and processes[-1].stdout is not None:
                processes[-1].stdout.close()  # the next one holds it now
            processes.append(process)
            previous = None if process.stdout is None else process.stdout.fileno()
        for process in processes:
            process.wait()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for command, process in zip(commands, processes, strict=True):
        if process.returncode != 0:
            raise BenchError(f"{' '.join(command)} failed ({process.returncode})")


def module_order(root: Path, version: str, wanted: Sequence[str]) -> list[str]:
    """The .ko paths to insmod for `wanted` and their dependencies, as modprobe orders them."""
    directory = root / "lib/modules" / version
    dependencies: dict[str, list[str]] = {}
    for line in (directory / "modules.dep").read_text().splitlines():
        module, _, needs = line.partition(":")
        dependencies[module] = needs.split()
    by_name = {Path(path).name.split(".")[0].replace("-", "_"): path for path in dependencies}
    order: list[str] = []
    for name in wanted:
        if name not in by_name:
            raise BenchError(f"{name}: not in {directory}/modules.dep")
        path = by_name[name]
        # modules.dep lists every (transitive) dependency, each after those that need it.
        for module in [*reversed(dependencies[path]), path]:
            if module not in order:
                order.append(module)
    for module in order:
        if not (directory / module).is_file():
            raise BenchError(f"{directory / module}: missing (compressed modules?)")
    return [f"/lib/modules/{version}/{module}" for module in order]


def floor_init(modules: Sequence[str]) -> str:
    root = f"/{REDIS_ROOT}"
    lines = [
        "#!/bin/busybox sh",
        "# The floor of bench/boot.py: network modules, a static address, redis-server.",
        "B=/bin/busybox",
        "# Output to the serial console (/dev/console is tty0 with this command line).",
        "[ -e /dev/ttyS0 ] || $B mknod /dev/ttyS0 c 4 64",
        "exec </dev/ttyS0 >/dev/ttyS0 2>&1",
        "$B mount -t proc proc /proc",
        "$B mount -t sysfs sysfs /sys",
        *(f"$B insmod {module}" for module in modules),
        "n=0",
        'while [ ! -e /sys/class/net/eth0 ] && [ "$n" -lt 500 ]; do',
        "  $B usleep 10000; n=$((n+1))",
        "done",
        "read up idle < /proc/uptime",
        'echo "[$up] floor: modules loaded"',
        "$B ip link set lo up",
        f"$B ip addr add {GUEST_ADDRESS} dev eth0",
        "$B ip link set eth0 up",
        f"$B mount -t proc proc {root}/proc",
        f"$B mount -t sysfs sysfs {root}/sys",
        f"$B mount -t devtmpfs devtmpfs {root}/dev",
        "read up idle < /proc/uptime",
        'echo "[$up] floor: exec redis-server"',
        f"exec $B chroot {root} {' '.join(REDIS_COMMAND)}",
    ]
    return "\n".join(lines) + "\n"


def make_floor_initrd(initrd: Path, work: Path) -> Path:
    """The same initrd with /init replaced by the floor's script; returns its path."""
    root = work / "floor-root"
    root.mkdir()
    pipeline([["zstd", "-q", "-d", "-c", str(initrd)], ["cpio", "-i", "-d", "-m", "--quiet"]], root)
    for path in [*REDIS_COMMAND, "/proc", "/sys", "/dev"]:
        if not (root / REDIS_ROOT / path.lstrip("/")).exists():
            raise BenchError(f"the initrd has no {REDIS_ROOT}{path}")
    if not (root / "bin/busybox").is_file():
        raise BenchError("the initrd has no /bin/busybox")
    versions = sorted(p.name for p in (root / "lib/modules").iterdir())
    if len(versions) != 1:
        raise BenchError(f"expected the modules of one kernel in the initrd, found {versions}")
    init = root / "init"
    init.unlink()
    init.write_text(floor_init(module_order(root, versions[0], NET_MODULES)))
    init.chmod(0o755)
    floor = work / "floor-initrd.img"
    pipeline(
        [
            ["find", ".", "-mindepth", "1", "-print0"],
            ["cpio", "-o", "-H", "newc", "--null", "--quiet"],
            ["zstd", "-q", f"-{ZSTD_LEVEL}", "-o", str(floor)],
        ],
        root,
    )
    shutil.rmtree(root)
    return floor


# --- booting and timing ----------------------------------------------------------------


def free_port(used: set[int]) -> int:
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in used:
            used.add(port)
            return port


def wait_pong(redis_cli: str, port: int, start: float, alive: Callable[[], bool]) -> float:
    """Seconds from `start` until `redis-cli -p port ping` prints PONG."""
    attempts: list[tuple[float, subprocess.Popen[bytes]]] = []
    next_attempt = 0.0
    try:
        while True:
            now = time.perf_counter()
            if now - start > BOOT_TIMEOUT:
                raise BenchError(f"no PONG on port {port} within {BOOT_TIMEOUT:g} s")
            if now >= next_attempt:
                command = [redis_cli, "-h", "127.0.0.1", "-p", str(port), "ping"]
                attempts.append(
                    (
                        now,
                        subprocess.Popen(
                            command,
                            stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL,
                        ),
                    )
                )
                next_attempt = now + POLL
            for begun, process in list(attempts):
                if process.poll() is not None:
                    answered = time.perf_counter()
                    assert process.stdout is not None
                    output = process.stdout.read()
                    process.stdout.close()
                    attempts.remove((begun, process))
                    if output.strip() == b"PONG":
                        return answered - start
                elif now - begun > ATTEMPT_TIMEOUT:
                    process.kill()
                    process.wait()
                    assert process.stdout is not None
                    process.stdout.close()
                    attempts.remove((begun, process))
            if not alive():
                raise BenchError("the VM stopped before redis answered")
            time.sleep(0.01)
    finally:
        for _, process in attempts:
            process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()


def qemu_pid(state: Path) -> int | None:
    try:
        return int((state / "qemu.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def read_console(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.splitlines()[-lines:])


def boot_osbuilder(prefix: Path, state: Path, port: int, redis_cli: str, *options: str) -> Boot:
    start = time.perf_counter()
    try:
        started = run_detached(prefix, port, "--state", str(state), *options)
        if started.returncode != 0:
            raise BenchError(f"osbuilder run failed ({started.returncode}):\n{started.stderr}")
        pid = qemu_pid(state)
        try:
            seconds = wait_pong(redis_cli, port, start, lambda: alive(pid))
        except BenchError as error:
            console = tail(read_console(state / "console.log"))
            raise BenchError(f"osbuilder: {error}; the console ends:\n{console}") from None
    finally:
        stop_osbuilder(state)
    return Boot(seconds, read_console(state / "console.log"))


def stop_osbuilder(state: Path) -> None:
    pid = qemu_pid(state)
    if not alive(pid):
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(
            [*OSBUILDER, "stop", "--timeout", "15", str(state)],
            capture_output=True,
            check=False,
            timeout=40,
        )
    if pid is not None and alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def floor_command(boot: KernelBoot, state: Path, port: int) -> list[str]:
    """osbuilder's QEMU command line for this boot, in the foreground (no -daemonize)."""
    config = VmConfig(
        boot=boot,
        state=state,
        accel="tcg",
        network="restricted",
        publish=[Publish(port, GUEST_PORT)],
        detach=True,  # the console to the log only
    )
    return [word for word in qemu_command(config) if word != "-daemonize"]


def boot_floor(boot: KernelBoot, state: Path, port: int, redis_cli: str) -> Boot:
    state.mkdir(parents=True, exist_ok=True)
    console = state / "console.log"
    for stale in (console, state / "qmp.sock", state / "qemu.pid"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    command = floor_command(boot, state, port)
    with (state / "qemu.out").open("wb") as output:
        start = time.perf_counter()
        qemu = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
        )
        try:
            try:
                seconds = wait_pong(redis_cli, port, start, lambda: qemu.poll() is None)
            except BenchError as error:
                raise BenchError(
                    f"floor: {error}; the console ends:\n{tail(read_console(console))}"
                ) from None
        finally:
            stop_process(qemu)
    return Boot(seconds, read_console(console))


# --- reporting -------------------------------------------------------------------------


def floor_stages(console: str) -> list[Stage]:
    stages = kernel_stages(console)
    run_init = max((stage.end for stage in stages), default=None)  # the kernel ran /init
    modules = FLOOR_MODULES.search(console)
    exec_redis = FLOOR_EXEC.search(console)
    if run_init is not None and modules is not None and exec_redis is not None:
        loaded, execed = float(modules[1]), float(exec_redis[1])
        stages += [
            Stage("floor: modules", run_init, loaded - run_init),
            Stage("floor: address, mounts", loaded, execed - loaded),
        ]
    return stages


def median_stages(per_boot: list[list[Stage]]) -> str:
    """Each stage's median start and duration over the boots (a name seen more than once
    in a boot, as the init's own work is, numbered in order)."""
    found: dict[str, list[Stage]] = {}
    for stages in per_boot:
        seen: dict[str, int] = {}
        for stage in stages:
            seen[stage.name] = seen.get(stage.name, 0) + 1
            key = stage.name if seen[stage.name] == 1 else f"{stage.name} #{seen[stage.name]}"
            found.setdefault(key, []).append(stage)
    width = max((len(name) for name in found), default=5)
    rows = [f"    {'stage':<{width}}  {'start':>6}  {'duration':>8}"]
    for name, stages in sorted(
        found.items(), key=lambda item: statistics.median(s.start for s in item[1])
    ):
        start = statistics.median(stage.start for stage in stages)
        seconds = statistics.median(stage.seconds for stage in stages)
        rows.append(f"    {name:<{width}}  {start:>6.2f}  {seconds:>8.2f}")
    return "\n".join(rows)


def seconds_list(boots: list[Boot]) -> str:
    return ", ".join(f"{boot.seconds:.2f}" for boot in boots)


def report(results: Results) -> int:
    ours = [boot.seconds for boot in results.ours]
    floor = [boot.seconds for boot in results.floor]
    median_ours, median_floor = statistics.median(ours), statistics.median(floor)
    ratio = median_ours / median_floor
    rss = [init_rss_kb(boot.console) for boot in results.ours]
    known = [kb for kb in rss if kb is not None]
    print(f"boot-to-ready under TCG, {len(ours)} interleaved runs each (QEMU start to PONG)")
    print(f"osbuilder run: median {median_ours:.2f} s  ({seconds_list(results.ours)})")
    print(f"floor:         median {median_floor:.2f} s  ({seconds_list(results.floor)})")
    ratio_met = ratio <= RATIO_TARGET
    print(f"ratio osbuilder/floor: {ratio:.2f} (target <= {RATIO_TARGET:g}: {verdict(ratio_met)})")
    for label, boots in (("kernel+squashfs", results.squashfs), ("baseline", results.baseline)):
        if boots:
            median = statistics.median(boot.seconds for boot in boots)
            print(
                f"{label}: median {median:.2f} s  ({seconds_list(boots)}); "
                f"ratio to the floor {median / median_floor:.2f} (no target)"
            )
    rss_met = len(known) == len(rss) and max(known) * 1024 / 1e6 <= RSS_TARGET_MB
    if known:
        peak = max(known)
        print(
            f"init RSS (VmRSS of PID 1 at boot done): {peak * 1024 / 1e6:.1f} MB "
            f"({peak} kB, the largest of {len(known)} boots; target <= {RSS_TARGET_MB:g} MB: "
            f"{verdict(rss_met)})"
        )
    if len(known) != len(rss):
        print(f"init RSS: missing from {len(rss) - len(known)} console log(s)")
    baseline_rss = [kb for boot in results.baseline if (kb := init_rss_kb(boot.console))]
    if baseline_rss:
        print(f"baseline's init RSS: {max(baseline_rss) * 1024 / 1e6:.1f} MB (no target)")
    small = results.small_memory
    if small is not None:
        answer = f"PONG in {small.seconds:.2f} s ({verdict(True)})"
    elif results.small_memory_failure:
        answer = f"no PONG ({results.small_memory_failure}) ({verdict(False)})"
    else:
        answer = "not tried (--no-small-memory)"
    print(f"kernel+initrd with --mem {SMALL_MEMORY_MB}: {answer}")
    print("each stage, median start and duration on the guest's clock, s:")
    print("  osbuilder:")
    print(median_stages([read_timeline(boot.console).stages for boot in results.ours]))
    if results.baseline:
        print("  baseline:")
        print(median_stages([read_timeline(boot.console).stages for boot in results.baseline]))
    print("  floor:")
    print(median_stages([floor_stages(boot.console) for boot in results.floor]))
    if results.squashfs:
        print("  kernel+squashfs:")
        print(median_stages([read_timeline(boot.console).stages for boot in results.squashfs]))
    return 0 if ratio_met and rss_met and small is not None else 1


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


@dataclass
class Plan:
    store: Path
    runs: int
    system: Path | None = None  # a kernel+initrd prefix to boot instead of building one
    baseline: Path | None = None  # another one, booted in the same runs
    squashfs: bool = True
    small_memory: bool = True  # also boot it with SMALL_MEMORY_MB


def run(plan: Plan) -> int:
    redis_cli = check_tools()
    results = Results()
    used: set[int] = set()
    with tempfile.TemporaryDirectory(prefix="bench-boot-") as tmp_name:
        tmp = Path(tmp_name)
        if plan.system is None:
            progress(f"building {SPEC.relative_to(REPO)}")
        prefix = plan.system or build_system(plan.store, tmp / "out")
        squashfs_prefix = (
            build_system(plan.store, tmp / "squashfs", "kernel+squashfs") if plan.squashfs else None
        )
        progress("making the floor's initrd")
        ours_boot = KernelBoot.from_prefix(prefix)
        floor_boot = KernelBoot(
            ours_boot.kernel, make_floor_initrd(ours_boot.initrd, tmp), ours_boot.cmdline
        )
        others = [(prefix, "osbuilder", results.ours)]
        if plan.baseline is not None:
            others.append((plan.baseline, "baseline", results.baseline))
        if squashfs_prefix is not None:
            others.append((squashfs_prefix, "kernel+squashfs", results.squashfs))
        for number in range(1, plan.runs + 1):
            for system, label, boots in others[:1]:
                boots.append(boot_osbuilder(system, tmp / "state", free_port(used), redis_cli))
                progress(f"run {number}/{plan.runs}: {label} {boots[-1].seconds:.2f} s")
            boot = boot_floor(floor_boot, tmp / "floor-state", free_port(used), redis_cli)
            results.floor.append(boot)
            progress(f"run {number}/{plan.runs}: floor {boot.seconds:.2f} s")
            for system, label, boots in others[1:]:
                boots.append(boot_osbuilder(system, tmp / "state", free_port(used), redis_cli))
                progress(f"run {number}/{plan.runs}: {label} {boots[-1].seconds:.2f} s")
        if not plan.small_memory:
            return report(results)
        progress(f"osbuilder with --mem {SMALL_MEMORY_MB}")
        try:
            results.small_memory = boot_osbuilder(
                prefix, tmp / "state", free_port(used), redis_cli, "--mem", str(SMALL_MEMORY_MB)
            )
        except BenchError as failure:  # its last line says why (a panic's hint ...)
            results.small_memory_failure = str(failure).strip().splitlines()[-1]
    return report(results)


def main(argv: list[str] | None = None) -> int:
    byte_compile()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_store_argument(parser)
    parser.add_argument("--runs", type=int, default=RUNS, help=f"runs of each (default {RUNS})")
    parser.add_argument(
        "--system",
        type=Path,
        metavar="PREFIX",
        help="boot this kernel+initrd build of examples/redis.yml instead of building one",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="PREFIX",
        help="another kernel+initrd build of it (e.g. main's) booted in the same runs",
    )
    parser.add_argument(
        "--no-squashfs", action="store_true", help="leave out the kernel+squashfs boots"
    )
    parser.add_argument(
        "--no-small-memory",
        action="store_true",
        help=f"leave out the boot with --mem {SMALL_MEMORY_MB} (its target is then not met)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    plan = Plan(
        args.cache.resolve(),
        args.runs,
        system=args.system and args.system.resolve(),
        baseline=args.baseline and args.baseline.resolve(),
        squashfs=not args.no_squashfs,
        small_memory=not args.no_small_memory,
    )
    try:
        return run(plan)
    except BenchError as failure:
        print(f"bench/boot.py: {failure}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
