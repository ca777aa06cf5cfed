#!/usr/bin/env python3
"""Benchmark: warm `osbuilder build` of examples/redis.yml against compressing its initrd.

The build: `python -m osbuilder build --offline` of examples/redis.yml to kernel+initrd,
every image already in the content store (the packages are built into it first when they
are missing), their layers unpacked into the store's snapshots by the warm-up build, as
any earlier build of those images leaves them. Its unavoidable work is writing the
initrd: the root tree as a cpio, compressed.

The floor: the same uncompressed cpio (the built initrd, decompressed once) compressed by
a fresh Python process with osbuilder's own `compressed_writer`, the very code and
parameters the build uses (zstd level ZSTD_LEVEL on ZSTD_WORKERS threads, or gzip -6,
1 MiB buffering), reading the cpio file and writing and fsyncing the output as the build
does its initrd. That is the honest floor: its output is checked to be byte-identical to
the build's initrd, so it does exactly the compression work the build must do, no less and
no more; and it pays what any Python build pays, interpreter start and the zstandard
import, and nothing else (checked: a module beyond the standard library, zstandard and
osbuilder's compression module would charge it for the build's own work). The zstd CLI at
the same level and thread count is timed too, as a reference only: it writes a
differently framed stream (not the same work) and does not fsync. So is
`osbuilder validate` of the same spec: what any osbuilder command that reads a spec pays
before it can do anything (the interpreter, the imports, validation). The target is the
build against that plus the floor: the build's own work over what it must do, without
charging the interpreter's start twice (the floor pays its own). And `osbuilder build
--json`, which also computes each output's sha256 as it is written (the plain build does
not: it prints no digests).

Five interleaved runs each (order alternating); prints the medians, the ratio
build / (validate + floor) (target <= 1.25), build/floor for reference, and the build's
peak RSS (target <= 150 MB). Then a second spec adds a
service whose image holds 1 GiB of random bytes (written with osbuilder's image writer
into a throwaway copy of the store made of hard links, so the real store is untouched);
it is built once the same way (which also unpacks that layer into a snapshot: a cold
build of it) and once with --compress none (which leaves osbuilder's own work: the
snapshot to the cpio), and their peak RSS is printed next to
the small one's: the target is the same bound, since contents are streamed, never held in
memory. Every big file is removed at the end.

Peak RSS is the measured process's own ru_maxrss, from os.wait4 in a tiny launcher (a
fresh `python -I -S`, ~9 MB): Linux carries the spawning process's high-water mark into
the child at exec (posix_spawn and vfork share its address space), so spawned from this
script, which has osbuilder and zstandard loaded, the child would be charged for them.
The launcher also does the timing, so its own start-up is not counted either.

Exit status: 0 when every target is met, 1 otherwise (or when something fails, or the
floor's output is not the build's initrd).
"""

from __future__ import annotations

import argparse
import filecmp
import gzip
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import zstandard

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    OSBUILDER,
    add_store_argument,
    build_packages,
    byte_compile,
)
from osbuilder.epoch import source_date_epoch  # noqa: E402
from osbuilder.formats.compression import GZIP_LEVEL, ZSTD_LEVEL, ZSTD_WORKERS  # noqa: E402
from osbuilder.oci.imagewriter import (  # noqa: E402
    ImageSpec,
    dir_info,
    file_info,
    new_layer,
    write_image,
)
from osbuilder.oci.platform import host_target  # noqa: E402
from osbuilder.oci.reference import parse_reference  # noqa: E402
from osbuilder.oci.store import ContentStore  # noqa: E402
from tests.conftest import trust_options  # noqa: E402

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

SPEC = REPO / "examples/redis.yml"
RUNS = 5
RATIO_TARGET = 1.25  # build / (validate + floor)
RSS_TARGET = 150e6
BIG_MIB = 1024
BIG_REFERENCE = "bench/random-bytes:1"
CHUNK = 1 << 20
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"

# Runs argv[1:] with its stdout joined to stderr, then prints its exit code, wall seconds
# and ru_maxrss (KiB) on stdout.
LAUNCHER = """\
import os, sys, time
start = time.perf_counter()
pid = os.posix_spawnp(
    sys.argv[1], sys.argv[1:], os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, 2, 1)]
)
_, status, usage = os.wait4(pid, 0)
elapsed = time.perf_counter() - start
print(os.waitstatus_to_exitcode(status), elapsed, usage.ru_maxrss)
"""

# The floor: argv[1] (the cpio) compressed as the build compresses it, into argv[2].
FLOOR = """\
import os, shutil, sys
from osbuilder.formats.compression import compressed_writer
with open(sys.argv[1], "rb") as source, open(sys.argv[2], "wb") as out:
    with compressed_writer(out, sys.argv[3]) as stream:
        shutil.copyfileobj(source, stream, 1 << 20)
    out.flush()
    os.fsync(out.fileno())
"""


