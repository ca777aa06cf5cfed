"""The Redis OS of examples/redis.yml answers a real redis client through a published port."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.boot.conftest import build_system, free_port, osbuilder, redis_cli, run_detached
from tests.conftest import REPO, Packages

pytestmark = pytest.mark.boot


def test_redis_os_answers_ping_and_set_get(packages: Packages, tmp_path: Path) -> None:
    prefix = build_system(packages, REPO / "examples/redis.yml", tmp_path / "out")
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
    finally:
        stopped = osbuilder("stop", str(state))
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"{state}: powered off"
    console = (state / "console.log").read_text(errors="replace")
    assert "init: osbuilder " in console  # the banner
    assert "onboot dhcpcd: exit code 0" in console
    assert "reboot: Power down" in console
    assert str(state) not in osbuilder("ps").stdout
