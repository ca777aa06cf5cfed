"""Load the kernel modules this machine's devices need, plus a fixed few (overlay).

Loading a bus driver makes new devices appear (virtio_pci brings the virtio devices
that want virtio_net, virtio_blk ...), so devices are scanned again after each round
until a round finds nothing new. The drivers of the PCI and virtio devices go first, in
rounds of their own, and everything else after them: the network driver then probes as
early as it can, which matters because the kernel reports a new link's carrier about a
second after the probe (linkwatch's rate limit; measured under QEMU), and the DHCP
client waits for it. Modules go in with finit_module(2), straight from the file; an xz
or gzip module the kernel cannot decompress itself is inflated here.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Iterable

from osbuilder.guest import syscalls
from osbuilder.guest.console import Console
from osbuilder.guest.fspath import Path
from osbuilder.guest.kmod import ModuleIndex, bus_of, normalize

ALWAYS_LOADED = ("overlay",)
# CPU feature aliases pull in crypto and KVM modules a small VM does not need; skipping
# the bus saves boot time. osbuilder.modules= can still name any of them.
SKIPPED_BUSES = frozenset({"cpu"})
FIRST_BUSES = frozenset({"pci", "virtio"})
_MAX_ROUNDS = 8
# "No such device": the module found nothing to drive; normal for alias matches.
_QUIET_ERRORS = frozenset({errno.ENODEV, errno.ENOENT})
# Told after each round: its number (from 1), the modules it loaded, its seconds.
RoundCallback = Callable[[int, list[str], float], None]


class LoadReport:
    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.failed: dict[str, str] = {}
        self.seconds = 0.0
        self.timings: dict[str, float] = {}  # module -> seconds to load


def load_module_file(path: Path) -> None:
    """finit_module, or init_module on an image inflated here when the kernel cannot."""
    with open(path, "rb") as file:
        if path.suffix == ".ko":
            syscalls.finit_module(file.fileno())
            return
        try:
            syscalls.finit_module(file.fileno(), flags=syscalls.MODULE_INIT_COMPRESSED_FILE)
            return
        except OSError as error:
            if error.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
        data = file.read()
    if path.suffix == ".xz":
        import lzma

        syscalls.init_module(lzma.decompress(data))
    elif path.suffix == ".gz":
        import gzip

        syscalls.init_module(gzip.decompress(data))
    else:
        raise OSError(errno.EOPNOTSUPP, f"cannot decompress {path.name}")


def read_attribute(path: str) -> str | None:
    """A sysfs attribute's text (at most a page), None when there is none. os.open and
    os.read: a Python file object costs several times as much, and every round reads
    each device's attributes that are still missing."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 4096).decode(errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)


