"""modules.dep / modules.alias: matching devices to modules and loading in order."""

from __future__ import annotations

import errno
from pathlib import Path

from osbuilder.guest.kmod import ModuleIndex, bus_of, module_name
from osbuilder.guest.modload import ModuleLoader

from .fakes import RecordingConsole

MODULES_DEP = """\
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko \
kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_ring.ko \
kernel/drivers/virtio/virtio.ko
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko \
kernel/net/core/failover.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/fs/overlayfs/overlay.ko:
kernel/drivers/acpi/button.ko:
kernel/drivers/input/evdev.ko:
kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio_ring.ko \
kernel/drivers/virtio/virtio.ko
kernel/arch/x86/crypto/aesni-intel.ko:
kernel/drivers/cpufreq/acpi-cpufreq.ko:
"""
MODULES_ALIAS = """\
# Aliases extracted from modules themselves.
alias fs-overlay overlay
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000001v* virtio_net
alias virtio:d00000004v* virtio_rng
alias acpi*:LNXPWRBN:* button
alias acpi*:ACPI0007:* acpi_cpufreq
alias input:b*v*p*e*-e*k*r*a*m*l*s*f*w* evdev
alias cpu:type:x86,ven*fam*mod*:feature:*0099* aesni_intel
alias pci:v00008086d00001237sv*sd*bc*sc*i* intel_host
"""
NET_DEVICE = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"


def index() -> ModuleIndex:
    built = ModuleIndex()
    built.add_dependencies(MODULES_DEP)
    built.add_aliases(MODULES_ALIAS)
    return built


def test_module_names_drop_directory_suffix_and_dashes() -> None:
    assert module_name("kernel/drivers/char/hw_random/virtio-rng.ko") == "virtio_rng"
    assert module_name("kernel/drivers/net/virtio_net.ko.xz") == "virtio_net"
    assert bus_of("acpi*:LNXPWRBN:*") == "acpi"
    assert bus_of(NET_DEVICE) == "pci"


def test_device_aliases_match_their_modules() -> None:
    modules = index()
    assert modules.modules_for(NET_DEVICE) == ["virtio_pci"]
    assert modules.modules_for("virtio:d00000001v00001AF4") == ["virtio_net"]
    assert modules.modules_for("acpi:LNXPWRBN:") == ["button"]
    assert modules.modules_for("pci:v00008086d00007000sv0000sd0000bc06sc01i00") == []
    assert modules.modules_for("input:b0019v0000p0001e0000-e0,1,k74,ramlsfw") == ["evdev"]


def test_only_the_buses_asked_for_are_indexed() -> None:
    modules = ModuleIndex()
    modules.add_aliases(MODULES_ALIAS, {"virtio"})
    assert modules.modules_for(NET_DEVICE) == []
    assert modules.modules_for("virtio:d00000004v00001AF4") == ["virtio_rng"]


def test_load_order_puts_dependencies_first_each_once() -> None:
    order = index().load_order(["virtio_net", "virtio_pci", "virtio-rng", "unknown"])
    assert order == [
        "failover",
        "net_failover",
        "virtio",
        "virtio_ring",
        "virtio_net",
        "virtio_pci_modern_dev",
        "virtio_pci_legacy_dev",
        "virtio_pci",
        "virtio_rng",
    ]


def test_load_order_survives_a_dependency_cycle() -> None:
    modules = ModuleIndex()
    modules.add_dependencies("a.ko: b.ko\nb.ko: a.ko\n")
    assert sorted(modules.load_order(["a"])) == ["a", "b"]


class FakeMachine:
    """A sysfs where loading virtio_pci makes the virtio devices appear, as it does."""

    def __init__(self, root: Path) -> None:
        self.sysfs = root / "sys"
        self.modules_dir = root / "lib/modules/6.1.0"
        self.modules_dir.mkdir(parents=True)
        (self.modules_dir / "modules.dep").write_text(MODULES_DEP)
        (self.modules_dir / "modules.alias").write_text(MODULES_ALIAS)
        (self.sysfs / "module").mkdir(parents=True)
        self.device("bus/pci/devices/0000:00:02.0", NET_DEVICE)
        self.device("bus/pci/devices/0000:00:00.0", "pci:v00008086d00001237sv0sd0bc06sc00i00")
        self.device("bus/acpi/devices/LNXPWRBN:00", "acpi:LNXPWRBN:")
        self.device("bus/acpi/devices/LNXCPU:00", "acpi:ACPI0007:")
        self.device("bus/cpu/devices/cpu0", "cpu:type:x86,ven0000fam0006mod003F:feature:,0099")
        self.loaded: list[str] = []

    def device(self, where: str, modalias: str) -> None:
        path = self.sysfs / where
        path.mkdir(parents=True)
        (path / "modalias").write_text(modalias + "\n")

    def load_file(self, path: Path) -> None:
        name = module_name(str(path))
        if name == "acpi_cpufreq":
            raise OSError(errno.ENODEV, "No such device")
        if name == "intel_host":
            raise OSError(errno.EEXIST, "File exists")
        self.loaded.append(name)
        (self.sysfs / "module" / name).mkdir()
        if name == "virtio_pci":
            self.device("bus/virtio/devices/virtio0", "virtio:d00000001v00001AF4")
            self.device("bus/virtio/devices/virtio1", "virtio:d00000004v00001AF4")


