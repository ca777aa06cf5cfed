"""The tree LinuxKit builds, to the letter (moby/build/image.go, build.go): each container's
/etc/hosts and resolv.conf, and what an OCI-format volume holds. Images are made in a
private store, and the tree read back from `-f tar`."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from osbuilder.assemble.filters import HOSTS, RESOLV_STUB
from osbuilder.oci.store import ContentStore
from tests.integration.helpers import osbuilder, store_image

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


def build_tar(store: ContentStore, tmp_path: Path, text: str) -> dict[str, bytes | str]:
    """Build the spec `text` from `store` as a tar; the tree's files (a symlink: its target)."""
    path = tmp_path / "spec.yml"
    path.write_text(text)
    result = osbuilder(
        "build", "--offline", "--cache", str(store.root), "-f", "tar", "--name", "t",
        "-o", str(tmp_path / "out"), str(path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    tree: dict[str, bytes | str] = {}
    with tarfile.open(tmp_path / "out/t.tar") as tar:
        for member in tar.getmembers():
            if member.issym():
                tree[member.name] = member.linkname
            elif member.isfile():
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
