"""Booting built systems under QEMU (TCG) for the boot tests."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from osbuilder.vm.qemu import VmConfig, qemu_command
from tests.conftest import TRUST_OPTIONS, Packages


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
            *TRUST_OPTIONS,
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
    target: Path, port: int | None, *options: str, guest_port: int = 6379
) -> subprocess.CompletedProcess[str]:
    """`osbuilder run --detach` of `target` under TCG, its `guest_port` (Redis's unless
    told) on `port`, until the guest answers there (or 240 s have passed); with no `port`,
    until QEMU has started. `options` go before `target`."""
    published = (
        () if port is None else ("--publish", f"{port}:{guest_port}", "--wait-tcp", str(guest_port))
    )
    return osbuilder(
        "run",
        "--detach",
        "--accel",
        "tcg",
        "--net",
        "restricted",
        *published,
        "--timeout",
        "240",
        *options,
        str(target),
    )


def answered_ping(target: Path, state: Path, *options: str) -> str:
    """`target` booted detached (with `options`) until Redis answers PONG, then powered
    off; its console."""
    port = free_port()
    started = run_detached(target, port, *options)
    try:
        console = (state / "console.log").read_text(errors="replace")
        assert started.returncode == 0, started.stderr + console[-3000:]
        assert redis_cli(port, "ping") == "PONG"
    finally:
        stopped = osbuilder("stop", str(state))
    assert stopped.stdout.strip() == f"{state}: powered off", stopped.stderr
    return (state / "console.log").read_text(errors="replace")


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


# The start of most test systems' specs: the kernel on the serial console, the init, crun.
BASE_SPEC = """
kernel:
  image: {kernel}
  cmdline: "console=ttyS0"
init: [{init}, {crun}]
"""
# An onboot entry: an address from QEMU's user network, before the steps that need one.
DHCPCD_ONBOOT = """
  - name: dhcpcd
    image: {dhcpcd}
    command: ["/sbin/dhcpcd", "--nobackground", "-f", "/dhcpcd.conf", "-1"]
"""


def spec_text(packages: Packages, template: str) -> str:
    """A spec naming the repository's packages by short name: {init}, {getty} ..."""
    short = {name.split("/")[-1]: ref for name, ref in packages.references.items()}
    return template.format(**short)


def build_template(packages: Packages, template: str, work: Path, *formats: str) -> Path:
    """WORK/NAME.yml from `template` (spec_text), built into WORK/out (build_system);
    returns the outputs' prefix. NAME is WORK's name."""
    work.mkdir(parents=True, exist_ok=True)
    spec = work / f"{work.name}.yml"
    spec.write_text(spec_text(packages, template))
    return build_system(packages, spec, work / "out", *formats)


# What QEMU's guestfwd runs for each connection to the metadata service, the connection on
# its stdin and stdout: one HTTP/1.0 answer from the files of the directory argv[1], with
# the rules of the clouds whose paths those are. EC2's (DIR/latest/...) wants IMDSv2's
# session token, given for a PUT to /latest/api/token, unless DIR/imdsv1-only exists
# (then that PUT is refused, as by a service without v2); Compute Engine's
# (DIR/computeMetadata/...) wants, and answers with, Metadata-Flavor: Google.
METADATA_SERVICE = """\
import os, sys
root = os.path.realpath(sys.argv[1])
method, target = sys.stdin.buffer.readline().split()[:2]
headers = {}
while line := sys.stdin.buffer.readline().strip():
    name, _, value = line.decode().partition(":")
    headers[name.strip().lower()] = value.strip()
path = target.decode().partition("?")[0]
token, token_header = "session-token-1", "x-aws-ec2-metadata-token"
v1_only = os.path.exists(os.path.join(root, "imdsv1-only"))
status, body, extra = b"404 Not Found", b"", b""
if path.startswith("/computeMetadata/"):
    extra = b"Metadata-Flavor: Google\\r\\n"
if path == "/latest/api/token" and os.path.isdir(os.path.join(root, "latest")):
    if v1_only:
        status = b"403 Forbidden"
    elif method == b"PUT" and "x-aws-ec2-metadata-token-ttl-seconds" in headers:
        status, body = b"200 OK", token.encode()
    else:
        status = b"400 Bad Request"
elif method != b"GET":
    status = b"405 Method Not Allowed"
elif path.startswith("/latest/") and not v1_only and headers.get(token_header) != token:
    status = b"401 Unauthorized"
elif path.startswith("/computeMetadata/") and headers.get("metadata-flavor") != "Google":
    status = b"403 Forbidden"
else:
    full = os.path.realpath(os.path.join(root, path.lstrip("/")))
    if full.startswith(root + "/") and os.path.isfile(full):
        status, body = b"200 OK", open(full, "rb").read()
head = b"HTTP/1.0 %s\\r\\n%sContent-Length: %d\\r\\n\\r\\n" % (status, extra, len(body))
sys.stdout.buffer.write(head + body)
"""


def metadata_service_command(config: VmConfig, service: Path) -> list[str]:
    """osbuilder's QEMU command line for `config` (made with detach, so the console goes to
    its log only), in the foreground, with a cloud's metadata service at 169.254.169.254
    serving the files under `service` (METADATA_SERVICE), as a cloud's network gives one:
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
