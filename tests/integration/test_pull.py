"""Pulling from a real registry: digests, platforms, the store's rules, the command line."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from osbuilder.errors import UserError
from osbuilder.oci.store import ContentStore
from tests.integration.faultproxy import StartFaultProxy
from tests.integration.helpers import (
    ARM64,
    blob_files_are_valid,
    osbuilder,
    partial_files,
    pull,
)
from tests.integration.images import OciImage, OciIndex, Platform, build_index, push, skopeo
from tests.integration.registry import Registry

pytestmark = pytest.mark.integration


def test_image_pushed_by_skopeo_pulls_with_the_same_digests(
    registry: Registry, small_image: OciImage, tmp_path: Path
) -> None:
    pushed = push(small_image, registry, "team/app", "1.0")
    store = ContentStore(tmp_path / "store")
    result = pull(store, pushed.reference)
    image = result.image
    assert image.digest == pushed.digest == small_image.digest
    assert [layer.digest for layer in image.manifest.layers] == [
        layer.descriptor.digest for layer in small_image.layers
    ]
    assert image.config.diff_ids == [layer.diff_id for layer in small_image.layers]
    assert result.transferred == sum(layer.descriptor.size for layer in small_image.layers) + len(
        small_image.config
    )
    assert set(blob_files_are_valid(store)) == {
        small_image.digest,
        small_image.descriptor.digest,
        *(layer.descriptor.digest for layer in small_image.layers),
        "sha256:" + __import__("hashlib").sha256(small_image.config).hexdigest(),
    }
    # the store is an OCI layout a real peer reads, under the full reference name
    inspected = json.loads(skopeo("inspect", f"oci:{store.root}:{pushed.reference}").stdout)
    assert inspected["Digest"] == pushed.digest


def test_multi_arch_index_resolves_to_the_requested_platform(
    registry: Registry, multiarch_image: OciIndex, tmp_path: Path
) -> None:
    pushed = push(multiarch_image, registry, "multi/arch", "v1")
    amd64, arm64 = multiarch_image.images
    store = ContentStore(tmp_path / "store")
    result = pull(store, pushed.reference, target=ARM64)
    assert result.image.digest == multiarch_image.digest  # the name points at the index
    assert result.image.manifest_descriptor.digest == arm64.digest
    assert (result.image.config.architecture, result.image.config.variant) == ("arm64", "v8")
    assert not store.has_blob(amd64.layers[0].descriptor.digest)  # only what arm64 needs
    result = pull(store, pushed.reference)
    assert result.image.manifest_descriptor.digest == amd64.digest
    assert result.image.config.architecture == "amd64"


def test_missing_platform_is_a_clear_error(registry: Registry, tmp_path: Path) -> None:
    only_arm = build_index(tmp_path / "layout", platforms=(Platform("arm64", variant="v8"),))
    pushed = push(only_arm, registry, "arm/only", "v1")
    result = osbuilder(
        "pull", "--cache", str(tmp_path / "store"), "--arch", "amd64", pushed.reference
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"osbuilder: {pushed.reference} has no linux/amd64 image (it has linux/arm64/v8)"
    )


def test_pinned_reference_in_the_store_never_touches_the_network(
    registry: Registry, small_image: OciImage, fault_proxy: StartFaultProxy, tmp_path: Path
) -> None:
    push(small_image, registry, "pinned/app", "v1")
    proxy = fault_proxy(registry)
    store = ContentStore(tmp_path / "store")
    pinned = f"{proxy.host}/pinned/app@{small_image.digest}"
    pull(store, pinned)
    seen = len(proxy.requests)
    assert seen > 0
    assert pull(store, pinned).network is False
    assert len(proxy.requests) == seen


def test_tag_is_re_resolved_with_one_head_request(
    registry: Registry, small_image: OciImage, fault_proxy: StartFaultProxy, tmp_path: Path
) -> None:
    push(small_image, registry, "tagged/app", "v1")
    proxy = fault_proxy(registry)
    store = ContentStore(tmp_path / "store")
    reference = f"{proxy.host}/tagged/app:v1"
    pull(store, reference)
    before = len(proxy.requests)
    result = pull(store, reference)
    assert result.transferred == 0
    assert [(r.method, r.target) for r in proxy.requests[before:]] == [
        ("HEAD", "/v2/tagged/app/manifests/v1")
    ]


def test_a_configured_http_proxy_carries_every_request(
    registry: Registry,
    small_image: OciImage,
    fault_proxy: StartFaultProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fault proxy forwards the absolute-form targets a client sends to a proxy
    # (the registry accepts them), so here it serves as the forward proxy.
    pushed = push(small_image, registry, "proxied/app", "v1")
    proxy = fault_proxy(registry)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    store = ContentStore(tmp_path / "store")
    assert pull(store, pushed.reference).image.digest == small_image.digest
    prefix = f"http://{registry.host}/v2/proxied/app/"
    targets = [r.target for r in proxy.requests]
    assert f"{prefix}manifests/v1" in targets
    assert all(
        f"{prefix}blobs/{layer.descriptor.digest}" in targets for layer in small_image.layers
    )
    assert all(target.startswith(prefix) for target in targets)


def test_tag_moved_to_new_content_is_pulled_again(
    registry: Registry, small_image: OciImage, multiarch_image: OciIndex, tmp_path: Path
) -> None:
    store = ContentStore(tmp_path / "store")
    push(small_image, registry, "moving/app", "v1")
    first = pull(store, f"{registry.host}/moving/app:v1")
    push(multiarch_image, registry, "moving/app", "v1")
    second = pull(store, f"{registry.host}/moving/app:v1")
    assert first.image.digest == small_image.digest
    assert second.image.digest == multiarch_image.digest
    assert store.lookup(f"{registry.host}/moving/app:v1").digest == multiarch_image.digest


def test_offline_uses_only_the_store(
    registry: Registry, small_image: OciImage, tmp_path: Path
) -> None:
    pushed = push(small_image, registry, "off/line", "v1")
    store = tmp_path / "store"
    missing = osbuilder("pull", "--offline", "--cache", str(store), pushed.reference)
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        f"osbuilder: {pushed.reference} is not in the content store; pull it first "
        "(without --offline)"
    )
    assert osbuilder("pull", "--cache", str(store), pushed.reference).returncode == 0
    registry_log_size = registry.log.stat().st_size
    offline = osbuilder("pull", "--offline", "--cache", str(store), "--json", pushed.reference)
    assert offline.returncode == 0, offline.stderr
    assert json.loads(offline.stdout)[0]["digest"] == pushed.digest
    assert registry.log.stat().st_size == registry_log_size  # not one request reached it


def test_unknown_image_and_unreachable_registry(tmp_path: Path, registry: Registry) -> None:
    store = str(tmp_path / "store")
    result = osbuilder("pull", "--cache", store, f"{registry.host}/no/such:image")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"osbuilder: {registry.host}/no/such:image: image not found in {registry.host}"
    )
    result = osbuilder(
        "pull", "--retries", "1", "--cache", store, "127.0.0.1:9/nothing/listens:here"
    )
    assert result.returncode == 3
    assert result.stderr.startswith(
        "osbuilder: manifest nothing/listens:here from http://127.0.0.1:9: cannot connect"
    )
    assert "Traceback" not in result.stderr
    with pytest.raises(UserError):
        pull(ContentStore(tmp_path / "s2"), "Not A Reference")  # type: ignore[arg-type]


def test_cli_progress_lines_and_json_summary(
    registry: Registry, small_image: OciImage, tmp_path: Path
) -> None:
    pushed = push(small_image, registry, "cli/app", "v1")
    result = osbuilder("pull", "--cache", str(tmp_path / "store"), pushed.reference)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{pushed.reference}@{pushed.digest} (linux/amd64, ")
    assert result.stderr.count(": done (") == len(small_image.layers) + 1  # layers + config
    result = osbuilder("pull", "--json", "--cache", str(tmp_path / "store2"), pushed.reference)
    summary = json.loads(result.stdout)
    assert summary == [
        {
            "reference": pushed.reference,
            "digest": pushed.digest,
            "manifest": pushed.digest,
            "platform": "linux/amd64",
            "size": sum(layer.descriptor.size for layer in small_image.layers),
            "transferred": summary[0]["transferred"],
        }
    ]
    assert result.stderr == ""


def test_store_never_holds_partial_files_after_a_good_pull(
    registry: Registry, small_image: OciImage, tmp_path: Path
) -> None:
    pushed = push(small_image, registry, "clean/app", "v1")
    store = ContentStore(tmp_path / "store")
    pull(store, pushed.reference)
    assert partial_files(store) == []


def test_terminal_gets_a_live_progress_display(
    registry: Registry, small_image: OciImage, tmp_path: Path
) -> None:
    pushed = push(small_image, registry, "tty/app", "v1")
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "osbuilder",
            "pull",
            "--cache",
            str(tmp_path / "s"),
            pushed.reference,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=terminal,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the other side closed
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=30) == 0
    os.close(controller)
    text = output.decode(errors="replace")
    layer = max(small_image.layers, key=lambda layer: layer.descriptor.size).descriptor
    assert f"tty/app@{layer.digest[7:19]}" in text
    assert "━" in text  # the bar
    assert "262.5/262.5 kB" in text  # bytes done of the total
    assert "done" in text and "retrying" not in text


def test_a_store_that_cannot_be_written_is_a_clear_error_and_the_pull_resumes(
    registry: Registry, small_image: OciImage, tmp_path: Path
) -> None:
    """A full disk (here a file size limit, which fails writes the same way) is the
    user's to fix: one line naming the file, no traceback; what did arrive is kept, so
    the next pull goes on from there."""
    pushed = push(small_image, registry, "full/app", "v1")
    store = tmp_path / "store"
    layer = max(small_image.layers, key=lambda layer: layer.descriptor.size).descriptor
    limit = layer.size // 2
    failed = osbuilder("pull", "--cache", str(store), pushed.reference, max_file_size=limit)
    assert failed.returncode == 1
    partial = store / "ingest" / f"{layer.digest.removeprefix('sha256:')}.partial"
    assert failed.stderr.splitlines()[-1] == f"osbuilder: {partial}: cannot write: File too large"
    assert "Traceback" not in failed.stderr
    assert partial.stat().st_size == limit  # kept: the pull can resume
    assert blob_files_are_valid(ContentStore(store))  # no blob holds a part of its content
    assert osbuilder("cache", "ls", "--cache", str(store)).stdout == ""

    resumed = osbuilder("pull", "--cache", str(store), "--json", pushed.reference)
    assert resumed.returncode == 0, resumed.stderr
    [summary] = json.loads(resumed.stdout)
    assert summary["transferred"] < sum(layer.descriptor.size for layer in small_image.layers)
    assert blob_files_are_valid(ContentStore(store)) and not partial.exists()
