"""Registry client decisions that need no registry: transport, mirrors, retries, platforms."""

from __future__ import annotations

import email.utils
import time

import pytest

from osbuilder.errors import UserError
from osbuilder.oci.model import Descriptor, Index, Platform
from osbuilder.oci.platform import TargetPlatform, parse_platform, select_manifest
from osbuilder.oci.registry import RegistryClient, RegistryOptions, is_local, parse_mirror
from osbuilder.oci.retry import backoff_delay, parse_retry_after


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.3.4.5", True),
        ("[::1]:5000", True),
        ("docker.io", False),
        ("10.0.0.1:5000", False),
        ("registry.example.com:443", False),
    ],
)
def test_plain_http_only_for_loopback(host: str, local: bool) -> None:
    assert is_local(host) is local


def test_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    probed: list[str] = []

    def probe_scheme(host: str, *, timeout: float) -> str:
        probed.append(host)
        return "http"  # as a server that answers a TLS ClientHello in plain HTTP

    monkeypatch.setattr("osbuilder.oci.registry.probe_scheme", probe_scheme)
    options = RegistryOptions(
        insecure_registries=frozenset({"reg.lan:5000"}),
        mirrors={"docker.io": ("http://127.0.0.1:5000",)},
    )
    with RegistryClient(options) as client:
        assert client.origin("docker.io").base_url == "https://registry-1.docker.io"
        assert client.origin("ghcr.io").base_url == "https://ghcr.io"
        assert probed == []  # only loopback and insecure registries may speak plain HTTP
        assert client.origin("reg.lan:5000").base_url == "http://reg.lan:5000"
        assert client.origin("reg.lan:5000").insecure
        assert client.origin("127.0.0.1:5000").base_url == "http://127.0.0.1:5000"
        assert not client.origin("127.0.0.1:5000").insecure
        assert probed == ["reg.lan:5000", "reg.lan:5000", "127.0.0.1:5000", "127.0.0.1:5000"]
        endpoints = client.pull_endpoints("docker.io")
        assert [(e.base_url, e.mirror) for e in endpoints] == [
            ("http://127.0.0.1:5000", True),
            ("https://registry-1.docker.io", False),
        ]
        assert endpoints[0].url("library/redis/manifests/7") == (
            "http://127.0.0.1:5000/v2/library/redis/manifests/7"
        )


def test_parse_mirror() -> None:
    assert parse_mirror("docker.io=http://127.0.0.1:5000/") == (
        "docker.io",
        "http://127.0.0.1:5000",
    )
    for bad in ("docker.io", "=http://x", "docker.io=127.0.0.1:5000"):
        with pytest.raises(UserError, match="REGISTRY=URL"):
            parse_mirror(bad)


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < (parse_retry_after(later) or 0) <= 30
    assert backoff_delay(0, 0.25, requested=2.0) == 2.0
    assert 0.25 <= backoff_delay(0, 0.25) <= 0.32
    assert backoff_delay(20, 0.25) == 60.0  # capped


def _entry(arch: str, variant: str | None = None, os: str = "linux") -> Descriptor:
    return Descriptor(
        media_type="application/vnd.oci.image.manifest.v1+json",
        digest="sha256:" + (arch + (variant or "") + os).encode().hex().ljust(64, "0")[:64],
        size=1,
        platform=Platform(arch, os, variant),
    )


def test_platform_selection() -> None:
    index = Index(
        None,
        [
            _entry("amd64"),
            _entry("arm64", "v8"),
            _entry("unknown", os="unknown"),
            _entry("arm", "v7"),
        ],
    )
    assert select_manifest(index, parse_platform("amd64"), "x") == index.manifests[0]
    assert select_manifest(index, parse_platform("aarch64"), "x") == index.manifests[1]
    assert select_manifest(index, parse_platform("linux/arm64/v8"), "x") == index.manifests[1]
    no_variant = Index(None, [_entry("arm64")])  # an arm64 entry without a variant is v8
    assert select_manifest(no_variant, TargetPlatform("arm64"), "x") == no_variant.manifests[0]
    only_arm = Index(None, [_entry("arm64", "v8"), _entry("unknown", os="unknown")])
    with pytest.raises(
        UserError, match=r"^img has no linux/amd64 image \(it has linux/arm64/v8\)$"
    ):
        select_manifest(only_arm, TargetPlatform("amd64"), "img")


def test_unsupported_architecture() -> None:
    with pytest.raises(UserError, match="architecture 's390x' is not supported"):
        parse_platform("s390x")