# What the floor may import beyond the standard library: the compressor and its module.
FLOOR_MODULES = ("osbuilder", "osbuilder.formats", "osbuilder.formats.compression", "zstandard")
IMPORTS = """\
import sys
started = set(sys.modules)
from osbuilder.formats.compression import compressed_writer
new = set(sys.modules) - started
print(*sorted(m for m in new if m.partition(".")[0] not in sys.stdlib_module_names))
"""


class CommandFailed(Exception):
    pass


def floor_extra_imports() -> list[str]:
    """Modules the floor imports that compressing does not need (none, or the floor would
    be charged for osbuilder's other modules: the build's own cost)."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORTS], cwd=REPO, capture_output=True, text=True, check=True
    )
    return [
        name
        for name in result.stdout.split()
        if name not in FLOOR_MODULES and not name.startswith("zstandard.")
    ]


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss: int  # bytes


def measure(command: Sequence[str]) -> Measured:
    """Run `command` through the launcher; its wall time and its own peak RSS."""
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", LAUNCHER, *command],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    output = result.stderr.decode(errors="replace")
    fields = result.stdout.split()
    if result.returncode != 0 or len(fields) != 3:
        raise CommandFailed(f"the launcher of {command[0]} failed:\n{output}")
    code, seconds, maxrss_kib = int(fields[0]), float(fields[1]), int(fields[2])
    if code != 0:
        raise CommandFailed(f"{' '.join(command[:4])} ... failed ({code}):\n{output}")
    return Measured(seconds, maxrss_kib * 1024)


def build_command(
    store: Path,
    out: Path,
    name: str,
    specs: Sequence[Path],
    options: Sequence[str] = (),
    signed_in: Path | None = None,
) -> list[str]:
    """The build of `specs` from `store`, verifying the packages' signatures (made in
    `signed_in`, default `store`: a copy of a store is signed as the store is)."""
    return [
        *OSBUILDER,
        "build",
        *trust_options(signed_in or store),
        "--offline",
        "--cache",
        str(store),
        "-o",
        str(out),
        "--name",
        name,
        *options,
        *map(str, specs),
    ]


def progress(message: str) -> None:
    print(f"bench/build.py: {message}", file=sys.stderr, flush=True)


def warm_up(command: list[str], store: Path) -> None:
    """Build once (warming the page cache); first build the packages if that fails."""
    try:
        measure(command)
        return
    except CommandFailed as failure:
        first = str(failure)
    progress(
        f"the build failed ({first.splitlines()[-1] if first.strip() else '?'}); "
        f"building the packages into {store} (about a minute the first time)"
    )
    if (code := build_packages(store)) != 0:
        raise CommandFailed(f"osbuilder pkg build failed ({code})")
    measure(command)


def decompress(initrd: Path, cpio: Path) -> str:
    """Write the initrd's cpio to `cpio`; returns the initrd's compression."""
    with initrd.open("rb") as source:
        magic = source.read(4)
        source.seek(0)
        reader: BinaryIO
        if magic == ZSTD_MAGIC:
            compression = "zstd"
            reader = zstandard.ZstdDecompressor().stream_reader(source)
        elif magic.startswith(GZIP_MAGIC):
            compression = "gzip"
            reader = gzip.GzipFile(fileobj=source)  # type: ignore[assignment]
        else:
            raise CommandFailed(f"{initrd} starts with {magic!r}: neither zstd nor gzip")
        with reader, cpio.open("wb") as out:
            shutil.copyfileobj(reader, out, CHUNK)
    with cpio.open("rb") as check:
        if check.read(6) != b"070701":
            raise CommandFailed(f"{initrd} does not hold a newc cpio")
    return compression


class RandomBytes(io.RawIOBase):
    """`size` random bytes, made as they are read: never more than one read in memory."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        count = min(len(view), self._left)
        view[:count] = os.urandom(count)
        self._left -= count
        return count


def overlay_store(source: Path, target: Path) -> ContentStore:
    """A new store at `target` with the blobs and names of `source` (hard links when possible)."""
    blobs = target / "blobs/sha256"
    blobs.mkdir(parents=True)
    for blob in (source / "blobs/sha256").iterdir():
        try:
            os.link(blob, blobs / blob.name)
        except OSError:
            shutil.copy2(blob, blobs / blob.name)
    shutil.copy2(source / "index.json", target / "index.json")
    return ContentStore(target)


