#!/usr/bin/env python3
"""Benchmark: `osbuilder push openstack` against the least any Glance client does.

A real Keystone and Glance (Debian's python3-keystone and python3-glance, as in the
tests: tests/integration/cloud.py) run on loopback. The image is a
200 MB raw disk of random bytes with a GPT (so it also gets hw_firmware_type=uefi).
Interleaved, 5 runs each, every run under a new image name (so nothing is reused):

- `osbuilder push openstack`: reads the file once for its md5 and sha256, creates the
  image, streams the file, waits until Glance says active, checks Glance's checksum;
- the floor: a fresh Python process with only the standard library that gets a token
  from Keystone (POST), creates the image (POST), streams the file into it (PUT,
  chunked) and reads its status back (GET): what any client must do, with no hashing,
  no checking and no catalog lookup (it is given Glance's URL).

Prints the medians, the ratio (reference: no target was set) and osbuilder's peak RSS
(target <= 100 MB, whatever the image's size: the file is streamed).
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

from bench.common import OSBUILDER, byte_compile  # noqa: E402
from tests.integration.cloud import DEMO_PASSWORD, Cloud, running_cloud  # noqa: E402

IMAGE_BYTES = 200 << 20
RUNS = 5
RSS_TARGET = 100e6

# The floor: argv[1] Keystone's URL, argv[2] Glance's, argv[3] the demo user's password,
# argv[4] the image name, argv[5] the file.
FLOOR = """\
import json, sys, urllib.request
keystone, url, password, name, path = sys.argv[1:]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
domain = {"name": "Default"}
auth = {"auth": {
    "identity": {"methods": ["password"], "password": {"user": {
        "name": "demo", "domain": domain, "password": password}}},
    "scope": {"project": {"name": "demo", "domain": domain}},
}}
login = urllib.request.Request(
    keystone + "/v3/auth/tokens", method="POST", headers={"Content-Type": "application/json"},
    data=json.dumps(auth).encode(),
)
token = opener.open(login).headers["X-Subject-Token"]
create = urllib.request.Request(
    url + "/v2/images", method="POST",
    headers={"Content-Type": "application/json", "X-Auth-Token": token},
    data=json.dumps({"name": name, "disk_format": "raw", "container_format": "bare"}).encode(),
)
image = json.load(opener.open(create))
def chunks():
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            yield chunk
upload = urllib.request.Request(
    url + f"/v2/images/{image['id']}/file", method="PUT", data=chunks(),
    headers={"Content-Type": "application/octet-stream", "X-Auth-Token": token},
)
opener.open(upload).read()
check = urllib.request.Request(url + f"/v2/images/{image['id']}", headers={"X-Auth-Token": token})
status = json.load(opener.open(check))["status"]
assert status == "active", status
"""


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of `command`, which must succeed."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert process.stderr is not None
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command[:4]} failed:\n{stderr}")
    return elapsed, usage.ru_maxrss * 1024


def disk_image(path: Path) -> None:
    # Written a MiB at a time: Linux carries this process's peak RSS into the children
    # it starts (ru_maxrss), so holding the image here would be charged to them.
    with path.open("wb") as file:
        for _ in range(IMAGE_BYTES >> 20):
            file.write(os.urandom(1 << 20))
    subprocess.run(["sfdisk", "--quiet", str(path)], input="label: gpt\n", text=True, check=True)


def main() -> int:
    byte_compile()
    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp_name:
        tmp = Path(tmp_name)
        image = tmp / "system-efi.img"
        disk_image(image)
        with running_cloud(tmp / "cloud") as cloud:
            ours, floor, rss = run_interleaved(cloud, image)
    median_ours, median_floor = statistics.median(ours), statistics.median(floor)
    ratio = median_ours / median_floor
    peak = max(rss)
    print(f"== bench/push.py: {IMAGE_BYTES >> 20} MiB image to a real Keystone + Glance ==")
    print(f"osbuilder push openstack:     median {median_ours:.2f} s  ({_list(ours)})")
    print(f"floor (token, POST, PUT, GET): median {median_floor:.2f} s  ({_list(floor)})")
    print(f"ratio push/floor: {ratio:.2f} (reference: hashing, checking and the SDK's start)")
    print(f"osbuilder peak RSS: {peak / 1e6:.1f} MB (target <= {RSS_TARGET / 1e6:.0f} MB)")
    return 0 if peak <= RSS_TARGET else 1


def run_interleaved(cloud: Cloud, image: Path) -> tuple[list[float], list[float], list[int]]:
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(cloud.clouds_yaml)}
    ours: list[float] = []
    floor: list[float] = []
    rss: list[int] = []
    for run in range(RUNS):
        print(f"bench/push.py: run {run + 1}/{RUNS}", file=sys.stderr)
        push = [*OSBUILDER, "push", "openstack", "--cloud", cloud.name]
        elapsed, peak = timed([*push, "--img-name", f"ours-{run}", str(image)], env)
        ours.append(elapsed)
        rss.append(peak)
        python = [sys.executable, "-I", "-S", "-c", FLOOR]
        floor_args = [cloud.keystone, cloud.glance, DEMO_PASSWORD, f"floor-{run}", str(image)]
        elapsed, _ = timed([*python, *floor_args])
        floor.append(elapsed)
    return ours, floor, rss


def _list(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


if __name__ == "__main__":
    raise SystemExit(main())
