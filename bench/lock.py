#!/usr/bin/env python3
"""Benchmark: `osbuilder lock` of examples/redis.yml against a docker-registry on loopback.

The images of examples/redis.yml are osbuilder's own packages, which live in the content
store (they are built into it first when missing); they are pushed to a registry on
loopback (`osbuilder push`), and a copy of the spec names them there. Then, interleaved,
RUNS runs each of:

- `osbuilder lock` of the copy, cold: an empty content store and no lock beside the
  spec, so every image is resolved over HTTP (its manifest, an index's platform manifest,
  its config) and a new lock is written;
- the reference: `osbuilder validate` of the same copy, what any osbuilder command that
  reads the spec pays before it can do anything (the interpreter, the imports, loading
  and validating the spec). The ratio lock/validate is what resolving and writing the
  lock add on top of that.

Prints both medians and the ratio; the target is the lock's median under 1 s. Exit
status 0 when it is met, 1 otherwise (or when something fails).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import OSBUILDER, add_store_argument, build_packages, byte_compile  # noqa: E402
from osbuilder.oci.reference import parse_reference  # noqa: E402
from osbuilder.pkg.tag import template_reference  # noqa: E402
from osbuilder.spec import load_spec  # noqa: E402
from osbuilder.spec.images import image_references  # noqa: E402
from tests.integration.registry import running_registry  # noqa: E402

SPEC = REPO / "examples/redis.yml"
RUNS = 5
TARGET_SECONDS = 1.0


class CommandFailed(Exception):
    pass


def osbuilder(*args: str) -> None:
    result = subprocess.run([*OSBUILDER, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise CommandFailed(f"osbuilder {args[0]} failed ({result.returncode}):\n{result.stderr}")


def timed(*args: str) -> float:
    start = time.perf_counter()
    osbuilder(*args)
    return time.perf_counter() - start


def spec_in_registry(host: str, copy: Path) -> list[tuple[str, str]]:
    """Write `copy`: examples/redis.yml naming its images in the registry at `host`.
    Returns (reference in the store, reference in the registry) for each image."""
    loaded = load_spec([SPEC], template_reference)
    data: dict[str, Any] = loaded.spec.to_data()
    moved: dict[str, str] = {}
    for reference, path in image_references(loaded.spec):
        ref = parse_reference(reference)
        moved[str(ref)] = f"{host}/{ref.repository}:{ref.tag}"
        holder: Any = data
        for key in path[:-1]:
            holder = holder[key]
        holder[path[-1]] = moved[str(ref)]
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return sorted(moved.items())


def push_images(store: Path, images: list[tuple[str, str]]) -> None:
    try:
        osbuilder("pull", "--offline", "--cache", str(store), *(source for source, _ in images))
    except CommandFailed:
        print(f"building the packages into {store} (a few minutes the first time)", flush=True)
        if (code := build_packages(store)) != 0:
            raise CommandFailed(f"osbuilder pkg build failed ({code})") from None
    for source, destination in images:
        osbuilder("push", "--cache", str(store), source, "--to", destination)


def main(argv: Sequence[str] | None = None) -> int:
    byte_compile()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_store_argument(parser)
    parser.add_argument("--runs", type=int, default=RUNS, help=f"runs of each (default {RUNS})")
    args = parser.parse_args(argv)
    try:
        locks, validations, count = run(args.cache.resolve(), max(1, args.runs))
    except CommandFailed as failure:
        print(f"bench/lock.py: {failure}", file=sys.stderr)
        return 1
    lock, validate = statistics.median(locks), statistics.median(validations)
    print(f"== bench/lock.py: {SPEC.relative_to(REPO)}, {count} images on a loopback registry ==")
    print(f"osbuilder lock (cold):  median {lock:.3f} s  ({_list(locks)})")
    print(f"osbuilder validate:     median {validate:.3f} s  ({_list(validations)})")
    print(f"ratio lock/validate: {lock / validate:.2f} (reference)")
    print(f"lock: {lock:.3f} s (target < {TARGET_SECONDS:.0f} s)")
    return 0 if lock < TARGET_SECONDS else 1


def run(store: Path, runs: int) -> tuple[list[float], list[float], int]:
    with tempfile.TemporaryDirectory(prefix="bench-lock-") as tmp_name:
        tmp = Path(tmp_name)
        with running_registry(tmp / "registry") as registry:
            spec = tmp / "redis.yml"
            images = spec_in_registry(registry.host, spec)
            push_images(store, images)
            locks, validations = [], []
            for number in range(runs):
                spec.with_name(spec.name + ".lock").unlink(missing_ok=True)
                cold = ["--cache", str(tmp / f"store-{number}")]
                locks.append(timed("lock", *cold, str(spec)))
                validations.append(timed("validate", str(spec)))
            if not spec.with_name(spec.name + ".lock").is_file():
                raise CommandFailed("osbuilder lock wrote no lock")
    return locks, validations, len(images)


def _list(times: list[float]) -> str:
    return ", ".join(f"{t:.3f}" for t in times)


if __name__ == "__main__":
    raise SystemExit(main())