class ModuleLoader:
    def __init__(
        self,
        modules_dir: Path,
        sysfs: Path,
        console: Console,
        load_file: Callable[[Path], None] = load_module_file,
        workers: int = 4,
        on_round: RoundCallback | None = None,
    ) -> None:
        self._workers = max(1, workers)
        self._modules_dir = modules_dir
        self._sysfs = sysfs
        self._console = console
        self._load_file = load_file
        self._on_round = on_round
        self._read_devices: set[str] = set()  # devices done with: modalias read, or none coming
        self._missing_once: set[str] = set()  # those found once without one

    def new_device_modaliases(self) -> set[str]:
        """The modaliases of the devices that appeared since the last call.

        A device's modalias never changes, so only new device directories are read: each
        round costs a listing of the buses, not a read of every device (a pathlib glob
        of bus/*/devices/*/modalias lists each device's directory too: 55 ms against 9 ms
        on this development VM, and as many times slower again under emulation).
        """
        found: set[str] = set()
        for devices in self._device_directories():
            try:
                names = os.listdir(devices)
            except OSError:
                continue
            for name in names:
                device = os.path.join(devices, name)
                if device in self._read_devices:
                    continue
                modalias = read_attribute(os.path.join(device, "modalias"))
                if modalias is None:
                    self._without_modalias(device)
                    continue
                self._read_devices.add(device)
                alias = modalias.strip()
                if alias and bus_of(alias) not in SKIPPED_BUSES:
                    found.add(alias)
        return found

    def _without_modalias(self, device: str) -> None:
        """A device without a modalias is looked at again next round, as its attribute
        may be on its way. Most are devices of buses that never have one (memory, node,
        workqueue ...): the second time, its uevent says so (it has a MODALIAS line when
        the attribute is only late), and it is not read again."""
        if device not in self._missing_once:
            self._missing_once.add(device)
            return
        uevent = read_attribute(os.path.join(device, "uevent"))
        if uevent is not None and "MODALIAS=" not in uevent:
            self._read_devices.add(device)

    def _device_directories(self) -> list[str]:
        sysfs = str(self._sysfs)
        try:
            buses = sorted(os.listdir(os.path.join(sysfs, "bus")))
        except OSError:
            buses = []
        return [
            *(os.path.join(sysfs, "bus", bus, "devices") for bus in buses),
            os.path.join(sysfs, "class", "input"),
        ]

    def already_loaded(self) -> set[str]:
        try:
            return {normalize(name) for name in os.listdir(self._sysfs / "module")}
        except OSError:
            return set()

    def load(self, extra: Iterable[str] = (), skip: Iterable[str] = ()) -> LoadReport:
        started = time.monotonic()
        report = LoadReport()
        index = ModuleIndex()
        try:
            index.add_dependencies((self._modules_dir / "modules.dep").read_text())
            aliases = (self._modules_dir / "modules.alias").read_text()
        except OSError as error:
            report.failed["modules.dep"] = str(error)
            return report
        indexed_buses: set[str] = set()
        extra = list(extra)
        skipped = {normalize(name) for name in skip}
        later = [*ALWAYS_LOADED, *extra]  # after the PCI and virtio drivers
        for number in range(1, _MAX_ROUNDS + 1):
            round_started = time.monotonic()
            devices = self.new_device_modaliases()
            new_buses = {bus_of(alias) for alias in devices} - indexed_buses
            index.add_aliases(aliases, new_buses)
            indexed_buses |= new_buses
            first: list[str] = []
            for alias in sorted(devices):
                (first if bus_of(alias) in FIRST_BUSES else later).extend(index.modules_for(alias))
            done = self.already_loaded() | set(report.loaded) | set(report.failed) | skipped
            batch = [name for name in index.load_order(first) if name not in done]
            if not batch:
                batch = [name for name in index.load_order(later) if name not in done]
                later = []
                if not batch:
                    break
            self._load_batch(index, batch, report)
            if self._on_round is not None:
                loaded = [name for name in report.loaded if name in batch]
                self._on_round(number, loaded, time.monotonic() - round_started)
        unknown = [name for name in extra if normalize(name) not in index.files]
        for name in unknown:
            report.failed[name] = "no such module in modules.dep"
        report.seconds = time.monotonic() - started
        return report

    def _load_batch(self, index: ModuleIndex, batch: list[str], report: LoadReport) -> None:
        """Load on a few threads: a module waits only for its own dependencies, so a slow
        probe (a disk controller resetting its ports) does not hold up the network driver."""
        done = {name: threading.Event() for name in batch}
        pending = iter(batch)  # in dependency order: a dependency is always taken first
        taking = threading.Lock()

        def work() -> None:
            while True:
                with taking:
                    name = next(pending, None)
                if name is None:
                    return
                for dependency in index.dependencies.get(name, ()):
                    if dependency in done:
                        done[dependency].wait()
                try:
                    self._load_one(index, name, report)
                except Exception as error:  # a worker must not die with its event unset
                    report.failed[name] = repr(error)
                finally:
                    done[name].set()

        workers = [
            threading.Thread(target=work, name="modules", daemon=True)
            for _ in range(min(self._workers, len(batch)))
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def _load_one(self, index: ModuleIndex, name: str, report: LoadReport) -> None:
        missing = [dep for dep in index.dependencies.get(name, ()) if dep in report.failed]
        if missing:
            report.failed[name] = f"needs {', '.join(missing)}, which failed"
            return
        started = time.monotonic()
        try:
            self._load_file(self._modules_dir / index.files[name])
        except OSError as error:
            if error.errno == errno.EEXIST:
                return
            report.failed[name] = error.strerror or str(error)
            if error.errno not in _QUIET_ERRORS:
                self._console.info(f"module {name}: {error.strerror}")
            return
        finally:
            report.timings[name] = time.monotonic() - started
        report.loaded.append(name)
