"""The Redis OS of examples/redis.yml answers a real redis client through a published port:
built for this machine, and for arm64 (qemu-system-aarch64 under TCG, through UEFI)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from osbuilder.oci.platform import host_target
from osbuilder.pkg.lockfile import read_lock
from tests.boot.conftest import build_system, free_port, osbuilder, redis_cli, run_detached
from tests.conftest import REPO, Packages

pytestmark = pytest.mark.boot


@pytest.mark.parametrize("arch", [None, "arm64"], ids=["host", "arm64"])
def test_redis_os_answers_ping_and_set_get(
    request: pytest.FixtureRequest, tmp_path: Path, arch: str | None
) -> None:
    packages: Packages = request.getfixturevalue("arm64_packages" if arch else "packages")
    prefix = build_system(packages, REPO / "examples/redis.yml", tmp_path / "out", arch=arch)
    port = free_port()
    state = Path(f"{prefix}-state")
    started = run_detached(prefix, port)
    try:  # (a VM that started but did not answer is stopped too)
        assert started.returncode == 0, started.stderr
        assert redis_cli(port, "ping") == "PONG"
        assert redis_cli(port, "set", "osbuilder", "works") == "OK"
        assert redis_cli(port, "get", "osbuilder") == "works"
        listed = osbuilder("ps")
        assert str(state) in listed.stdout and f"{port}:6379/tcp" in listed.stdout
        [record] = [
            vm for vm in json.loads(osbuilder("ps", "--json").stdout) if vm["state"] == str(state)
        ]
        assert record["architecture"] == (arch or host_target().architecture)
    finally:
        stopped = osbuilder("stop", str(state))
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"{state}: powered off"
    console = (state / "console.log").read_text(errors="replace")
    assert "init: osbuilder " in console  # the banner
    assert "onboot dhcpcd: exit code 0" in console
    assert "init: power button pressed" in console  # ACPI (arm64: given by the UEFI firmware)
    assert "reboot: Power down" in console
    assert str(state) not in osbuilder("ps").stdout
    if arch == "arm64":
        assert Path(f"{prefix}-kernel").read_bytes()[0x38:0x3C] == b"ARM\x64"  # an arm64 Image
        assert f"kernel {locked_kernel('arm64')}" in console


def locked_kernel(architecture: str) -> str:
    """The kernel release kernels/cloud's lock names, e.g. 6.1.0-57-cloud-arm64."""
    lock = read_lock(REPO / "kernels/cloud")
    assert lock is not None
    [name] = [
        p.name
        for p in lock.packages_for(architecture)
        if re.fullmatch(rf"linux-image-[\d.]+-\d+-cloud-{architecture}", p.name)
    ]
    return name.removeprefix("linux-image-")
