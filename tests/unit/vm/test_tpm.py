"""`run --tpm`: swtpm beside QEMU, its state in the VM's state directory."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from osbuilder.errors import ExternalError
from osbuilder.media import MediaBoot
from osbuilder.vm import tpm
from osbuilder.vm.qemu import VmConfig, qemu_command
from osbuilder.vm.run import run_foreground
from tests.unit.vm.test_vm import GPT, MBR, image


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "swtpm"
    except OSError:
        return False


def test_the_vm_gets_a_tpm_tis_device_backed_by_swtpms_socket(tmp_path: Path) -> None:
    disk = MediaBoot.from_file(image(tmp_path / "a,b-efi.img", MBR, GPT))
    config = VmConfig(disk, tmp_path / "st,ate", tpm=True)
    command = " ".join(qemu_command(config))
    assert f"-chardev socket,id=chrtpm,path={tmp_path}/st,,ate/swtpm.sock" in command
    assert "-tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis,tpmdev=tpm0" in command
    assert "-tpmdev" not in qemu_command(VmConfig(disk, tmp_path / "other"))


def test_swtpm_serves_from_the_state_directory_until_stopped(tmp_path: Path) -> None:
    state = tmp_path / "state"
    tpm.start(state)
    pid = int(tpm.pid_path(state).read_text())
    try:
        assert running(pid)
        assert tpm.socket_path(state).is_socket()
        assert tpm.state_directory(state).is_dir()
    finally:
        tpm.stop(state)
    deadline = time.monotonic() + 10
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(pid)
    assert not tpm.pid_path(state).exists()
    tpm.stop(state)  # (none running: nothing to do)


def test_without_swtpm_run_tpm_says_what_to_install_before_starting_a_vm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = tmp_path / "bin" / "qemu-system-x86_64"  # QEMU, but no swtpm, on the PATH
    emulator.parent.mkdir()
    emulator.symlink_to("/usr/bin/qemu-system-x86_64")
    monkeypatch.setenv("PATH", str(emulator.parent))
    disk = MediaBoot.from_file(image(tmp_path / "a-efi.img", MBR, GPT))
    config = VmConfig(disk, tmp_path / "state", tpm=True)
    with pytest.raises(ExternalError) as missing:
        run_foreground(config, tmp_path / "cache", timeout=10)
    assert str(missing.value) == "--tpm: swtpm: command not found (apt-get install swtpm)"
    assert not config.pid_file.exists()  # no VM was started
    assert not os.path.exists(tpm.socket_path(config.state))
