"""Controlling running VMs through their state directory: QMP, pid, records.

A state directory (default PREFIX-state, as LinuxKit's) holds qemu.pid,
qmp.sock, console.log and vm.json (what was started, which ports). Running
VMs are also listed in $XDG_CACHE_HOME/osbuilder/vms/ so that `osbuilder ps`
finds them wherever their state lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from msgspec import Struct
from qemu.qmp import QMPClient
from qemu.qmp.error import QMPError

from osbuilder.errors import ExternalError, UserError


def registry_dir(cache: Path) -> Path:
    return cache / "vms"


class RunningVm(Struct, frozen=True):
    state: Path
    pid: int
    record: dict[str, Any]


def read_pid(state: Path) -> int | None:
    try:
        return int((state / "qemu.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not running
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def refuse_running(state: Path) -> None:
    """A clear error if a VM runs in the state directory `state`."""
    if alive(read_pid(state)):
        raise UserError(
            f"{state}: a VM is already running there; stop it first (osbuilder stop {state})"
        )


def register(cache: Path, state: Path, record: dict[str, Any]) -> None:
    (state / "vm.json").write_text(json.dumps(record, indent=2) + "\n")
    directory = registry_dir(cache)
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:16]
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    link.symlink_to(state.resolve())


def running(cache: Path) -> list[RunningVm]:
    found = []
    directory = registry_dir(cache)
    if not directory.is_dir():
        return []
    for link in sorted(directory.iterdir()):
        state = link.resolve()
        pid = read_pid(state)
        if not alive(pid):
            with contextlib.suppress(OSError):
                link.unlink()  # forget VMs that are gone
            continue
        try:
            record = json.loads((state / "vm.json").read_text())
        except (OSError, ValueError):
            record = {}
        assert pid is not None
        found.append(RunningVm(state, pid, record))
    return found


def stop(state: Path, timeout: float = 30.0) -> str:
    """Power the VM off: ACPI powerdown through QMP, `quit` after `timeout`, then SIGKILL."""
    pid = read_pid(state)
    if not alive(pid):
        raise UserError(f"{state}: no VM is running there")
    assert pid is not None
    with contextlib.suppress(ExternalError):  # QMP gone: the signal below will do
        asyncio.run(_qmp(state / "qmp.sock", "system_powerdown"))
    if _wait_gone(pid, timeout):
        return "powered off"
    with contextlib.suppress(ExternalError):
        asyncio.run(_qmp(state / "qmp.sock", "quit"))
    if _wait_gone(pid, 5):
        return "quit"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _wait_gone(pid, 5)
    return "killed"


def user_network_state(state: Path) -> str:
    """QEMU's table of user-network connections (`info usernet`)."""
    answer = asyncio.run(
        _qmp(state / "qmp.sock", "human-monitor-command", {"command-line": "info usernet"})
    )
    return str(answer)


async def _qmp(socket_path: Path, command: str, arguments: dict[str, Any] | None = None) -> Any:
    client = QMPClient("osbuilder")
    try:
        await client.connect(str(socket_path))
        return await client.execute(command, arguments)
    except (QMPError, OSError, EOFError) as exc:
        raise ExternalError(f"QMP {command} on {socket_path}: {exc}") from None
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return not alive(pid)
