"""examples/redis-disk.yml with `run --disk`: the format and mount packages keep Redis's data
on a disk across reboots, whichever medium the system boots from."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.boot.conftest import (
    build_system,
    free_port,
    osbuilder,
    redis_cli,
    run_detached,
    run_until_poweroff,
    spec_text,
)
from tests.conftest import REPO, Packages

pytestmark = pytest.mark.boot


def boot_with_disks(target: Path, disks: list[str], use: Callable[[int], None]) -> str:
    """Boot `target` with a `--disk` of each of `disks`, `use` its Redis port, power it off;
    returns the console."""
    port = free_port()
    state = Path(f"{target}-state")
    started = run_detached(target, port, *(f"--disk={disk}" for disk in disks))
    try:  # (a VM that started but did not answer is stopped too)
        assert started.returncode == 0, started.stderr
        use(port)
    finally:
        stopped = osbuilder("stop", str(state))
    assert stopped.returncode == 0, stopped.stderr
    return (state / "console.log").read_text(errors="replace")


def test_data_survives_reboots_and_a_change_of_boot_medium(
    packages: Packages, tmp_path: Path
) -> None:
    prefix = build_system(
        packages, REPO / "examples/redis-disk.yml", tmp_path / "out", "kernel+initrd", "raw-bios"
    )
    disk = tmp_path / "data.qcow2"
    # Someone's data: a file system on a whole disk, no partition table. Not to be formatted.
    theirs = tmp_path / "theirs.img"
    subprocess.run(["truncate", "-s", "32M", str(theirs)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-L", "THEIRS", str(theirs)], check=True)
    untouched = theirs.read_bytes()

    def first(port: int) -> None:
        assert redis_cli(port, "set", "greeting", "hello") == "OK"

    console = boot_with_disks(prefix, [f"{theirs},format=raw", f"file={disk},size=256M"], first)
    assert theirs.read_bytes() == untouched
    assert "format: /dev/vda holds a file system (ext4): skipped" in console
    assert disk.is_file()  # made by --disk
    assert "format: /dev/vdb1: ext4, label REDIS" in console
    assert "mountie: /dev/vdb1 (ext4) on /var/lib/redis" in console
    assert "EXT4-fs (vdb1): unmounting filesystem" in console  # a clean poweroff

    def second(port: int) -> None:
        assert redis_cli(port, "get", "greeting") == "hello"
        assert redis_cli(port, "set", "boots", "2") == "OK"

    console = boot_with_disks(prefix, [f"file={disk}"], second)
    assert "format: no disk without a partition table or a file system" in console
    assert "mountie: /dev/vda1 (ext4) on /var/lib/redis" in console

    # From the raw-bios disk: it is the read-only vda that format must never take; the data
    # disk is vdb now, found by its label.
    def third(port: int) -> None:
        assert redis_cli(port, "mget", "greeting", "boots") == "hello\n2"

    console = boot_with_disks(prefix.parent / "redis-disk-bios.img", [f"file={disk}"], third)
    assert "format: no disk without a partition table or a file system" in console
    assert "mountie: /dev/vdb1 (ext4) on /var/lib/redis" in console


OPTIONS_SPEC = """
kernel:
  image: {kernel}
  cmdline: "console=ttyS0"
init: [{init}, {crun}]
onboot:
  - name: gpt
    image: {format}
    command: [/usr/bin/format, -type, ext4, -partition, gpt, -label, GPTDISK, /dev/vda]
  - name: again
    image: {format}
    command: [/usr/bin/format, -label, OTHER, /dev/vda]
  - name: forced
    image: {format}
    command: [/usr/bin/format, -force, -verbose, -label, FORCED, /dev/vdb]
  - name: xfs
    image: {format}
    command: [/usr/bin/format, -type, xfs, -label, XFSDISK]
  - name: btrfs
    image: {format}
    command: [/usr/bin/format, -type, btrfs, -label, BTRFSDISK, -partition, gpt]
  - name: zfs
    image: {format}
    command: [/usr/bin/format, -type, zfs]
  - name: by-device
    image: {mount}
    command: [/usr/bin/mountie, -device, /dev/vda1, /var/lib/one]
  - name: by-label
    image: {mount}
    command: [/usr/bin/mountie, -label, FORCED, /var/lib/two]
  - name: xfs-mount
    image: {mount}
    command: [/usr/bin/mountie, -label, XFSDISK, /var/lib/xfs]
  - name: btrfs-mount
    image: {mount}
    command: [/usr/bin/mountie, -label, BTRFSDISK, /var/lib/btrfs]
  - name: no-such-label
    image: {mount}
    command: [/usr/bin/mountie, -label, NOPE, /var/lib/three]
  - name: outside-var
    image: {mount}
    command: [/usr/bin/mountie, /dev/vda1, /mnt]
  - name: check
    image: {mount}
    command:
      - /bin/sh
      - -c
      - >-
        for d in one two xfs btrfs; do echo "$d" > "/var/lib/$d/marker"; done &&
        grep " /var/lib/" /proc/mounts | cut -d " " -f 1-3 | sed "s/^/mounted: /"
