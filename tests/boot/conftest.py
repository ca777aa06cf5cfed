"""Booting built systems under QEMU (TCG) for the boot tests."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.conftest import Packages


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def build_system(
    packages: Packages,
    spec: Path,
    output: Path,
    *formats: str,
    env: Mapping[str, str] | None = None,
    arch: str | None = None,
    options: Sequence[str] = (),
) -> Path:
    """`osbuilder build` of `spec` into `output` (kernel+initrd unless `formats` are
    given), in `env` and for `arch` if given, with more `options`; returns the outputs'
    prefix."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "osbuilder",
            "build",
            "--offline",
            "--cache",
            str(packages.store.root),
            "-o",
            str(output),
            *(option for name in formats for option in ("-f", name)),
            *(("--arch", arch) if arch else ()),
            *options,
            str(spec),
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    return output / spec.stem


def osbuilder(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "osbuilder", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def run_detached(
    target: Path, port: int, *options: str, guest_port: int = 6379
) -> subprocess.CompletedProcess[str]:
    """`osbuilder run --detach` of `target` under TCG, its `guest_port` (Redis's unless
    told) on `port`, until the guest answers there (or 240 s have passed); `options` go
    before `target`."""
    return osbuilder(
        "run",
        "--detach",
        "--accel",
        "tcg",
        "--net",
        "restricted",
        "--publish",
        f"{port}:{guest_port}",
        "--wait-tcp",
        str(guest_port),
        "--timeout",
        "240",
        *options,
        str(target),
    )


def run_foreground(
    target: Path, state: Path, *options: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    """`osbuilder run` of `target` in the foreground under TCG, without a network, until
    QEMU ends (within 240 s); its result and the console. `options` go before `target`."""
    result = osbuilder(
        "run",
        "--accel",
        "tcg",
        "--net",
        "none",
        "--timeout",
        "240",
        "--state",
        str(state),
        *options,
        str(target),
    )
    return result, (state / "console.log").read_text(errors="replace")


def run_until_poweroff(target: Path, state: Path, *options: str) -> str:
    """run_foreground, which must end with the guest powering itself off; its console."""
    result, console = run_foreground(target, state, *options)
    assert result.returncode == 0, console[-3000:]
    return console


def redis_cli(port: int, *command: str) -> str:
    """A real redis client's answer from the guest's Redis published on `port`."""
    return subprocess.run(
        ["redis-cli", "-p", str(port), *command],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()


def spec_text(packages: Packages, template: str) -> str:
    """A spec naming the repository's packages by short name: {init}, {getty} ..."""
    short = {name.split("/")[-1]: ref for name, ref in packages.references.items()}
    return template.format(**short)
