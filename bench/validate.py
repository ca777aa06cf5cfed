#!/usr/bin/env python3
"""Benchmark: validate a generated 500-service spec.

Prints the median time of `osbuilder validate` on it (in-process and as a
command), and the ratio against the floor measured in the same run: parsing
the same text with libyaml (yaml.CSafeLoader), which any validator must do.
Target: under 1 s.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from osbuilder.spec import check_specs

SERVICES = 500
RUNS = 5


def generate_spec(services: int) -> str:
    lines = [
        "kernel:",
        "  image: osbuilder/kernel",
        '  cmdline: "console=ttyS0"',
        "init:",
        "  - osbuilder/init",
        "  - osbuilder/crun",
        "services:",
    ]
    for i in range(services):
        lines += [
            f"  - name: service-{i}",
            f"    image: registry.example.com:5000/team/service-{i}:1.{i}",
            "    capabilities: [CAP_NET_BIND_SERVICE, CAP_CHOWN, CAP_SETUID, CAP_SETGID]",
            "    net: host",
            "    pid: new",
            f"    env: [PORT={8000 + i}, MODE=production]",
            "    binds.add:",
            f"      - /var/lib/service-{i}:/data",
            "    tmpfs: [/tmp]",
            "    rlimits: ['nofile,1024,4096']",
            "    readonly: true",
            f"    uid: {1000 + i}",
            "    resources:",
            "      memory: {limit: 268435456}",
            "      pids: {limit: 128}",
        ]
    return "\n".join(lines) + "\n"


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "services.yml"
        text = generate_spec(SERVICES)
        path.write_text(text)

        def validate() -> None:
            loaded, diagnostics = check_specs([path])
            assert loaded is not None, diagnostics

        def parse() -> None:
            yaml.load(text, Loader=yaml.CSafeLoader)

        def command() -> None:
            subprocess.run(
                [sys.executable, "-m", "osbuilder", "validate", str(path)],
                check=True,
                capture_output=True,
            )

        validate()  # warm the imports
        validate_times, parse_times, command_times = [], [], []
        for _ in range(RUNS):  # interleaved, so machine noise hits both alike
            validate_times.append(timed(validate))
            parse_times.append(timed(parse))
            command_times.append(timed(command))

    v, p, c = (statistics.median(t) for t in (validate_times, parse_times, command_times))
    print(f"spec: {SERVICES} services, {len(text) // 1024} KiB, {text.count(chr(10))} lines")
    print(f"validate (in-process), median of {RUNS}: {v:.3f} s")
    print(f"osbuilder validate (command), median of {RUNS}: {c:.3f} s")
    print(f"floor, libyaml parse only, median of {RUNS}: {p:.3f} s")
    print(f"ratio validate/parse: {v / p:.2f}")
    ok = c < 1.0
    print(f"target: command under 1 s: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
