#!/usr/bin/env python3
"""Benchmark: `osbuilder pkg build pkg/redis`, its lock in force, against the bare
mmdebstrap call an unlocked build makes.

The bare call resolves the recipe's packages against Debian's mirror, downloads and
unpacks them, and writes its tar to a file. osbuilder instead downloads exactly the
.debs pkg/redis/build.lock names, checks each against its SHA256, indexes them as a
repository of their own (apt-ftparchive), lets mmdebstrap unpack them from there,
streams the tar into a normalised, gzip-compressed layer of the content store and adds
the image's files, config and manifest. Five interleaved runs each (machine and
network noise hit both alike); prints the median ratio osbuilder/bare. Target: <= 1.3.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from osbuilder.epoch import source_date_epoch  # noqa: E402
from osbuilder.pkg.debian import mmdebstrap_command  # noqa: E402
from osbuilder.pkg.lockfile import read_lock  # noqa: E402
from osbuilder.pkg.recipe import load_recipe  # noqa: E402

RUNS = 5
RECIPE = REPO / "pkg/redis"


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, env={**os.environ, **env}, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{command[0]} failed:\n{result.stderr.decode(errors='replace')}")
    return elapsed


def main() -> int:
    recipe = load_recipe(RECIPE).recipe
    assert recipe.debian is not None
    if read_lock(RECIPE) is None:
        raise SystemExit(f"{RECIPE.relative_to(REPO)} has no lock: the benchmark measures one")
    env = {"SOURCE_DATE_EPOCH": str(source_date_epoch())}
    ours, bare = [], []
    with tempfile.TemporaryDirectory(prefix="bench-pkg-") as tmp:
        for run in range(RUNS):
            store = Path(tmp) / f"store-{run}"
            ours.append(
                timed(
                    [
                        sys.executable,
                        "-m",
                        "osbuilder",
                        "pkg",
                        "build",
                        "--force",
                        "--cache",
                        str(store),
                        str(RECIPE),
                    ],
                    env,
                )
            )
            output = Path(tmp) / f"bare-{run}.tar"
            bare.append(timed(mmdebstrap_command(recipe.debian, "amd64", str(output)), env))
            output.unlink()
    ratio = statistics.median(ours) / statistics.median(bare)
    print(
        f"recipe: {RECIPE.relative_to(REPO)} ({', '.join(recipe.debian.packages)}, locked), "
        f"{RUNS} interleaved runs each"
    )
    print(
        f"osbuilder pkg build: median {statistics.median(ours):.2f} s  "
        f"({', '.join(f'{t:.2f}' for t in ours)})"
    )
    print(
        f"bare mmdebstrap:     median {statistics.median(bare):.2f} s  "
        f"({', '.join(f'{t:.2f}' for t in bare)})"
    )
    print(f"ratio osbuilder/mmdebstrap: {ratio:.2f} (target <= 1.3)")
    return 0 if ratio <= 1.3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
