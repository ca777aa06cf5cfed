"""`osbuilder run` in the foreground stops its VM when it is itself stopped (SIGTERM),
as `timeout`, `kill` and CI runners stop commands, rather than leaving QEMU running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.boot.test_kernel import kernel_files
from tests.conftest import Packages

pytestmark = pytest.mark.boot


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sigterm_stops_the_vm_and_exits_143(packages: Packages, tmp_path: Path) -> None:
    files = kernel_files(packages.store, packages["osbuilder/kernel"], tmp_path / "k")
    prefix = tmp_path / "out/sys"
    prefix.parent.mkdir()
    (prefix.parent / "sys-kernel").write_bytes(files["kernel"].read_bytes())
    # Any initrd: the VM only has to be running when osbuilder is told to stop.
    (prefix.parent / "sys-initrd.img").write_bytes(b"070701" + b"0" * 104)
    (prefix.parent / "sys-cmdline").write_text("console=ttyS0 panic=0")
    state = tmp_path / "state"
    command = [sys.executable, "-m", "osbuilder", "run", "--accel", "tcg", "--net", "none"]
    command += ["--state", str(state), str(prefix)]
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        pid_file = state / "qemu.pid"
        _wait_for(lambda: pid_file.is_file() and pid_file.read_text().strip(), 60)
        qemu = int(pid_file.read_text())
        assert _alive(qemu)
        run.send_signal(signal.SIGTERM)
        _, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 128 + signal.SIGTERM
    assert stderr.strip().endswith("osbuilder: terminated")
    _wait_for(lambda: not _alive(qemu), 10)
