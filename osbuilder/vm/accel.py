"""Choosing QEMU's accelerator: KVM when it is there AND fast, else TCG.

/dev/kvm can exist and still be unusable: under nested virtualisation KVM
may be far slower than TCG. `auto` therefore boots the kernel about to run
under KVM (on its architecture's machine) until it panics for want of a root
filesystem, and keeps KVM only
if that takes under 1.5 s (a healthy KVM needs a fraction of it; TCG
several). The answer is remembered for a day. A disk image brings no kernel
to probe with: it gets the remembered answer, or KVM when there is none. OSBUILDER_QEMU_ACCEL or
--accel decide without probing.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from osbuilder.errors import ExternalError, UserError
from osbuilder.runner import run
from osbuilder.vm.qemu import MACHINES, kernel_architecture

log = logging.getLogger(__name__)

ACCELERATORS = ("auto", "kvm", "tcg")
PROBE_LIMIT = 1.5  # seconds for KVM to boot a kernel to its "no root" panic (TCG: ~3 s)
_REMEMBER = 24 * 3600


def choose_accel(requested: str | None, kernel: Path | None, cache: Path) -> str:
    choice = requested or os.environ.get("OSBUILDER_QEMU_ACCEL") or "auto"
    if choice not in ACCELERATORS:
        raise UserError(f"accelerator {choice!r}: use one of {', '.join(ACCELERATORS)}")
    if choice != "auto":
        return choice
    if not _kvm_device_usable():
        return "tcg"
    record = cache / "accel.json"
    try:
        known = json.loads(record.read_text())
        if time.time() - known["when"] < _REMEMBER:
            return str(known["accel"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if kernel is None:  # nothing to probe with (a disk image): trust the device, learn nothing
        return "kvm"
    accel = "kvm" if _kvm_is_fast(kernel) else "tcg"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"accel": accel, "when": time.time()}))
    except OSError:
        pass
    return accel


def _kvm_device_usable() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def _kvm_is_fast(kernel: Path) -> bool:
    started = time.monotonic()
    try:
        result = run(probe_command(kernel), timeout=PROBE_LIMIT, check=False)
    except ExternalError as error:  # too slow, or QEMU missing
        log.info("KVM probe: %s; using TCG", error)
        return False
    elapsed = time.monotonic() - started
    ok = b"Kernel panic" in result.stdout
    log.info("KVM probe: %s in %.2f s", "fast" if ok else "failed", elapsed)
    return ok


def probe_command(kernel: Path) -> list[str]:
    """QEMU booting `kernel` under KVM, on the machine of the kernel's architecture, to
    its panic for want of a root (straight from QEMU's loader: no firmware needed)."""
    machine = MACHINES[kernel_architecture(kernel)]
    return [
        machine.emulator,
        *(option.format(accel="kvm") for option in machine.options),
        "-m",
        "256",
        "-nographic",
        "-no-reboot",
        "-nic",
        "none",
        "-kernel",
        str(kernel),
        "-append",
        "console=ttyS0 console=ttyAMA0 panic=-1 root=/dev/nonexistent",
    ]
