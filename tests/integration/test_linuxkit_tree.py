"""The tree LinuxKit builds, to the letter (moby/build/image.go, build.go): each container's
/etc/hosts and resolv.conf, and what an OCI-format volume holds. Images are made in a
private store, and the tree read back from `-f tar`."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from osbuilder.assemble.filters import HOSTS, RESOLV_STUB
from osbuilder.oci.imagewriter import ImageSpec, file_info, new_layer, write_image, write_index
from osbuilder.oci.model import Platform
from osbuilder.oci.reference import parse_reference
from osbuilder.oci.store import ContentStore
from tests.integration.helpers import osbuilder, store_image
from tests.integration.images import OciIndex, push
from tests.integration.registry import Registry

pytestmark = pytest.mark.integration

# What LinuxKit writes (moby/build/image.go `replace`), spelled out rather than imported.
LINUXKIT_HOSTS = (
    "127.0.0.1       localhost\n"
    "::1     localhost ip6-localhost ip6-loopback\n"
    "fe00::0 ip6-localnet\n"
    "ff00::0 ip6-mcastprefix\n"
    "ff02::1 ip6-allnodes\n"
    "ff02::2 ip6-allrouters\n"
)
LINUXKIT_RESOLV = "\n# no resolv.conf configured\n"


def build(store: ContentStore, tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """Build the spec `text` (in tmp_path/spec.yml) from `store` alone, into out/t.tar."""
    path = tmp_path / "spec.yml"
    path.write_text(text)
    return osbuilder(
        "build", "--offline", "--cache", str(store.root), "-f", "tar", "--name", "t",
        "-o", str(tmp_path / "out"), str(path),
    )  # fmt: skip


def build_tar(store: ContentStore, tmp_path: Path, text: str) -> dict[str, bytes | str]:
    """Build the spec `text` from `store` as a tar; the tree's files (a symlink: its target;
    the names of one file, hard links, each its data)."""
    result = build(store, tmp_path, text)
    assert result.returncode == 0, result.stderr
    tree: dict[str, bytes | str] = {}
    with tarfile.open(tmp_path / "out/t.tar") as tar:
        for member in tar.getmembers():
            if member.issym():
                tree[member.name] = member.linkname
            elif member.isfile() or member.islnk():  # (a hard link: the file it names)
                data = tar.extractfile(member)
                assert data is not None
                tree[member.name] = data.read()
    return tree


def test_hosts_and_resolv_conf_are_written_as_linuxkit_writes_them(tmp_path: Path) -> None:
    assert (HOSTS, RESOLV_STUB) == (LINUXKIT_HOSTS, LINUXKIT_RESOLV)
    store = ContentStore(tmp_path / "store")
    store_image(store, "test/bare:1", {"bin/": b"", "bin/true": b"#!"})
    own = {"etc/": b"", "etc/hosts": b"10.0.0.1 mine\n", "etc/resolv.conf": b"nameserver 9.9.9.9\n"}
    store_image(store, "test/own:1", own)
    tree = build_tar(
        store,
        tmp_path,
        "init: [test/bare:1]\n"
        "onboot:\n  - name: bare\n    image: test/bare:1\n"
        "services:\n  - name: own\n    image: test/own:1\n",
    )
    for container in ("onboot/000-bare", "services/own"):
        rootfs = f"containers/{container}/lower"
        if f"{rootfs}/etc/hosts" not in tree:
            rootfs = f"containers/{container}/rootfs"
        # Had the image a file or not, the localhost table and the stub.
        assert tree[f"{rootfs}/etc/hosts"] == LINUXKIT_HOSTS.encode(), container
        assert tree[f"{rootfs}/etc/resolv.conf"] == LINUXKIT_RESOLV.encode(), container
    # The system's root (init images): the localhost table, and resolv.conf as dhcpcd fills it.
    assert tree["etc/hosts"] == LINUXKIT_HOSTS.encode()
    assert tree["etc/resolv.conf"] == "/run/resolvconf/resolv.conf"


def store_index(store: ContentStore, reference: str, architectures: list[str]) -> dict[str, str]:
    """An index of one one-layer image per architecture, tagged `reference`; returns each
    architecture's manifest digest."""
    manifests = []
    for architecture in architectures:
        with new_layer(store) as layer:
            data = architecture.encode()
            layer.add(file_info("arch", len(data), 0o644, 0), io.BytesIO(data))
        assert layer.result is not None
        manifest = write_image(store, [layer.result], ImageSpec(architecture=architecture))
        manifests.append(manifest.replace(platform=Platform(architecture, "linux")))
    store.tag(str(parse_reference(reference)), write_index(store, manifests))
    return {str(m.platform): m.digest for m in manifests}


def volume_spec(platforms: str) -> str:
    return (
        "init: [test/bare:1]\n"
        "volumes:\n  - name: every\n    image: test/multi:1\n    format: oci\n"
        f"  - name: some\n    image: test/multi:1\n    format: oci\n{platforms}"
    )


