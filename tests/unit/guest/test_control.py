"""The control socket over a real unix socket, and osbuilder-ctl against it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from osbuilder.guest import ctl
from osbuilder.guest.commands import ControlCommands
from osbuilder.guest.control import ControlServer, request
from osbuilder.guest.supervisor import Supervisor

from .fakes import FakeClock, FakeLauncher, RecordingConsole, Script, make_bundle


class Machine:
    def __init__(self, tmp_path: Path) -> None:
        self.console = RecordingConsole()
        self.launcher = FakeLauncher(
            {"redis": [Script(exit_code=None, output="ready\n")], "getty": [Script(exit_code=None)]}
        )
        self.supervisor = Supervisor(self.launcher, self.console, tmp_path / "log", FakeClock())
        self.shutdowns: list[str] = []
        self.socket = tmp_path / "run/osbuilder/control.sock"
        commands = ControlCommands(self.supervisor, self.shutdowns.append, stop_timeout=1.0)
        self.server = ControlServer(self.socket, commands, self.console)
        self.supervisor.start_all(
            [make_bundle(tmp_path, "services", "getty"), make_bundle(tmp_path, "services", "redis")]
        )
        self.server.start()
        deadline = time.monotonic() + 5
        while not all(s.state == "running" for s in self.supervisor.services.values()):
            assert time.monotonic() < deadline
            time.sleep(0.002)
        self.console.wait_for("redis: ready")

    def ctl(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        code = ctl.main(["--socket", str(self.socket), *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    running = Machine(tmp_path)
    yield running
    running.server.close()
    running.supervisor.stop_all(1.0)


def test_ps_over_the_socket(machine: Machine) -> None:
    answer = request(machine.socket, {"command": "ps"})
    assert answer["ok"] is True
    assert [s["name"] for s in answer["result"]] == ["getty", "redis"]
    assert answer["result"][1]["state"] == "running"
    assert oct(machine.socket.stat().st_mode & 0o777) == "0o600"


def test_ctl_ps_prints_a_table(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = machine.ctl(capsys, "ps")
    assert code == 0
    header, getty, redis = out.splitlines()
    assert header.split() == ["NAME", "STATE", "PID", "RESTARTS", "UPTIME", "LAST", "EXIT"]
    name, state, pid, restarts, *_ = redis.split()
    assert (name, state, restarts) == ("redis", "running", "0")
    assert pid in ("1000", "1001")
    assert getty.startswith("getty")


def test_ctl_logs_stop_start_restart(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    assert machine.ctl(capsys, "logs", "redis") == (0, "ready\n", "")
    assert machine.ctl(capsys, "stop", "redis")[:2] == (0, "redis: stopped\n")
    assert machine.supervisor.get("redis").state == "stopped"
    assert machine.ctl(capsys, "start", "redis")[:2] == (0, "redis: running\n")
    assert machine.ctl(capsys, "restart", "redis")[:2] == (0, "redis: running\n")
    assert machine.launcher.launches("redis") == 3


def test_ctl_errors(machine: Machine, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = machine.ctl(capsys, "stop", "nope")
    assert code == 1
    assert err == "osbuilder-ctl: no service 'nope' (services: getty, redis)\n"
    code = ctl.main(["--socket", str(tmp_path / "missing.sock"), "ps"])
    assert code == 2
    assert "cannot reach the init" in capsys.readouterr().err


def test_power_commands_reach_the_shutdown_switch(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert machine.ctl(capsys, "poweroff") == (0, "poweroff requested\n", "")
    assert machine.ctl(capsys, "reboot")[0] == 0
    assert machine.shutdowns == ["poweroff", "reboot"]


def test_bad_requests_get_an_error_not_a_crash(machine: Machine) -> None:
    assert request(machine.socket, {"command": "dance"}) == {
        "ok": False,
        "error": "dance: needs a service name",
    }
    assert request(machine.socket, {"command": "dance", "name": "redis"})["error"] == (
        "unknown command 'dance'"
    )
    assert request(machine.socket, {"nothing": 1})["ok"] is False
    assert request(machine.socket, {"command": "logs", "name": "redis", "lines": 0})["ok"] is False
    assert request(machine.socket, {"command": "ps"})["ok"] is True  # still serving
