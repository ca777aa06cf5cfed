"""Booting built systems under QEMU (TCG) for the boot tests."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from osbuilder.vm.qemu import VmConfig, qemu_command
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


# What QEMU's guestfwd runs for each connection to the metadata service, the connection on
# its stdin and stdout: one HTTP/1.0 answer from the files of the directory argv[1].
METADATA_SERVICE = """\
import os, sys
root = os.path.realpath(sys.argv[1])
request = sys.stdin.buffer.readline().split()
while sys.stdin.buffer.readline().strip():
    pass
path = os.path.realpath(os.path.join(root, request[1].decode().lstrip("/")))
if path.startswith(root + "/") and os.path.isfile(path):
    body = open(path, "rb").read()
    head = b"HTTP/1.0 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body)
else:
    body, head = b"", b"HTTP/1.0 404 Not Found\\r\\nContent-Length: 0\\r\\n\\r\\n"
sys.stdout.buffer.write(head + body)
"""


def metadata_service_command(config: VmConfig, service: Path) -> list[str]:
    """osbuilder's QEMU command line for `config` (made with detach, so the console goes to
    its log only), in the foreground, with an OpenStack metadata service at
    169.254.169.254 serving the files under `service`, as Nova's network gives one:
    QEMU's user network on 169.254.0.0/16, the service's connections going to a local
    program. Nothing leaves the host. Creates config.state."""
    config.state.mkdir(parents=True)
    server = config.state / "service.py"
    server.write_text(METADATA_SERVICE)
    command = [word for word in qemu_command(config) if word != "-daemonize"]
    nic = command.index("-nic") + 1
    command[nic] += (
        ",net=169.254.0.0/16"
        f",guestfwd=tcp:169.254.169.254:80-cmd:{sys.executable} {server} {service}"
    )
    return command
