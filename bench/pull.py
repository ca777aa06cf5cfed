#!/usr/bin/env python3
"""Benchmark: cold `osbuilder pull` against `skopeo copy` of the same image.

A ~150 MB image of 6 layers of incompressible bytes is pushed to a
docker-registry on loopback; then, interleaved, 5 cold pulls each:
`osbuilder pull --cache EMPTY_DIR` and `skopeo copy docker://... oci:EMPTY_DIR`
(both write an OCI layout and verify every digest). Prints the median times,
the ratio osbuilder/skopeo (target <= 0.8) and osbuilder's peak RSS
(target <= 100 MB: blobs are streamed, never held in memory).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import OSBUILDER, byte_compile  # noqa: E402
from tests.integration.images import build_image, push, random_layers  # noqa: E402
from tests.integration.registry import running_registry  # noqa: E402

IMAGE_SIZE = 150 * 1000 * 1000
LAYERS = 6
RUNS = 5


def timed_run(command: list[str]) -> tuple[float, int]:
    """Run `command`; return (wall seconds, peak RSS in bytes) of that process alone."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({process.returncode}):\n{stderr}")
    return elapsed, usage.ru_maxrss * 1024


def build_and_push(layout: Path, host: str) -> None:
    image = build_image(layout, random_layers(LAYERS, IMAGE_SIZE, seed=7), tag="v1")
    push(image, host, "bench/big", "v1")


def main() -> int:
    byte_compile()
    with tempfile.TemporaryDirectory(prefix="bench-pull-") as tmp_name:
        tmp = Path(tmp_name)
        with running_registry(tmp / "registry") as registry:
            # Built in a child process: a child forked from a parent holding the image's
            # 150 MB would count them in its own peak RSS.
            builder = multiprocessing.get_context("spawn").Process(
                target=build_and_push, args=(tmp / "layout", registry.host)
            )
            builder.start()
            builder.join()
            if builder.exitcode != 0:
                raise SystemExit("building or pushing the image failed")
            ref = f"{registry.host}/bench/big:v1"
            size = sum(p.stat().st_size for p in (tmp / "layout/blobs/sha256").iterdir())
            ours, theirs, rss = [], [], []
            for run in range(RUNS):
                store, layout = tmp / f"store-{run}", tmp / f"skopeo-{run}"
                elapsed, peak = timed_run([*OSBUILDER, "pull", "--cache", str(store), ref])
                ours.append(elapsed)
                rss.append(peak)
                elapsed, _ = timed_run(
                    [
                        "skopeo",
                        "--insecure-policy",
                        "copy",
                        "--quiet",
                        "--src-tls-verify=false",
                        f"docker://{ref}",
                        f"oci:{layout}:v1",
                    ]
                )
                theirs.append(elapsed)
                shutil.rmtree(store)
                shutil.rmtree(layout)
    median_ours, median_theirs = statistics.median(ours), statistics.median(theirs)
    ratio = median_ours / median_theirs
    peak = max(rss)
    print(f"image: {size / 1e6:.0f} MB in {LAYERS} layers, {RUNS} interleaved cold pulls each")
    print(f"osbuilder pull: median {median_ours:.2f} s  ({', '.join(f'{t:.2f}' for t in ours)})")
    print(
        f"skopeo copy:    median {median_theirs:.2f} s  ({', '.join(f'{t:.2f}' for t in theirs)})"
    )
    print(f"ratio osbuilder/skopeo: {ratio:.2f} (target <= 0.8)")
    print(f"osbuilder peak RSS: {peak / 1e6:.1f} MB (target <= 100 MB)")
    return 0 if ratio <= 0.8 and peak <= 100e6 else 1


if __name__ == "__main__":
    raise SystemExit(main())
