"""What `osbuilder run` says about a boot whose console shows a cause it knows."""

from __future__ import annotations

from pathlib import Path

import pytest

from osbuilder.vm.qemu import KernelBoot, VmConfig
from osbuilder.vm.run import panic_hint


def _config_with_console(tmp_path: Path, console: str) -> VmConfig:
    for part in ("kernel", "initrd.img"):
        (tmp_path / f"redis-{part}").write_bytes(b"")
    config = VmConfig(KernelBoot.from_prefix(tmp_path / "redis"), tmp_path / "state", memory="160")
    config.state.mkdir()
    config.console_log.write_text(console)
    return config


@pytest.mark.parametrize(
    "console",
    [
        "[    1.97] Initramfs unpacking failed: write error\n",
        "[    2.39]  unpack_to_rootfs+0x174/0x2b1\n[    2.40] Kernel panic - not syncing: "
        "System is deadlocked on memory\n",
    ],
    ids=["tmpfs-cap", "out-of-memory"],
)
def test_an_initrd_that_did_not_fit_is_named_with_the_memory_to_give(
    tmp_path: Path, console: str
) -> None:
    hint = panic_hint(_config_with_console(tmp_path, console))
    assert hint == (
        "the initrd did not fit in the VM's 160 MB (the kernel could not unpack it); give it "
        "more memory (--mem), or build kernel+squashfs or kernel+erofs, whose root stays on "
        "a disk"
    )


def test_a_verity_root_corrupted_while_running_is_named(tmp_path: Path) -> None:
    console = "[   42.1] Kernel panic - not syncing: dm-verity device corrupted\n"
    hint = panic_hint(_config_with_console(tmp_path, console))
    assert hint is not None and hint.startswith("the root failed verification while the system")


def test_a_panic_of_unknown_cause_gets_no_hint(tmp_path: Path) -> None:
    console = "[    3.0] Kernel panic - not syncing: Attempted to kill init!\n"
    assert panic_hint(_config_with_console(tmp_path, console)) is None
