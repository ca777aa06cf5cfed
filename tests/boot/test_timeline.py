"""`osbuilder run --timeline`: where a real boot's time goes, stage by stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.boot.conftest import build_system, free_port, osbuilder, redis_cli, run_detached
from tests.conftest import REPO, Packages
from tests.unit.vm.test_timeline import REDIS_STAGES

pytestmark = pytest.mark.boot


def test_run_prints_every_stage_of_the_boot_in_order(packages: Packages, tmp_path: Path) -> None:
    prefix = build_system(packages, REPO / "examples/redis.yml", tmp_path / "out")
    port = free_port()
    state = Path(f"{prefix}-state")
    started = run_detached(prefix, port, "--timeline", "--json")
    try:
        assert started.returncode == 0, started.stderr
        assert redis_cli(port, "ping") == "PONG"  # the services had started when run returned
    finally:
        osbuilder("stop", str(state))
    printed = json.loads(started.stdout)
    assert printed["state"] == str(state) and printed["console"] == str(state / "console.log")
    stages = printed["timeline"]
    names = [stage["stage"] for stage in stages]
    assert [name for name in names if name in REDIS_STAGES] == REDIS_STAGES
    services = {"service getty started", "service redis started"}
    assert services <= set(names)
    assert names[-1] == "port 6379 answers"
    assert all(stage["seconds"] >= 0 and stage["start"] >= 0 for stage in stages)
    starts = [stage["start"] for stage in stages]
    assert starts == sorted(starts)
    # The same stages as a table on stderr, one row each.
    table = started.stderr[started.stderr.index("boot timeline, seconds from QEMU's start:") :]
    rows = [line.split()[0] for line in table.splitlines()[2:] if line.startswith("  ")]
    assert len(rows) == len(stages)