def add_random_image(store: ContentStore, size: int) -> str:
    """Tag BIG_REFERENCE: one layer holding `size` random bytes in /data/random.bin."""
    epoch = source_date_epoch()
    with new_layer(store) as layer:
        layer.add(dir_info("data", 0o755, epoch))
        data = io.BufferedReader(RandomBytes(size), CHUNK)
        layer.add(file_info("data/random.bin", size, 0o644, epoch), data)
    assert layer.result is not None
    manifest = write_image(
        store,
        [layer.result],
        ImageSpec(architecture=host_target().architecture, cmd=["/bin/true"], created=epoch),
    )
    reference = str(parse_reference(BIG_REFERENCE))
    store.tag(reference, manifest)
    return reference


@dataclass(frozen=True)
class BigBuilds:
    seconds: float  # writing the image
    builds: dict[str, tuple[Measured, int]]  # --compress value -> (build, initrd size)


def big_builds(store_root: Path, tmp: Path, size: int) -> BigBuilds:
    """Build redis.yml plus a service whose image holds `size` random bytes.

    Once as the small build (the kernel's compression, zstd; the new layer is unpacked then)
    and once with --compress none, which leaves only osbuilder's own work: the cpio.
    """
    # Next to the store, so that its blobs can be hard links.
    with tempfile.TemporaryDirectory(
        dir=store_root.parent, prefix=".bench-build-store-"
    ) as overlay_name:
        progress(f"writing a {size_label(size)} image of random bytes into a store copy")
        started = time.perf_counter()
        overlay = overlay_store(store_root, Path(overlay_name))
        reference = add_random_image(overlay, size)
        seconds = time.perf_counter() - started
        spec = tmp / "random-bytes.yml"
        spec.write_text(f"services:\n  - name: random-bytes\n    image: {reference}\n")
        builds: dict[str, tuple[Measured, int]] = {}
        for compress in ("default", "none"):
            progress(f"building redis.yml plus a service of that image (--compress {compress})")
            out = tmp / "out-big"
            options = [] if compress == "default" else ["--compress", compress]
            command = build_command(
                overlay.root, out, "redis-big", [SPEC, spec], options, signed_in=store_root
            )
            measured = measure(command)
            builds[compress] = (measured, (out / "redis-big-initrd.img").stat().st_size)
            shutil.rmtree(out)
    progress("big files removed")
    return BigBuilds(seconds, builds)


def median(values: Sequence[Measured]) -> float:
    return statistics.median(m.seconds for m in values)


def times(values: Sequence[Measured]) -> str:
    return ", ".join(f"{m.seconds:.2f}" for m in values)


def mb(size: float) -> str:
    return f"{size / 1e6:.1f} MB"


def size_label(size: int) -> str:
    return f"{size / 2**30:g} GiB" if size % 2**30 == 0 else f"{size / 2**20:g} MiB"


def max_rss(values: Sequence[Measured]) -> int:
    return max(m.peak_rss for m in values)


