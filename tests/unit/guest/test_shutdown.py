"""The shutdown sequence, the switch that starts it, and the mount table it undoes."""

from __future__ import annotations

import threading

from osbuilder.guest import syscalls
from osbuilder.guest.shutdown import ShutdownSteps, ShutdownSwitch, mount_points, shut_down

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
