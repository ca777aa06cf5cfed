"""The sysctl, swap and poweroff packages in one boot: kernel settings from the image's
defaults, a spec's file and arguments; swap files on ext4 and btrfs data disks, one
encrypted; and a clean poweroff asked for by a container, after which the swap is off and
the disks are unmounted. And the init's log rotation (osbuilder.log_size, log_files)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.boot.conftest import BASE_SPEC, build_template, run_until_poweroff
from tests.conftest import Packages

pytestmark = pytest.mark.boot

SPEC = (
    BASE_SPEC
    + """
onboot:
  - name: sysctl
    image: {sysctl}
    command: [/usr/bin/sysctl.sh, vm.swappiness=13, net/ipv4/conf/lo/rp_filter=2]
    binds.add: [/etc/sysctl.d/50-app.conf:/etc/sysctl.d/50-app.conf]
  - name: sysctl-bad
    image: {sysctl}
    command: [/usr/bin/sysctl.sh, kernel.nosuch=1, -kernel.optional.nosuch=1, vm.swappiness=lots]
  - name: format
    image: {format}
    command: [/usr/bin/format, -label, EXTSWAP, /dev/vda]
  - name: mount
    image: {mount}
    command: [/usr/bin/mountie, -label, EXTSWAP, /var/external]
  - name: swap
    image: {swap}
    command:
      - /swap.sh
      - --path
      - /var/external/swapfile
      - --size
      - 64M
      - --condition
      - part:/var/external:true
      - --condition
      - partsize:/var/external:100M
  - name: swap-encrypted
    image: {swap}
    command: [/swap.sh, --path, /var/external/private/swap, --size, 32M, --encrypt]
  - name: format-btrfs
    image: {format}
    command: [/usr/bin/format, -type, btrfs, -label, BTRSWAP, /dev/vdb]
  - name: mount-btrfs
    image: {mount}
    command: [/usr/bin/mountie, -label, BTRSWAP, /var/btrfs]
  - name: swap-btrfs
    image: {swap}
    command: [/swap.sh, --path, /var/btrfs/swap, --size, 32M]
  - name: swap-unmet
    image: {swap}
    command: [/swap.sh, --path, /var/other/swap, --size, 32M, --condition, "part:/var/other"]
  - name: swap-too-small
    image: {swap}
    command:
      [/swap.sh, --path, /var/other/swap, --size, 32M, --condition, "partsize:/var/btrfs:1G:true"]
  - name: swap-tmpfs
    image: {swap}
    command: [/swap.sh, --path, /var/swap, --size, 32M]
  - name: chatty
    image: {mount}
    command:
      - /bin/sh
      - -c
      - for i in $(seq 400); do echo "line $i of a chatty container, to fill its log"; done
  - name: check
    image: {mount}
    net: host
    binds.add: [/var/log:/var/log]
    command:
      - /bin/sh
      - -c
      - >-
        for k in vm/swappiness fs/inotify/max_user_watches kernel/dmesg_restrict
        net/ipv4/conf/lo/rp_filter vm/dirty_ratio; do echo "setting: $k $(cat /proc/sys/$k)"; done;
        echo "swap areas: $(sed 1d /proc/swaps | wc -l)";
        for f in /var/log/*chatty*; do echo "log: ${{f##*/}} $(wc -c < $f)"; done
  - name: poweroff
    image: {poweroff}
    command: [/poweroff.sh, "1"]
  - name: never
    image: {mount}
    command: [/bin/echo, "onboot after poweroff ran"]
onshutdown:
  - name: bye
    image: {mount}
    command: [/bin/sh, -c, 'echo "onshutdown: swap areas: $(sed 1d /proc/swaps | wc -l)"']
files:
  - path: etc/sysctl.d/50-app.conf
    contents: "vm.dirty_ratio = 7\\n"
    mode: "0644"
"""
)


def test_sysctl_swap_and_poweroff(packages: Packages, tmp_path: Path) -> None:
    prefix = build_template(packages, SPEC, tmp_path / "packages")
    ext4, btrfs = tmp_path / "ext4.img", tmp_path / "btrfs.img"
    subprocess.run(["truncate", "-s", "256M", str(ext4)], check=True)
    subprocess.run(["truncate", "-s", "320M", str(btrfs)], check=True)
    console = run_until_poweroff(
        prefix,
        tmp_path / "state",
        f"--disk={ext4},format=raw",
        f"--disk={btrfs},format=raw",
        "--append=osbuilder.log_size=8K osbuilder.log_files=1",
    )

    # sysctl: the image's defaults, the spec's file (bound in), then the arguments.
    assert "onboot/sysctl: sysctl: 27 applied" in console
    assert "setting: vm/swappiness 13" in console
    assert "setting: fs/inotify/max_user_watches 524288" in console
    assert "setting: kernel/dmesg_restrict 1" in console
    assert "setting: net/ipv4/conf/lo/rp_filter 2" in console  # the system's network
    assert "setting: vm/dirty_ratio 7" in console
    assert "sysctl: argument: kernel.nosuch = 1: this kernel has no such setting" in console
    assert (
        "sysctl: argument: kernel.optional.nosuch: this kernel has no such setting "
        "(optional: skipped)"
    ) in console
    assert "sysctl: argument: vm.swappiness = lots: the kernel refused the value" in console
    assert "*** onboot sysctl-bad FAILED: exit code 1 ***" in console

    # swap: three areas, one of them through dm-crypt; unmet conditions.
    assert "swap: /var/external/swapfile: 64M of swap" in console
    assert "Adding 65512k swap on /var/external/swapfile." in console
    assert (
        "swap: /var/external/private/swap: 32M of swap "
        "(encrypted, /dev/mapper/swap-external-private-swap)"
    ) in console
    assert "swap: /var/btrfs/swap: 32M of swap" in console
    assert "swap areas: 3" in console
    assert "swap: /var/other is not a mount point: no swap file" in console
    assert "onboot swap-unmet: exit code 0" in console
    assert "less than 1G (a required condition): no swap file" in console
    assert "*** onboot swap-too-small FAILED: exit code 1 ***" in console
    assert "swap: /var/swap is on ramfs, which cannot hold swap" in console  # (the root)

    # A log past 8 KiB is rotated; one old file is kept.
    logs = dict(line.split()[-2:] for line in console.splitlines() if "log: " in line)
    assert sorted(logs) == ["onboot.012-chatty.log", "onboot.012-chatty.log.1"], logs
    assert all(0 < int(size) <= 8192 for size in logs.values()), logs
    assert "line 400 of a chatty container, to fill its log" in console

    # poweroff: asked for by a container, done by the init: the rest of onboot is skipped,
    # onshutdown runs, then the swap goes off and both disks are unmounted cleanly.
    assert "poweroff: poweroff in 1 s" in console
    assert "onboot: skipping never and the rest" in console
    assert "onboot after poweroff ran" not in console
    assert "onshutdown: swap areas: 3" in console
    assert "shutdown: swap off" not in console
    assert "EXT4-fs (vda1): unmounting filesystem" in console
    assert "BTRFS info (device vdb1): last unmount of filesystem" in console