def test_loader_loads_what_devices_need_round_by_round(tmp_path: Path) -> None:
    machine = FakeMachine(tmp_path)
    console = RecordingConsole()
    loader = ModuleLoader(machine.modules_dir, machine.sysfs, console, machine.load_file, workers=1)
    report = loader.load(["evdev"])
    assert machine.loaded == report.loaded
    # The PCI and virtio drivers first (the network driver as early as it can be), then
    # the fixed ones, those asked for and the drivers of the other buses.
    first = ["virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio", "virtio_ring"]
    assert sorted(machine.loaded[:4]) == sorted(first)
    assert machine.loaded[4:6] == ["virtio_pci", "failover"]
    assert machine.loaded[6:9] == ["net_failover", "virtio_net", "virtio_rng"]
    assert machine.loaded[9:] == ["overlay", "evdev", "button"]
    assert machine.loaded.index("virtio_pci") < machine.loaded.index("virtio_net")
    assert machine.loaded.index("net_failover") < machine.loaded.index("virtio_net")
    assert "virtio_rng" in machine.loaded and "button" in machine.loaded
    assert "aesni_intel" not in machine.loaded  # the cpu bus is skipped
    assert report.failed == {"acpi_cpufreq": "No such device"}
    assert console.lines == []  # "no such device" is normal for an alias match


def test_loader_skips_modules_already_loaded_and_reports_unknown_ones(tmp_path: Path) -> None:
    machine = FakeMachine(tmp_path)
    (machine.sysfs / "module/overlay").mkdir()
    report = ModuleLoader(
        machine.modules_dir, machine.sysfs, RecordingConsole(), machine.load_file
    ).load(["nosuchmodule"])
    assert "overlay" not in machine.loaded
    assert report.failed["nosuchmodule"] == "no such module in modules.dep"


def test_skipped_modules_are_never_loaded_nor_what_needs_them(tmp_path: Path) -> None:
    machine = FakeMachine(tmp_path)
    loader = ModuleLoader(machine.modules_dir, machine.sysfs, RecordingConsole(), machine.load_file)
    report = loader.load(skip=["button", "virtio-pci"])
    assert "button" not in report.loaded
    assert "virtio_pci" not in report.loaded and "virtio_net" not in report.loaded


def test_loader_without_modules_dep_reports_it(tmp_path: Path) -> None:
    report = ModuleLoader(tmp_path / "none", tmp_path, RecordingConsole()).load()
    assert "modules.dep" in report.failed


def test_parallel_loading_still_loads_dependencies_first(tmp_path: Path) -> None:
    machine = FakeMachine(tmp_path)
    report = ModuleLoader(
        machine.modules_dir, machine.sysfs, RecordingConsole(), machine.load_file, workers=4
    ).load()
    assert sorted(report.loaded) == sorted(machine.loaded)
    for module, dependencies in index().dependencies.items():
        if module in machine.loaded:
            for dependency in dependencies:
                assert machine.loaded.index(dependency) < machine.loaded.index(module)


def test_each_round_is_told_with_what_it_loaded(tmp_path: Path) -> None:
    machine = FakeMachine(tmp_path)
    rounds: list[tuple[int, list[str], float]] = []
    loader = ModuleLoader(
        machine.modules_dir,
        machine.sysfs,
        RecordingConsole(),
        machine.load_file,
        workers=1,
        on_round=lambda number, loaded, seconds: rounds.append((number, loaded, seconds)),
    )
    report = loader.load()
    assert [number for number, _, _ in rounds] == list(range(1, len(rounds) + 1))
    assert [name for _, loaded, _ in rounds for name in loaded] == report.loaded
    assert "virtio_pci" in rounds[0][1] and "virtio_net" in rounds[1][1]  # found in round 2
    assert all(seconds >= 0 for _, _, seconds in rounds)


def test_each_scan_reads_only_the_devices_that_appeared_since(tmp_path: Path) -> None:
    machine = FakeMachine(tmp_path)
    loader = ModuleLoader(machine.modules_dir, machine.sysfs, RecordingConsole(), machine.load_file)
    first = loader.new_device_modaliases()
    assert NET_DEVICE in first and "acpi:LNXPWRBN:" in first
    assert not any(alias.startswith("cpu:") for alias in first)  # a skipped bus
    assert loader.new_device_modaliases() == set()
    machine.device("bus/virtio/devices/virtio0", "virtio:d00000001v00001AF4")
    late = machine.sysfs / "class/input/input3"
    late.mkdir(parents=True)  # its modalias not written yet: looked at again next time
    assert loader.new_device_modaliases() == {"virtio:d00000001v00001AF4"}
    (late / "modalias").write_text("input:b0019v0000p0001e0000-e0,1,k74\n")
    assert loader.new_device_modaliases() == {"input:b0019v0000p0001e0000-e0,1,k74"}


def test_a_device_whose_uevent_has_no_modalias_is_left_after_twice(tmp_path: Path) -> None:
    machine = FakeMachine(tmp_path)
    loader = ModuleLoader(machine.modules_dir, machine.sysfs, RecordingConsole(), machine.load_file)
    never = machine.sysfs / "bus/memory/devices/memory0"
    never.mkdir(parents=True)
    (never / "uevent").write_text("DEVNAME=memory0\n")
    coming = machine.sysfs / "bus/virtio/devices/virtio1"
    coming.mkdir(parents=True)
    (coming / "uevent").write_text("DRIVER=x\nMODALIAS=virtio:d00000004v00001AF4\n")
    loader.new_device_modaliases()
    loader.new_device_modaliases()
    (never / "modalias").write_text("memory:not-a-real-one\n")  # to see whether it is read
    (coming / "modalias").write_text("virtio:d00000004v00001AF4\n")
    assert loader.new_device_modaliases() == {"virtio:d00000004v00001AF4"}
