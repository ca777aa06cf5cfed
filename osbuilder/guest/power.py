"""The ACPI power button, without acpid: QEMU's `system_powerdown` (and a cloud's "stop")
presses it; the kernel's button driver reports KEY_POWER on an evdev device, read here.
"""

from __future__ import annotations

import os
import select
import struct
import threading
from collections.abc import Callable

from osbuilder.guest.console import Console
from osbuilder.guest.fspath import Path

EV_KEY = 1
KEY_POWER = 116
# struct input_event: struct timeval (two longs), __u16 type, __u16 code, __s32 value
_EVENT = struct.Struct("@llHHi")
_BITS_PER_WORD = 8 * struct.calcsize("@l")


def has_bit(bitmap: str, bit: int) -> bool:
    """sysfs capability bitmaps are hex longs, the most significant word first."""
    words = bitmap.split()
    index = bit // _BITS_PER_WORD
    if index >= len(words):
        return False
    return bool(int(words[-1 - index], 16) >> (bit % _BITS_PER_WORD) & 1)


def power_button_devices(sysfs: Path, dev: Path) -> list[Path]:
    """The event devices that can report KEY_POWER."""
    found: list[Path] = []
    for event in sorted((sysfs / "class/input").glob("event*")):
        try:
            keys = (event / "device/capabilities/key").read_text()
        except OSError:
            continue
        if has_bit(keys, KEY_POWER):
            found.append(dev / "input" / event.name)
    return found


def power_presses(data: bytes) -> int:
    """How many KEY_POWER presses a read of whole input_events holds."""
    presses = 0
    for offset in range(0, len(data) - _EVENT.size + 1, _EVENT.size):
        _, _, kind, code, value = _EVENT.unpack_from(data, offset)
        if kind == EV_KEY and code == KEY_POWER and value == 1:
            presses += 1
    return presses


class PowerButtonWatcher:
    def __init__(self, devices: list[Path], on_press: Callable[[], None], console: Console) -> None:
        self._on_press = on_press
        self._console = console
        self._fds: list[int] = []
        for device in devices:
            try:
                self._fds.append(os.open(device, os.O_RDONLY | os.O_CLOEXEC))
            except OSError as error:
                console.info(f"power button {device}: {error.strerror}")

    @property
    def watching(self) -> int:
        return len(self._fds)

    def start(self) -> None:
        if self._fds:
            threading.Thread(target=self._run, name="power button", daemon=True).start()

    def _run(self) -> None:
        while self._fds:
            try:
                ready, _, _ = select.select(self._fds, [], [])
                for fd in ready:
                    data = os.read(fd, _EVENT.size * 64)
                    if not data:
                        self._fds.remove(fd)
                    elif power_presses(data):
                        self._console.info("power button pressed")
                        self._on_press()
            except Exception as error:
                self._console.error(f"power button watcher stopped: {error!r}")
                return