def main(argv: Sequence[str] | None = None) -> int:
    byte_compile()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_store_argument(parser)
    parser.add_argument("--runs", type=int, default=RUNS, help=f"runs of each (default {RUNS})")
    parser.add_argument(
        "--big-mib",
        type=int,
        default=BIG_MIB,
        help=f"size of the random image of the second build (default {BIG_MIB}; 0 skips it)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.big_mib < 0:
        parser.error("--runs must be at least 1 and --big-mib at least 0")
    store_root: Path = args.cache.resolve()
    try:
        return run(store_root, args.runs, args.big_mib * 1024 * 1024)
    except CommandFailed as failure:
        print(f"bench/build.py: {failure}", file=sys.stderr)
        return 1


def run(store_root: Path, runs: int, big_size: int) -> int:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp_name:
        tmp = Path(tmp_name)
        out = tmp / "out"
        build = build_command(store_root, out, "redis", [SPEC])
        progress("warm-up build")
        warm_up(build, store_root)
        initrd = out / "redis-initrd.img"
        cpio, floor_output = tmp / "initrd.cpio", tmp / "floor.out"
        compression = decompress(initrd, cpio)
        floor = [sys.executable, "-c", FLOOR, str(cpio), str(floor_output), compression]
        commands = {"build": build, "floor": floor}
        zstd_cli = shutil.which("zstd")
        if compression == "zstd" and zstd_cli:
            commands["zstd"] = [
                zstd_cli,
                "-q",
                "-f",
                f"-{ZSTD_LEVEL}",
                f"-T{ZSTD_WORKERS}",
                str(cpio),
                "-o",
                str(tmp / "cli.zst"),
            ]
        commands["validate"] = [*OSBUILDER, "validate", str(SPEC)]
        commands["build --json"] = build_command(store_root, out, "redis", [SPEC], ["--json"])
        launcher = measure(["true"]).peak_rss

        results: dict[str, list[Measured]] = {label: [] for label in commands}
        for index in range(runs):
            progress(f"run {index + 1}/{runs}")
            labels = list(commands) if index % 2 == 0 else list(reversed(commands))
            for label in labels:
                results[label].append(measure(commands[label]))
        identical = filecmp.cmp(floor_output, initrd, shallow=False)
        extra_imports = floor_extra_imports()
        initrd_size, cpio_size = initrd.stat().st_size, cpio.stat().st_size
        shutil.rmtree(out)
        cpio.unlink()

        big = big_builds(store_root, tmp, big_size) if big_size else None

    return report(
        Summary(
            store_root,
            runs,
            compression,
            initrd_size,
            cpio_size,
            identical,
            extra_imports,
            launcher,
            results,
        ),
        big,
        big_size,
        time.perf_counter() - started,
    )


@dataclass(frozen=True)
class Summary:
    store: Path
    runs: int
    compression: str
    initrd_size: int
    cpio_size: int
    identical: bool  # the floor's output is the build's initrd, byte for byte
    extra_imports: list[str]  # what the floor imports beyond compressing's needs
    launcher: int  # the peak RSS of `true` run by the launcher: what measuring adds at most
    results: dict[str, list[Measured]]


def report(summary: Summary, big: BigBuilds | None, big_size: int, seconds: float) -> int:
    """Print the figures; returns the exit status (0: every target met)."""
    results = summary.results
    builds, floors = results["build"], results["floor"]
    ratio = median(builds) / median(floors)
    peak = max(m.peak_rss for m in builds)
    if summary.compression == "zstd":
        how = f"zstd level {ZSTD_LEVEL}, {ZSTD_WORKERS} threads"
    else:
        how = f"gzip level {GZIP_LEVEL}"
    print(f"== bench/build.py: warm build of {SPEC.relative_to(REPO)} to kernel+initrd ==")
    print(f"store {summary.store}; {summary.runs} interleaved runs each")
    print(f"initrd: {mb(summary.initrd_size)}, {how}, of a {mb(summary.cpio_size)} cpio")
    rows = [("osbuilder build", builds), ("floor: compress the cpio", floors)]
    if "zstd" in results:
        rows.append(("zstd CLI (reference only)", results["zstd"]))
    rows.append(("osbuilder validate (ref.)", results["validate"]))
    rows.append(("build --json (ref.)", results["build --json"]))
    for label, values in rows:
        print(
            f"  {label:27} median {median(values):5.2f} s  peak RSS {mb(max_rss(values)):>9}  "
            f"({times(values)})"
        )
    print(f"  floor output identical to the build's initrd: {'yes' if summary.identical else 'NO'}")
    extra = ", ".join(summary.extra_imports)
    print(f"  floor imports only the compressor (and stdlib): {f'NO: {extra}' if extra else 'yes'}")
    print(f"  launcher baseline RSS: {mb(summary.launcher)} (the most measuring can add)")
    start_and_floor = median(results["validate"]) + median(floors)
    target_ratio = median(builds) / start_and_floor
    print(
        f"  build / floor: {ratio:.2f} ({median(builds):.2f} s vs {median(floors):.2f} s; "
        "reference only)"
    )
    checks = [
        (
            "ratio build/(validate + floor)",
            f"{target_ratio:.2f}",
            f"<= {RATIO_TARGET}",
            target_ratio <= RATIO_TARGET,
        ),
        ("peak RSS, redis.yml", mb(peak), f"<= {mb(RSS_TARGET)}", peak <= RSS_TARGET),
    ]
    if not summary.identical:
        checks.append(("floor is the build's compression", "no", "yes", False))
    if summary.extra_imports:
        checks.append(("floor imports only the compressor", "no", "yes", False))
    if big is not None:
        print(
            f"{size_label(big_size)} of random bytes written as an image in "
            f"{big.seconds:.1f} s; redis.yml plus a service of it, built once each way:"
        )
        for compress, (measured, initrd_bytes) in big.builds.items():
            label = f"default ({summary.compression})" if compress == "default" else "none"
            print(
                f"  --compress {label:15} {measured.seconds:5.1f} s  peak RSS "
                f"{mb(measured.peak_rss):>9} ({measured.peak_rss / peak - 1:+.0%} vs redis.yml)"
                f"  initrd {mb(initrd_bytes)}"
            )
            checks.append(
                (
                    f"peak RSS, + {size_label(big_size)}, --compress {label}",
                    mb(measured.peak_rss),
                    f"<= {mb(RSS_TARGET)}",
                    measured.peak_rss <= RSS_TARGET,
                )
            )
    print("summary:")
    for name, value, target, ok in checks:
        print(f"  {name:46} {value:>9}  target {target:11} {'ok' if ok else 'MISSED'}")
    print(f"benchmark time: {seconds:.0f} s")
    return 0 if all(ok for *_, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
