"""The Redis OS built as gcp boots from the disk.raw of its archive and answers PING.

`osbuilder run` unpacks the archive's disk into the VM's state directory, as Compute Engine
unpacks it into a persistent disk, and boots it through SeaBIOS and SYSLINUX.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.boot.conftest import build_system, free_port, osbuilder, redis_cli, run_detached
from tests.conftest import REPO, Packages

pytestmark = pytest.mark.boot


def test_the_redis_os_boots_from_the_gcp_archives_disk(packages: Packages, tmp_path: Path) -> None:
    build_system(packages, REPO / "examples/redis.yml", tmp_path, "gcp")
    archive = tmp_path / "redis.img.tar.gz"
    state = Path(f"{archive}-state")
    port = free_port()
    started = run_detached(archive, port)
    try:  # (a VM that started but did not answer is stopped too)
        assert started.returncode == 0, started.stderr
        assert redis_cli(port, "ping") == "PONG"
    finally:
        stopped = osbuilder("stop", str(archive))
    assert stopped.stdout.strip() == f"{state}: powered off", stopped.stderr
    disk = state / "disk.raw"
    assert disk.stat().st_size == 1 << 30  # the whole disk, as Compute Engine gets it
    console = (state / "console.log").read_text(errors="replace")
    assert "SYSLINUX 6" in console  # the disk's own boot loader...
    assert "Command line: " in console and "console=ttyS0" in console  # ...booted the kernel
    assert "[vda] 2097152 512-byte logical blocks" in console  # 1 GiB
    assert "reboot: Power down" in console
