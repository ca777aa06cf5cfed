"""The shutdown sequence, the switch that starts it, and the mount table it undoes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from osbuilder.guest import shutdown, syscalls
from osbuilder.guest.shutdown import (
    ShutdownSteps,
    ShutdownSwitch,
    mount_points,
    release_swap,
    shut_down,
    swap_areas,
)

from .fakes import RecordingConsole


def recording_steps(calls: list[str], failing: str = "") -> ShutdownSteps:
    def step(name: str) -> None:
        calls.append(name)
        if name == failing:
            raise RuntimeError(f"{name} broke")

    return ShutdownSteps(
        run_onshutdown=lambda: step("onshutdown"),
        stop_services=lambda timeout: step(f"stop services {timeout:g}"),
        kill_remaining=lambda grace: step(f"kill remaining {grace:g}"),
        release_swap=lambda: step("swap off"),
        sync=lambda: step("sync"),
        unmount_all=lambda: step("unmount"),
        reboot=lambda command: step(f"reboot {command:#x}"),
    )


def test_steps_run_in_order_and_end_in_reboot() -> None:
    calls: list[str] = []
    shut_down("poweroff", recording_steps(calls), RecordingConsole(), timeout=10)
    assert calls == [
        "onshutdown",
        "stop services 10",
        "kill remaining 2",
        "swap off",
        "sync",
        "unmount",
        f"reboot {syscalls.RB_POWER_OFF:#x}",
    ]


def test_a_failing_step_does_not_stop_the_shutdown() -> None:
    calls: list[str] = []
    console = RecordingConsole()
    shut_down("reboot", recording_steps(calls, failing="onshutdown"), console, timeout=0.5)
    assert calls[-1] == f"reboot {syscalls.RB_AUTOBOOT:#x}"
    assert "shutdown: onshutdown: RuntimeError('onshutdown broke')" in console.text
    assert "stop services 0.5" in calls


def test_a_failing_reboot_is_reported() -> None:
    calls: list[str] = []
    console = RecordingConsole()
    shut_down(
        "halt", recording_steps(calls, failing=f"reboot {syscalls.RB_HALT_SYSTEM:#x}"), console, 1
    )
    assert "reboot(2) failed" in console.text


def test_the_first_request_wins() -> None:
    switch = ShutdownSwitch()
    assert not switch.requested
    waiter = threading.Thread(target=switch.wait)
    waiter.start()
    switch.request("nonsense")
    assert not switch.requested
    switch.request("poweroff")
    switch.request("reboot")
    waiter.join(1)
    assert not waiter.is_alive()
    assert switch.wait(0) == "poweroff"


def test_mount_points_in_mount_order_with_escapes() -> None:
    mountinfo = (
        "22 1 0:21 / / rw - rootfs rootfs rw\n"
        "23 22 0:22 / /proc rw,relatime - proc proc rw\n"
        "40 22 0:30 / /containers/volumes/my\\040data/merged rw - overlay overlay rw\n"
    )
    assert mount_points(mountinfo) == ["/", "/proc", "/containers/volumes/my data/merged"]


PROC_SWAPS = """\
Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority
/var/external/swap\\040file               file\t\t65512\t\t0\t\t-2
/dev/dm-0                               partition\t32764\t\t0\t\t-3
"""


def test_swap_areas_from_proc_swaps() -> None:
    assert swap_areas(PROC_SWAPS) == ["/var/external/swap file", "/dev/dm-0"]
    assert swap_areas(PROC_SWAPS.splitlines(keepends=True)[0]) == []


MOUNTINFO = """\
1 0 0:2 / / rw - rootfs rootfs rw
22 1 0:5 / /dev rw - devtmpfs devtmpfs rw
40 1 253:1 / /var/external rw - ext4 /dev/vda1 rw
"""


def test_release_swap_finds_each_area_under_the_inits_mounts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Areas a container turned on are named from its mounts' roots: /swapfile is the data
    disk's, /mapper/x the device's; each is tried under the init's mount points, deepest
    first, until swapoff takes one."""
    areas = {"/var/external/swapfile", "/dev/mapper/secret"}  # what swapoff(2) accepts
    calls: list[str] = []

    def swapoff(path: str) -> None:
        calls.append(path)
        if path not in areas:
            raise OSError(22, f"swapoff {path}: Invalid argument")
        areas.remove(path)

    monkeypatch.setattr(shutdown.syscalls, "swapoff", swapoff)
    monkeypatch.setattr(
        shutdown.syscalls, "remove_unused_device_mappings", lambda: calls.append("dm remove all")
    )
    swaps, mountinfo = tmp_path / "swaps", tmp_path / "mountinfo"
    swaps.write_text(
        "Filename Type Size Used Priority\n"
        "/swapfile file 65512 0 -2\n"
        "/mapper/secret partition 32764 0 -3\n"
        "/gone file 100 0 -4\n"
    )
    mountinfo.write_text(MOUNTINFO)
    # One that no name reaches does not keep the others on; it is reported after all.
    with pytest.raises(OSError, match=r"^swapoff /gone: Invalid argument$"):
        release_swap(swaps, mountinfo)
    assert not areas
    assert calls == [
        "/swapfile",
        "/var/external/swapfile",
        "/mapper/secret",
        "/var/external/mapper/secret",
        "/dev/mapper/secret",
        "/gone",
        "/var/external/gone",
        "/dev/gone",
        "dm remove all",
    ]