services:
  - name: done
    image: {getty}
    command: [osbuilder-ctl, poweroff]
"""


def partition_label(image: Path) -> tuple[str, str]:
    """The partition table type of a raw disk image and its first partition's fs label."""
    dump = json.loads(
        subprocess.run(
            ["sfdisk", "--json", str(image)], capture_output=True, text=True, check=True
        ).stdout
    )["partitiontable"]
    start = dump["partitions"][0]["start"] * dump.get("sectorsize", 512)
    label = subprocess.run(
        ["blkid", "-p", "-O", str(start), "-o", "value", "-s", "LABEL", str(image)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return dump["label"], label


def test_format_and_mount_options(packages: Packages, tmp_path: Path) -> None:
    spec = tmp_path / "options.yml"
    spec.write_text(spec_text(packages, OPTIONS_SPEC))
    prefix = build_system(packages, spec, tmp_path / "out")
    blank = tmp_path / "blank.img"
    theirs = tmp_path / "theirs.img"  # a whole-disk file system: -force takes it anyway
    xfs, btrfs = tmp_path / "xfs.img", tmp_path / "btrfs.img"  # found blank by format
    subprocess.run(["truncate", "-s", "64M", str(blank), str(theirs)], check=True)
    subprocess.run(["truncate", "-s", "320M", str(xfs), str(btrfs)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-L", "THEIRS", str(theirs)], check=True)
    disks = (f"--disk={disk},format=raw" for disk in (blank, theirs, xfs, btrfs))
    console = run_until_poweroff(prefix, tmp_path / "state", *disks)
    assert "format: /dev/vda1: ext4, label GPTDISK" in console
    assert "format: /dev/vda is partitioned already: left as it is" in console
    assert "format: partitioning /dev/vdb (dos)" in console  # -verbose
    assert "format: /dev/vdb1: ext4, label FORCED" in console
    assert "format: /dev/vdc1: xfs, label XFSDISK" in console
    assert "format: /dev/vdd1: btrfs, label BTRFSDISK" in console
    assert "format: -type zfs: ext4, xfs or btrfs" in console
    assert "*** onboot zfs FAILED: exit code 1 ***" in console
    assert "mountie: /dev/vdc1 (xfs) on /var/lib/xfs" in console
    assert "mountie: /dev/vdd1 (btrfs) on /var/lib/btrfs" in console
    assert "mountie: /dev/vda1 (ext4) on /var/lib/one" in console
    assert "mountie: /dev/vdb1 (ext4) on /var/lib/two" in console
    assert "mountie: no file system with LABEL=NOPE" in console
    assert "mountie: /mnt: mount points are under /var" in console
    assert "mounted: /dev/vda1 /var/lib/one ext4" in console
    assert "mounted: /dev/vdb1 /var/lib/two ext4" in console
    assert "mounted: /dev/vdc1 /var/lib/xfs xfs" in console
    assert "mounted: /dev/vdd1 /var/lib/btrfs btrfs" in console
    assert "onboot check: exit code 0" in console
    assert partition_label(blank) == ("gpt", "GPTDISK")
    assert partition_label(theirs) == ("dos", "FORCED")
    assert partition_label(xfs) == ("dos", "XFSDISK")
    assert partition_label(btrfs) == ("gpt", "BTRFSDISK")
