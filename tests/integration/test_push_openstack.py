"""`osbuilder push openstack`: built images uploaded to a real Keystone + Glance on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from osbuilder.formats.vhd import dynamic_vhd, fixed_vhd
from osbuilder.formats.vmdk import vmdk_disk
from tests.integration.cloud import Cloud, running_cloud
from tests.integration.helpers import osbuilder

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    with running_cloud(tmp_path_factory.mktemp("cloud")) as running:
        yield running


def push(cloud: Cloud, *args: str) -> subprocess.CompletedProcess[str]:
    return osbuilder(
        "push", "openstack", *args, env={"OS_CLIENT_CONFIG_FILE": str(cloud.clouds_yaml)}
    )


def disk(path: Path, label: str) -> Path:
    """A 4 MiB raw disk with an empty partition table: `gpt` (an EFI disk) or `dos`."""
    with path.open("wb") as file:
        file.truncate(4 << 20)
    subprocess.run(
        ["sfdisk", "--quiet", str(path)], input=f"label: {label}\n", text=True, check=True
    )
    return path


def qcow2(raw: Path, name: str) -> Path:
    converted = raw.with_name(name)
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(converted)], check=True
    )
    return converted


def image_record(cloud: Cloud, image_id: str) -> dict[str, object]:
    """What Glance says of the image, to the demo user (its owner)."""
    connection = cloud.connect()
    response = connection.image.get(f"/images/{image_id}")
    response.raise_for_status()
    return dict(response.json())


def images_named(cloud: Cloud, name: str) -> list[dict[str, object]]:
    response = cloud.connect().image.get(f"/images?name={name}")
    response.raise_for_status()
    return list(response.json()["images"])


def test_an_efi_qcow2_is_uploaded_with_what_nova_needs(cloud: Cloud, tmp_path: Path) -> None:
    image = qcow2(disk(tmp_path / "efi.img", "gpt"), "system-efi.qcow2")
    result = push(cloud, "--cloud", cloud.name, "--property", "os_distro=osbuilder", str(image))
    assert result.returncode == 0, result.stderr
    image_id = result.stdout.strip()
    record = image_record(cloud, image_id)
    assert record["name"] == "system-efi"  # the file's stem
    assert record["status"] == "active"
    assert (record["disk_format"], record["container_format"]) == ("qcow2", "bare")
    assert record["size"] == image.stat().st_size
    assert record["hw_firmware_type"] == "uefi"  # a GPT: Nova must boot it with UEFI
    assert record["os_distro"] == "osbuilder"
    data = cloud.connect().image.get(f"/images/{image_id}/file")
    assert data.content == image.read_bytes()


def test_the_disk_format_comes_from_the_contents(cloud: Cloud, tmp_path: Path) -> None:
    bios = disk(tmp_path / "named-like.qcow2", "dos")  # a raw MBR disk, whatever its name
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "hello").write_text("hello\n")
    iso = tmp_path / "system.iso"
    subprocess.run(
        ["xorriso", "-as", "mkisofs", "-quiet", "-o", str(iso), str(tree)],
        check=True,
        capture_output=True,
    )
    vhd = tmp_path / "system.vhd"
    fixed_vhd(bios, vhd, 0, uuid.uuid4())  # as the vhd format writes it
    dynamic = tmp_path / "system-dynamic.vhd"
    dynamic_vhd(bios, dynamic, 0, uuid.uuid4())
    vmdk = tmp_path / "system.vmdk"
    vmdk_disk(bios, vmdk, 1)
    for path, disk_format in (
        (bios, "raw"),
        (iso, "iso"),
        (vhd, "vhd"),
        (dynamic, "vhd"),
        (vmdk, "vmdk"),
    ):
        result = osbuilder(  # the cloud named by $OS_CLOUD, as for any OpenStack client
            "push", "openstack", "--json", str(path),
            env={"OS_CLIENT_CONFIG_FILE": str(cloud.clouds_yaml), "OS_CLOUD": cloud.name},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        pushed = json.loads(result.stdout)
        assert (pushed["status"], pushed["disk_format"]) == ("active", disk_format)
        record = image_record(cloud, pushed["id"])
        assert record["disk_format"] == disk_format
        assert "hw_firmware_type" not in record  # BIOS: Nova's default


def test_the_same_image_is_reused_and_any_other_is_new(cloud: Cloud, tmp_path: Path) -> None:
    image = disk(tmp_path / "again.img", "gpt")
    args = ("--cloud", cloud.name, "--img-name", "again", "--visibility", "private")
    first = push(cloud, *args, str(image))
    assert first.returncode == 0, first.stderr
    assert push(cloud, *args, str(image)).stdout == first.stdout  # same name, data, properties
    changed = push(cloud, *args, "--property", "os_version=2", str(image))
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout != first.stdout
    with image.open("r+b") as file:
        file.seek(3 << 20)
        file.write(b"new contents")
    other = push(cloud, *args, str(image))
    assert other.stdout not in (first.stdout, changed.stdout)
    listed = images_named(cloud, "again")
    assert sorted(i["id"] for i in listed) == sorted(
        r.stdout.strip() for r in (first, changed, other)
    )
    assert {i["visibility"] for i in listed} == {"private"}


def test_failures_are_one_line(cloud: Cloud, tmp_path: Path) -> None:
    image = disk(tmp_path / "x.img", "gpt")
    unknown = push(cloud, "--cloud", "nowhere", str(image))
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("osbuilder: OpenStack configuration: Cloud nowhere was not")
    assert len(unknown.stderr.splitlines()) == 1
    dead = tmp_path / "clouds.yaml"
    dead.write_text(cloud.clouds_yaml.read_text().replace(cloud.keystone, "http://127.0.0.1:9"))
    unreachable = osbuilder(
        "push",
        "openstack",
        "--cloud",
        cloud.name,
        str(image),
        env={"OS_CLIENT_CONFIG_FILE": str(dead)},
    )
    assert unreachable.returncode == 3
    assert unreachable.stderr.startswith("osbuilder: OpenStack: ")
    assert len(unreachable.stderr.splitlines()) == 1
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(cloud.clouds_yaml.read_text().replace("demo-secret", "not-the-password"))
    refused = osbuilder(
        "push", "openstack", "--cloud", cloud.name, str(image),
        env={"OS_CLIENT_CONFIG_FILE": str(wrong)},
    )  # fmt: skip
    assert refused.returncode == 1  # the user's to fix, as Keystone answers
    assert refused.stderr.startswith("osbuilder: OpenStack credentials: ")
    assert "(HTTP 401)" in refused.stderr and len(refused.stderr.splitlines()) == 1
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    for path, message in (
        (text, f"osbuilder: {text}: not a bootable image"),
        (tmp_path / "missing.qcow2", f"osbuilder: {tmp_path}/missing.qcow2: no such file"),
    ):
        result = push(cloud, "--cloud", cloud.name, str(path))
        assert (result.returncode, result.stderr.startswith(message)) == (1, True), result.stderr
    usage = push(cloud, "--property", "no-equals-sign", str(image))
    assert usage.returncode == 2
    assert "osbuilder push openstack: error: argument --property" in usage.stderr


def test_an_interrupted_upload_leaves_no_image_behind(cloud: Cloud, tmp_path: Path) -> None:
    image = disk(tmp_path / "big.img", "gpt")
    with image.open("r+b") as file:
        file.truncate(512 << 20)  # sparse: a few seconds of upload to interrupt
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "osbuilder",
            "push",
            "openstack",
            "--cloud",
            cloud.name,
            "--img-name",
            "interrupted",
            str(image),
        ],
        env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(cloud.clouds_yaml)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not images_named(cloud, "interrupted"):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the upload never started"
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)  # (the image exists: created, its data under way)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert stderr.strip().endswith("osbuilder: terminated")
    assert images_named(cloud, "interrupted") == []
