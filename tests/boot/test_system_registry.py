"""The Redis OS pushed to a registry, removed locally, booted from there: `osbuilder run
docker://REF` answers PONG, and a second run downloads nothing. As kernel+initrd, and
as a disk image (the system's one file)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import oras.provider  # type: ignore[import-untyped]
import pytest

from osbuilder.oci.platform import host_target
from osbuilder.systems.artifact import SYSTEM_TYPE, BuildRecord
from tests.boot.conftest import build_system, free_port, osbuilder, redis_cli
from tests.conftest import REPO, TRUST_OPTIONS, Packages
from tests.integration.images import skopeo
from tests.integration.registry import running_registry

pytestmark = pytest.mark.boot


def run_from_registry(ref: str, state: Path, store: Path) -> subprocess.CompletedProcess[str]:
    """`osbuilder run --detach docker://REF` until Redis answers on a free port; stopped
    before it returns (asserting that it answered PONG)."""
    port = free_port()
    started = osbuilder(
        "run", "--detach", "--accel", "tcg", "--net", "restricted",
        "--publish", f"{port}:6379", "--wait-tcp", "6379", "--timeout", "240",
        "--state", str(state), "--cache", str(store), *TRUST_OPTIONS, f"docker://{ref}",
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stderr
        assert redis_cli(port, "ping") == "PONG"
    finally:
        stopped = osbuilder("stop", str(state))
    assert stopped.returncode == 0, stopped.stderr
    return started


@pytest.mark.parametrize(
    ("formats", "pushed"),
    [((), "redis"), (("qcow2-bios",), "redis.qcow2")],
    ids=["kernel+initrd", "qcow2"],
)
def test_redis_os_runs_from_a_registry(
    packages: Packages, tmp_path: Path, formats: tuple[str, ...], pushed: str
) -> None:
    (tmp_path / "registry").mkdir()
    with running_registry(tmp_path / "registry") as registry:
        build_system(packages, REPO / "examples/redis.yml", tmp_path / "out", *formats)
        ref = f"{registry.host}/systems/redis:1"
        done = osbuilder("push", "registry", ref, str(tmp_path / "out" / pushed))
        assert done.returncode == 0, done.stderr
        shutil.rmtree(tmp_path / "out")  # nothing of the build left here
        store = tmp_path / "store"
        first = run_from_registry(ref, tmp_path / "state-1", store)
        assert "done" in first.stderr  # the progress of each download
        blobs = sorted((store / "blobs/sha256").iterdir())
        second = run_from_registry(ref, tmp_path / "state-2", store)
        assert "done" not in second.stderr, second.stderr  # the store had it all
        assert sorted((store / "blobs/sha256").iterdir()) == blobs


def test_redis_os_copied_by_skopeo_and_pushed_by_oras_runs(
    packages: Packages, tmp_path: Path
) -> None:
    """`skopeo copy --all` of the pushed system to another registry runs from there; the
    same files pushed by the oras SDK (a build record typed as a system for config) run."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with running_registry(tmp_path / "a") as first, running_registry(tmp_path / "b") as second:
        prefix = build_system(packages, REPO / "examples/redis.yml", tmp_path / "out")
        source = f"{first.host}/systems/redis:1"
        done = osbuilder("push", "registry", source, str(prefix))
        assert done.returncode == 0, done.stderr
        copied = f"{second.host}/mirror/redis:1"
        skopeo(
            "copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
            f"docker://{source}", f"docker://{copied}",
        )  # fmt: skip
        run_from_registry(copied, tmp_path / "state-copied", tmp_path / "store-copied")

        record = tmp_path / "record.json"
        record.write_bytes(BuildRecord("oras", host_target().architecture).as_bytes())
        by_oras = f"{first.host}/oras/redis:1"
        files = sorted(p for p in (tmp_path / "out").iterdir() if p.is_file())
        client = oras.provider.Registry(hostname=first.host, insecure=True)
        client.session.trust_env = False  # no *_proxy variable: loopback only
        response = client.push(
            target=by_oras,
            files=[f"{p}:application/octet-stream" for p in files],
            manifest_config=f"{record}:{SYSTEM_TYPE}",
            disable_path_validation=True,
            quiet=True,
        )
        assert response.status_code == 201, response.text
        shutil.rmtree(tmp_path / "out")
        run_from_registry(by_oras, tmp_path / "state-oras", tmp_path / "store-oras")
