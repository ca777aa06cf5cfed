"""The qemu-ga package through the agent channel `osbuilder run` attaches (STATE/qga.sock):
the host asks the guest's agent, as libvirt or Proxmox would, for its addresses and time,
then for a shutdown, which the init carries out cleanly."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.boot.conftest import BASE_SPEC, DHCPCD_ONBOOT, build_template, osbuilder, run_detached
from tests.conftest import Packages

pytestmark = pytest.mark.boot

SPEC = (
    BASE_SPEC
    + "onboot:"
    + DHCPCD_ONBOOT
    + """services:
  - name: qemu-ga
    image: {qemu-ga}
onshutdown:
  - name: bye
    image: {poweroff}
    command: [/bin/busybox, echo, "onshutdown ran"]
"""
)


class Agent:
    """A client of the guest agent's JSON protocol on the channel's host end."""

    def __init__(self, path: Path) -> None:
        self.connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.connection.connect(str(path))
        self.connection.settimeout(2)
        self.buffer = b""

    def send(self, command: str, **arguments: Any) -> None:
        message = {"execute": command, **({"arguments": arguments} if arguments else {})}
        self.connection.sendall(json.dumps(message).encode() + b"\n")

    def reply(self) -> Any:
        while b"\n" not in self.buffer:
            chunk = self.connection.recv(65536)
            if not chunk:
                raise ConnectionError("the channel closed")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        answer = json.loads(line)
        assert "error" not in answer, answer
        return answer["return"]

    def ask(self, command: str, **arguments: Any) -> Any:
        self.send(command, **arguments)
        return self.reply()

    def synchronise(self, deadline: float) -> None:
        """guest-sync until the agent answers (it starts after the boot), each try with a
        new id: the answers come in order, so once the last try's comes, none is left."""
        token = 4700
        while time.monotonic() < deadline:
            token += 1
            self.send("guest-sync", id=token)
            try:
                while self.reply() != token:
                    pass
                return
            except TimeoutError:
                continue
        raise TimeoutError("the guest agent never answered")


def test_the_guest_agent_answers_and_shuts_the_guest_down(
    packages: Packages, tmp_path: Path
) -> None:
    system = build_template(packages, SPEC, tmp_path / "agent")
    state = tmp_path / "state"
    started = run_detached(system, None, "--state", str(state))
    assert started.returncode == 0, started.stderr
    try:
        agent = Agent(state / "qga.sock")
        agent.synchronise(time.monotonic() + 180)
        assert agent.ask("guest-ping") == {}
        assert agent.ask("guest-info")["version"].startswith("7.")
        interfaces = {i["name"]: i for i in agent.ask("guest-network-get-interfaces")}
        addresses = {a["ip-address"] for a in interfaces["eth0"]["ip-addresses"]}
        assert "10.0.2.15" in addresses  # QEMU's user network leased it to dhcpcd
        assert abs(agent.ask("guest-get-time") / 1e9 - time.time()) < 60
        agent.send("guest-shutdown", mode="powerdown")  # no answer: the guest goes
        pid = json.loads((state / "vm.json").read_text())["pid"]
        deadline = time.monotonic() + 60
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Path(f"/proc/{pid}").exists(), "QEMU still runs after guest-shutdown"
    finally:
        osbuilder("stop", str(state))
    console = (state / "console.log").read_text(errors="replace")
    assert "qemu-ga: org.qemu.guest_agent.0 is /dev/vport" in console
    assert "init: shutting down (poweroff)" in console
    assert "onshutdown/bye: onshutdown ran" in console
    assert "reboot: Power down" in console
