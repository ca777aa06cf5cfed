"""The Redis OS pushed to a registry, removed locally, booted from there: `osbuilder run
docker://REF` answers PONG, and a second run downloads nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.boot.conftest import build_system, free_port, osbuilder, redis_cli
from tests.conftest import REPO, TRUST_OPTIONS, Packages
from tests.integration.registry import running_registry

pytestmark = pytest.mark.boot


def test_redis_os_runs_from_a_registry(packages: Packages, tmp_path: Path) -> None:
    (tmp_path / "registry").mkdir()
    with running_registry(tmp_path / "registry") as registry:
        prefix = build_system(packages, REPO / "examples/redis.yml", tmp_path / "out")
        ref = f"{registry.host}/systems/redis:1"
        pushed = osbuilder("push", "registry", ref, str(prefix))
        assert pushed.returncode == 0, pushed.stderr
        shutil.rmtree(tmp_path / "out")  # nothing of the build left here
        store = tmp_path / "store"
        for attempt in range(2):
            port = free_port()
            state = tmp_path / f"state-{attempt}"
            started = osbuilder(
                "run",
                "--detach",
                "--accel",
                "tcg",
                "--net",
                "restricted",
                "--publish",
                f"{port}:6379",
                "--wait-tcp",
                "6379",
                "--timeout",
                "240",
                "--state",
                str(state),
                "--cache",
                str(store),
                *TRUST_OPTIONS,
                f"docker://{ref}",
            )
            try:
                assert started.returncode == 0, started.stderr
                assert redis_cli(port, "ping") == "PONG"
            finally:
                stopped = osbuilder("stop", str(state))
            assert stopped.returncode == 0, stopped.stderr
            if attempt == 0:
                blobs = sorted((store / "blobs/sha256").iterdir())
                assert "done" in started.stderr  # the progress of each download
            else:  # the second run found everything in the store
                assert sorted((store / "blobs/sha256").iterdir()) == blobs
                assert "done" not in started.stderr, started.stderr
