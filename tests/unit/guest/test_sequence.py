"""onboot/onshutdown: in order, to completion, failures loud, the boot goes on."""

from __future__ import annotations

import signal
from pathlib import Path

from osbuilder.guest.sequence import run_sequence

from .fakes import FakeLauncher, RecordingConsole, Script, make_bundle


def test_onboot_runs_in_order_and_goes_on_after_failures(tmp_path: Path) -> None:
    bundles = [
        make_bundle(tmp_path, "onboot", name)
        for name in ("000-sysctl", "001-broken", "002-fails", "003-dhcpcd")
    ]
    launcher = FakeLauncher(
        {
            "sysctl": [Script(exit_code=0, output="net.ipv4.ip_forward = 1\n")],
            "broken": [Script(start_error="executable file `/x` not found")],
            "fails": [Script(exit_code=2, output="no lease\n")],
            "dhcpcd": [Script(exit_code=0, output="partial line without newline")],
        }
    )
    console = RecordingConsole()
    results = run_sequence(bundles, launcher, console, tmp_path / "log")
    assert [r.bundle.name for r in results] == ["sysctl", "broken", "fails", "dhcpcd"]
    assert [r.exit_code for r in results] == [0, None, 2, 0]
    assert [r.ok for r in results] == [True, False, False, True]
    assert [e for e in launcher.events if e.startswith("launch")] == [
        "launch sysctl",
        "launch broken",
        "launch fails",
        "launch dhcpcd",
    ]
    text = console.text
    assert "onboot/sysctl: net.ipv4.ip_forward = 1" in console.lines
    assert "init: onboot sysctl: exit code 0" in text
    assert "init: *** onboot broken FAILED to start: executable file `/x` not found ***" in text
    assert "init: *** onboot fails FAILED: exit code 2 ***" in text
    assert "onboot/dhcpcd: partial line without newline" in console.lines
    assert text.index("onboot/fails: no lease") < text.index("onboot fails FAILED")
    assert (tmp_path / "log/onboot.002-fails.log").read_text() == "no lease\n"
    assert all(c.finished_with is True for c in launcher.containers)  # mounts released
    assert all(c.finished_later is False for c in launcher.containers)
    # Asked to, the sequence leaves the cleaning up of each to the background.
    launcher = FakeLauncher({"sysctl": [Script(exit_code=0)]})
    run_sequence(bundles[:1], launcher, console, tmp_path / "log", cleanup_later=True)
    assert [c.finished_later for c in launcher.containers] == [True]


def test_a_container_past_its_timeout_is_killed(tmp_path: Path) -> None:
    launcher = FakeLauncher({"hang": [Script(exit_code=None)]})
    console = RecordingConsole()
    [result] = run_sequence(
        [make_bundle(tmp_path, "onshutdown", "000-hang")],
        launcher,
        console,
        tmp_path,
        timeout=0.05,
    )
    assert result.exit_code == -signal.SIGKILL
    assert result.error == "still running after 0.05 s, killed"
    assert "onshutdown hang FAILED: still running after 0.05 s, killed" in console.text


def test_a_shutdown_request_skips_the_rest(tmp_path: Path) -> None:
    launcher = FakeLauncher()
    bundles = [make_bundle(tmp_path, "onboot", f"00{n}-step") for n in range(3)]
    results = run_sequence(
        bundles,
        launcher,
        RecordingConsole(),
        tmp_path,
        should_stop=lambda: len(launcher.events) >= 2,
    )
    assert len(results) == 1
