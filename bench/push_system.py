#!/usr/bin/env python3
"""Benchmark: `osbuilder push registry` of the Redis OS's kernel+initrd against `oras push`
of the same files, to a docker-registry on loopback.

The Redis OS is built once from the store (`osbuilder build --offline` of
examples/redis.yml under the tests' signature policy; the packages are built into the
store first when they are missing). Then, interleaved (each run's first pusher
alternating), 5 runs each, every push to a repository of its own (cold: the registry
has none of the files there):

- `osbuilder push registry REF redis-kernel redis-initrd.img redis-cmdline`: hashes each
  file, HEADs it, uploads it, the build record as config, the manifest;
- the oras Python SDK (`oras` from PyPI) in a fresh process: `push` of the same files
  with a config of the same kind (a build record typed as a system), which also hashes,
  HEADs and uploads each file, then the manifest.

Both artifacts are checked afterwards (the same layer digests and titles). Prints the
medians, the ratio osbuilder/oras (target <= 1.2) and osbuilder's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import OSBUILDER, add_store_argument, build_packages, byte_compile  # noqa: E402
from tests.conftest import trust_options  # noqa: E402
from tests.integration.registry import Registry, running_registry  # noqa: E402

RUNS = 5
TARGET = 1.2
FILES = ("redis-kernel", "redis-initrd.img", "redis-cmdline")
SYSTEM_TYPE = "application/vnd.osbuilder.system.v1+json"

# The oras SDK's push: argv[1] the registry's host, argv[2] the reference, argv[3] the
# config (a build record), argv[4:] the files.
ORAS = f"""\
import sys
import oras.provider
host, ref, config, *files = sys.argv[1:]
client = oras.provider.Registry(hostname=host, insecure=True)
client.session.trust_env = False  # no *_proxy variable: loopback only
response = client.push(
    target=ref,
    files=[path + ":application/octet-stream" for path in files],
    manifest_config=config + ":{SYSTEM_TYPE}",
    disable_path_validation=True,
    quiet=True,
)
assert response.status_code == 201, response.text
"""


def progress(message: str) -> None:
    print(f"bench/push_system.py: {message}", file=sys.stderr, flush=True)


def timed(command: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of `command`, which must succeed."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command[:5])} failed:\n{stderr}")
    return elapsed, usage.ru_maxrss * 1024


def build_redis(store: Path, out: Path) -> list[Path]:
    """The Redis OS's kernel+initrd, built from `store` (its packages built first when the
    build cannot find them)."""
    command = [
        *OSBUILDER, "build", *trust_options(store), "--offline", "--cache", str(store),
        "-o", str(out), str(REPO / "examples/redis.yml"),
    ]  # fmt: skip
    if subprocess.run(command, capture_output=True, check=False).returncode != 0:
        progress(f"building the packages into {store} (a few minutes the first time)")
        if build_packages(store) != 0:
            raise SystemExit("bench/push_system.py: osbuilder pkg build failed")
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    files = [out / name for name in FILES]
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise SystemExit(f"bench/push_system.py: the build wrote no {', '.join(missing)}")
    return files


def layers(registry: Registry, repository: str) -> list[tuple[str, str]]:
    """(title, digest) of each layer of REPOSITORY:1."""
    request = urllib.request.Request(
        f"{registry.url}/v2/{repository}/manifests/1",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        document = json.load(response)
    return sorted(
        (layer["annotations"]["org.opencontainers.image.title"], layer["digest"])
        for layer in document["layers"]
    )


def main(argv: list[str] | None = None) -> int:
    byte_compile()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_store_argument(parser)
    parser.add_argument("--runs", type=int, default=RUNS, help=f"runs of each (default {RUNS})")
    args = parser.parse_args(argv)
    store: Path = args.cache.resolve()
    with tempfile.TemporaryDirectory(prefix="bench-push-system-") as tmp_name:
        tmp = Path(tmp_name)
        progress("building the Redis OS")
        files = build_redis(store, tmp / "out")
        record = tmp / "record.json"
        record.write_text('{"architecture":"amd64","os":"linux","osbuilderVersion":"oras"}')
        size = sum(path.stat().st_size for path in files)
        ours: list[float] = []
        theirs: list[float] = []
        rss: list[int] = []
        with running_registry(tmp / "registry") as registry:
            for run in range(args.runs):
                progress(f"run {run + 1}/{args.runs}")
                push = [
                    *OSBUILDER, "push", "registry", "--cache", str(tmp / f"store-{run}"),
                    f"{registry.host}/bench/ours-{run}:1", *map(str, files),
                ]  # fmt: skip
                oras = [
                    sys.executable, "-c", ORAS, registry.host,
                    f"{registry.host}/bench/oras-{run}:1", str(record), *map(str, files),
                ]  # fmt: skip
                for first in (run % 2 == 0, run % 2 != 0):
                    if first:
                        elapsed, peak = timed(push)
                        ours.append(elapsed)
                        rss.append(peak)
                    else:
                        theirs.append(timed(oras)[0])
            pushed = layers(registry, "bench/ours-0")
            if pushed != layers(registry, "bench/oras-0") or [t for t, _ in pushed] != sorted(
                FILES
            ):
                raise SystemExit("bench/push_system.py: the two artifacts differ")
    median_ours, median_theirs = statistics.median(ours), statistics.median(theirs)
    ratio = median_ours / median_theirs
    print(f"== bench/push_system.py: the Redis OS's kernel+initrd ({size / 1e6:.1f} MB) ==")
    print(f"osbuilder push registry: median {median_ours:.2f} s  ({_list(ours)})")
    print(f"oras push (Python SDK):  median {median_theirs:.2f} s  ({_list(theirs)})")
    print(f"ratio osbuilder/oras: {ratio:.2f} (target <= {TARGET})")
    print(f"osbuilder peak RSS: {max(rss) / 1e6:.1f} MB")
    return 0 if ratio <= TARGET else 1


def _list(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


if __name__ == "__main__":
    raise SystemExit(main())
