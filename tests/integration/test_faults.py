"""Faults between osbuilder and the registry, injected by a proxy.

Each ends in correct content or one clean error; blobs/ never holds an
unverified file; a pull killed with SIGKILL leaves a store the next pull
completes (resuming where the first stopped).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from osbuilder.errors import ExternalError
from osbuilder.oci.store import ContentStore
from tests.integration.faultproxy import (
    Corrupt,
    ResetMidway,
    Slow,
    StartFaultProxy,
    Status,
    Truncate,
)
from tests.integration.helpers import blob_files_are_valid, partial_files, pull
from tests.integration.images import OciImage, build_image, push, random_layers
from tests.integration.registry import Registry

pytestmark = pytest.mark.integration

BLOBS = r"/blobs/sha256:"


@pytest.fixture
def big_layer_image(tmp_path_factory: pytest.TempPathFactory) -> OciImage:
    """Two layers of 2 MB: big enough to break off in the middle of one."""
    return build_image(tmp_path_factory.mktemp("big"), random_layers(2, 4 * 1024 * 1024, seed=3))


def proxied(
    registry: Registry, image: OciImage, fault_proxy: StartFaultProxy, repo: str
) -> tuple[str, object]:
    push(image, registry, repo, "v1")
    proxy = fault_proxy(registry)
    return f"{proxy.host}/{repo}:v1", proxy


def expected_blobs(image: OciImage) -> set[str]:
    return {
        image.digest,
        "sha256:" + hashlib.sha256(image.config).hexdigest(),
        *(layer.descriptor.digest for layer in image.layers),
    }


@pytest.mark.parametrize(
    ("fault", "resumes"),
    [
        (Truncate(0.5), True),
        # An RST makes the kernel drop what the client had not read yet, so how much a
        # retry can resume varies: only the outcome is checked.
        (ResetMidway(0.3), False),
        (Status(500), False),
        (Status(503), False),
    ],
    ids=["truncated-body", "reset-midway", "http-500", "http-503"],
)
def test_a_passing_fault_ends_in_correct_content(
    registry: Registry,
    big_layer_image: OciImage,
    fault_proxy: StartFaultProxy,
    tmp_path: Path,
    fault: object,
    resumes: bool,
) -> None:
    push(big_layer_image, registry, "faulty/app", "v1")
    proxy = fault_proxy(registry)
    rule = proxy.inject(
        fault, path=BLOBS + big_layer_image.layers[0].descriptor.digest[7:], method="GET", times=2
    )
    store = ContentStore(tmp_path / "store")
    result = pull(store, f"{proxy.host}/faulty/app:v1")
    assert result.image.digest == big_layer_image.digest
    assert rule.fired == 2
    assert set(blob_files_are_valid(store)) == expected_blobs(big_layer_image)
    assert partial_files(store) == []
    ranges = [
        r.range
        for r in proxy.requests
        if r.target.endswith(big_layer_image.layers[0].descriptor.digest)
    ]
    if resumes:  # the retries asked only for the bytes still missing
        assert any(r is not None and r.startswith("bytes=") and r != "bytes=0-" for r in ranges)


def test_wrong_bytes_once_are_downloaded_again(
    registry: Registry, big_layer_image: OciImage, fault_proxy: StartFaultProxy, tmp_path: Path
) -> None:
    push(big_layer_image, registry, "corrupt/app", "v1")
    proxy = fault_proxy(registry)
    rule = proxy.inject(Corrupt(), path=BLOBS, method="GET", times=1)
    store = ContentStore(tmp_path / "store")
    pull(store, f"{proxy.host}/corrupt/app:v1")
    assert rule.fired == 1
    assert set(blob_files_are_valid(store)) == expected_blobs(big_layer_image)


def test_wrong_bytes_every_time_is_one_clean_error(
    registry: Registry, big_layer_image: OciImage, fault_proxy: StartFaultProxy, tmp_path: Path
) -> None:
    push(big_layer_image, registry, "corrupt/always", "v1")
    proxy = fault_proxy(registry)
    layer = big_layer_image.layers[1].descriptor.digest
    proxy.inject(Corrupt(), path=BLOBS + layer[7:], method="GET", times=None)
    store = ContentStore(tmp_path / "store")
    with pytest.raises(ExternalError, match=r"content does not match its digest " + layer):
        pull(store, f"{proxy.host}/corrupt/always:v1")
    assert not store.has_blob(layer)
    assert layer not in blob_files_are_valid(store)
    assert partial_files(store) == []
    assert store.references() == []  # nothing names a half-pulled image


def test_server_errors_that_persist_are_one_clean_error(
    registry: Registry, big_layer_image: OciImage, fault_proxy: StartFaultProxy, tmp_path: Path
) -> None:
    push(big_layer_image, registry, "broken/app", "v1")
    proxy = fault_proxy(registry)
    rule = proxy.inject(Status(500), path=BLOBS, method="GET", times=None)
    store = ContentStore(tmp_path / "store")
    with pytest.raises(ExternalError, match=r"HTTP 500 \(gave up after 3 retries\)"):
        pull(store, f"{proxy.host}/broken/app:v1")
    assert rule.fired >= 4
    blob_files_are_valid(store)
    assert store.references() == []


def test_429_honours_retry_after(
    registry: Registry, big_layer_image: OciImage, fault_proxy: StartFaultProxy, tmp_path: Path
) -> None:
    push(big_layer_image, registry, "busy/app", "v1")
    proxy = fault_proxy(registry)
    manifest_rule = proxy.inject(Status(429, retry_after=1), path="/manifests/", times=1)
    blob_rule = proxy.inject(Status(429, retry_after=1), path=BLOBS, method="GET", times=1)
    store = ContentStore(tmp_path / "store")
    started = time.monotonic()
    pull(store, f"{proxy.host}/busy/app:v1")
    assert time.monotonic() - started >= 2.0  # waited as asked, twice (backoff is 0.01 s)
    assert manifest_rule.fired == blob_rule.fired == 1
    assert set(blob_files_are_valid(store)) == expected_blobs(big_layer_image)


def test_pull_killed_halfway_is_completed_by_the_next_pull(
    registry: Registry, big_layer_image: OciImage, fault_proxy: StartFaultProxy, tmp_path: Path
) -> None:
    push(big_layer_image, registry, "killed/app", "v1")
    proxy = fault_proxy(registry)
    proxy.inject(Slow(256 * 1024), path=BLOBS, method="GET", times=None)
    store_dir = tmp_path / "store"
    reference = f"{proxy.host}/killed/app:v1"
    process = subprocess.Popen(
        [sys.executable, "-m", "osbuilder", "pull", "--cache", str(store_dir), reference],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    store = ContentStore(store_dir)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # wait until both layers are partly down
        sizes = [p.stat().st_size for p in partial_files(store)]
        if len(sizes) == 2 and min(sizes) > 256 * 1024:
            break
        time.sleep(0.05)
    else:
        process.kill()
        pytest.fail("the pull never got halfway")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    blob_files_are_valid(store)  # whatever landed is verified; the rest is in ingest/
    assert not any(store.has_blob(layer.descriptor.digest) for layer in big_layer_image.layers)
    proxy.clear()
    before = len(proxy.requests)
    result = pull(store, reference)
    assert result.image.digest == big_layer_image.digest
    assert set(blob_files_are_valid(store)) == expected_blobs(big_layer_image)
    resumed = [r.range for r in proxy.requests[before:] if r.range]
    assert len(resumed) == 2 and all(r != "bytes=0-" for r in resumed)
    assert result.transferred < sum(layer.descriptor.size for layer in big_layer_image.layers)
    assert partial_files(store) == []


def test_four_concurrent_pulls_share_one_copy_of_each_blob(
    registry: Registry, big_layer_image: OciImage, fault_proxy: StartFaultProxy, tmp_path: Path
) -> None:
    push(big_layer_image, registry, "shared/app", "v1")
    proxy = fault_proxy(registry)
    proxy.inject(Slow(4 * 1024 * 1024), path=BLOBS, method="GET", times=None)
    store_dir = tmp_path / "store"
    reference = f"{proxy.host}/shared/app:v1"
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "osbuilder", "pull", "--cache", str(store_dir), reference],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr.decode()
    store = ContentStore(store_dir)
    assert set(blob_files_are_valid(store)) == expected_blobs(big_layer_image)
    blob_gets = [r.target for r in proxy.requests if r.method == "GET" and BLOBS in r.target]
    assert sorted(blob_gets) == sorted(set(blob_gets))  # each blob crossed the wire once
    assert [r.name for r in store.references()] == [reference]
    assert partial_files(store) == []