def test_an_oci_volume_holds_the_platforms_named_by_default_every_one(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "store")
    store_image(store, "test/bare:1", {"bin/": b""})
    manifests = store_index(store, "test/multi:1", ["amd64", "arm64"])
    tree = build_tar(store, tmp_path, volume_spec("    platforms: [linux/arm64]\n"))

    def layout(volume: str) -> tuple[dict[str, Any], set[str]]:
        lower = f"containers/volumes/{volume}/lower"
        index = json.loads(tree[f"{lower}/index.json"])
        blobs = {name.rsplit("/", 1)[1] for name in tree if name.startswith(f"{lower}/blobs/")}
        return index, {"sha256:" + blob for blob in blobs}

    for volume, platforms in (("every", ["linux/amd64", "linux/arm64"]), ("some", ["linux/arm64"])):
        index, blobs = layout(volume)
        [top] = index["manifests"]  # the index itself, by its digest, as LinuxKit writes it
        assert top["mediaType"] == "application/vnd.oci.image.index.v1+json"
        assert top["annotations"] == {"org.opencontainers.image.ref.name": "docker.io/test/multi:1"}
        named = store.lookup("docker.io/test/multi:1")
        assert named is not None and top["digest"] == named.digest
        held = {platform for platform, digest in manifests.items() if digest in blobs}
        assert sorted(held) == platforms, volume
        for platform in held:  # each platform's whole image
            manifest = store.manifest(manifests[platform])
            assert {manifest.config.digest, *(layer.digest for layer in manifest.layers)} <= blobs
        for name in blobs:  # and nothing but blobs that hash to their names
            data = tree[f"containers/volumes/{volume}/lower/blobs/sha256/{name[7:]}"]
            assert isinstance(data, bytes) and hashlib.sha256(data).hexdigest() == name[7:]


def test_a_platform_the_index_lacks_is_located(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "store")
    store_image(store, "test/bare:1", {"bin/": b""})
    store_index(store, "test/multi:1", ["amd64", "arm64"])
    result = build(store, tmp_path, volume_spec("    platforms: [linux/arm64, linux/s390x]\n"))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"osbuilder: {tmp_path / 'spec.yml'}:9:30: volumes[1].platforms[1]: "
        "test/multi:1 has no image for linux/s390x (it has linux/amd64, linux/arm64)"
    )


def test_a_platform_not_in_the_store_offline_is_located(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "store")
    store_image(store, "test/bare:1", {"bin/": b""})
    manifests = store_index(store, "test/multi:1", ["amd64", "arm64"])
    store.blob_path(manifests["linux/arm64"]).unlink()  # (only this machine's pulled)
    result = build(store, tmp_path, volume_spec(""))
    assert result.returncode == 1
    index = store.lookup("docker.io/test/multi:1")
    assert index is not None
    assert result.stderr.strip() == (
        f"osbuilder: {tmp_path / 'spec.yml'}:4:12: volumes[0].image: linux/arm64: "
        f"test/multi:1@{index.digest} is not in the content store; "
        "pull it first (without --offline)"
    )


def test_a_build_pulls_the_platforms_an_oci_volume_holds(
    registry: Registry, multiarch_image: OciIndex, tmp_path: Path
) -> None:
    pushed = push(multiarch_image, registry, "multi/arch", "v1")
    store = ContentStore(tmp_path / "store")
    store_image(store, "test/bare:1", {"bin/": b""})
    path = tmp_path / "spec.yml"
    path.write_text(
        "init: [test/bare:1]\n"
        f"volumes:\n  - name: both\n    image: {pushed.reference}\n    format: oci\n"
    )
    result = osbuilder(
        "build", "--cache", str(store.root), "-f", "tar", "--name", "t",
        "-o", str(tmp_path / "out"), str(path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with tarfile.open(tmp_path / "out/t.tar") as tar:
        prefix = "containers/volumes/both/lower/blobs/sha256/"
        blobs = {"sha256:" + n[len(prefix) :] for n in tar.getnames() if n.startswith(prefix)}
    for image in multiarch_image.images:  # this machine's and the other's, layers and all
        assert {image.digest, *(layer.descriptor.digest for layer in image.layers)} <= blobs
    assert multiarch_image.digest in blobs


def test_yaml_1_1_words_reach_config_json_as_the_strings_written(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "store")
    store_image(store, "test/bare:1", {"bin/": b""})
    tree = build_tar(
        store,
        tmp_path,
        "init: [test/bare:1]\nservices:\n  - name: s\n    image: test/bare:1\n"
        "    command: [echo, yes, off, 10:30, 2024-01-02, =]\n    env: [MODE=on]\n",
    )
    config = json.loads(tree["containers/services/s/config.json"])
    assert config["process"]["args"] == ["echo", "yes", "off", "10:30", "2024-01-02", "="]
    assert "MODE=on" in config["process"]["env"]
