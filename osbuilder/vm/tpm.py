"""A TPM 2.0 for the VM (`run --tpm`): swtpm, its state in the VM's state directory.

swtpm runs as a daemon beside QEMU, which talks to it over a UNIX socket (QEMU's
`-tpmdev emulator`); it ends when QEMU closes that connection (--terminate), and `run`
ends it itself when QEMU never connected. Its state (the TPM's keys and NV storage)
stays in STATE/tpm from one boot to the next, as a machine's TPM does; the PCRs start
from zero at each boot. OVMF measures what it starts into the PCRs, and systemd's EFI
stub, the unified kernel image's, measures its sections into PCR 11 (docs/verified-boot.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from pathlib import Path

from osbuilder.errors import ExternalError, cannot_write
from osbuilder.runner import run

OPTION = "--tpm"
SWTPM = "swtpm"


def socket_path(state: Path) -> Path:
    return state / "swtpm.sock"


def state_directory(state: Path) -> Path:
    return state / "tpm"


def pid_path(state: Path) -> Path:
    return state / "swtpm.pid"


def qemu_options(state: Path, device: str) -> list[str]:
    """QEMU's options for the TPM `start` serves, as `device` (tpm-tis on a PC)."""
    socket = str(socket_path(state)).replace(",", ",,")
    return [
        "-chardev",
        f"socket,id=chrtpm,path={socket}",
        "-tpmdev",
        "emulator,id=tpm0,chardev=chrtpm",
        "-device",
        f"{device},tpmdev=tpm0",
    ]


def start(state: Path) -> None:
    """Start swtpm in the background for a VM of `state` (any left by an earlier run is
    stopped first); returns once its socket is there."""
    if shutil.which(SWTPM) is None:
        raise ExternalError(f"{OPTION}: {SWTPM}: command not found (apt-get install swtpm)")
    stop(state)
    directory = state_directory(state)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot_write(directory, exc) from None
    run(
        [
            SWTPM,
            "socket",
            "--tpm2",
            "--tpmstate",
            f"dir={directory}",
            "--ctrl",
            f"type=unixio,path={socket_path(state)}",
            "--pid",
            f"file={pid_path(state)}",
            "--log",
            f"file={state / 'swtpm.log'}",
            "--terminate",
            "--daemon",
        ]
    )


def stop(state: Path) -> None:
    """End the swtpm of `state`, if one runs (QEMU never connected, or is gone)."""
    try:
        pid = int(pid_path(state).read_text().strip())
        running = Path(f"/proc/{pid}/comm").read_text().strip() == SWTPM  # (not a reused pid)
    except (OSError, ValueError):
        running = False
    if running:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(OSError):
        pid_path(state).unlink()
