"""QEMU command lines, published ports, accelerator choice, readiness of a port."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
from pathlib import Path

import pycdlib
import pytest

from osbuilder.commands import vm as vm_commands
from osbuilder.errors import ExternalError, UserError
from osbuilder.media import MediaBoot
from osbuilder.vm.accel import choose_accel, probe_command
from osbuilder.vm.disks import DataDisk, default_disk_path, parse_disk, prepare_disks
from osbuilder.vm.qemu import (
    AAVMF_CODE,
    OVMF_CODE,
    KernelBoot,
    Publish,
    VmConfig,
    boot_target,
    parse_publish,
    qemu_command,
)
from osbuilder.vm.run import established, run_detached
from osbuilder.vm.userdata import read_data_file, write_data_iso


def boot(tmp_path: Path) -> KernelBoot:
    for suffix, text in (("kernel", "k"), ("initrd.img", "i"), ("cmdline", "console=ttyS0\n")):
        (tmp_path / f"sys-{suffix}").write_text(text)
    return KernelBoot.from_prefix(tmp_path / "sys")


def test_publish_forms() -> None:
    assert parse_publish("6379:6379") == Publish(6379, 6379, "tcp")
    assert parse_publish("5353:53/udp") == Publish(5353, 53, "udp")
    assert Publish(8080, 80).hostfwd() == "hostfwd=tcp:127.0.0.1:8080-:80"
    for bad in ("6379", "a:b", "0:80", "70000:80", "80:80/sctp"):
        with pytest.raises(UserError, match="--publish"):
            parse_publish(bad)


def test_kernel_initrd_prefix(tmp_path: Path) -> None:
    loaded = boot(tmp_path)
    assert loaded.cmdline == "console=ttyS0"
    with pytest.raises(UserError, match=r"no missing-initrd\.img; build it first"):
        (tmp_path / "missing-kernel").write_text("k")
        KernelBoot.from_prefix(tmp_path / "missing")


def test_command_line(tmp_path: Path) -> None:
    config = VmConfig(
        boot(tmp_path),
        tmp_path / "state",
        accel="tcg",
        memory="512",
        cpus=2,
        network="restricted",
        publish=[Publish(16379, 6379)],
        append="quiet",
    )
    command = qemu_command(config)
    joined = " ".join(command)
    assert command[0] == "qemu-system-x86_64"
    assert "-machine q35,accel=tcg -m 512 -smp 2" in joined
    assert "-append console=ttyS0 panic=-1 quiet" in joined
    assert "-nic user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:16379-:6379" in joined
    assert "-device virtio-rng-pci" in joined and "-action panic=exit-failure" in joined
    assert f"-chardev stdio,signal=off,id=console,logfile={tmp_path}/state/console.log" in joined
    assert f"-qmp unix:{tmp_path}/state/qmp.sock,server=on,wait=off" in joined
    assert "-daemonize" not in command
    config.detach, config.network = True, "none"
    detached = " ".join(qemu_command(config))
    assert "-chardev null,id=console" in detached and "-daemonize" in detached
    assert "-nic none" in detached


def test_accelerator_choice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OSBUILDER_QEMU_ACCEL", raising=False)
    assert choose_accel("tcg", None, tmp_path) == "tcg"
    monkeypatch.setenv("OSBUILDER_QEMU_ACCEL", "kvm")
    assert choose_accel(None, None, tmp_path) == "kvm"
    with pytest.raises(UserError, match="accelerator 'hvf'"):
        choose_accel("hvf", None, tmp_path)
    monkeypatch.delenv("OSBUILDER_QEMU_ACCEL")
    monkeypatch.setattr("osbuilder.vm.accel._kvm_device_usable", lambda: False)
    assert choose_accel("auto", None, tmp_path) == "tcg"


USERNET = """\
Hub -1 (#net072):
  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ
  TCP[SYN_SENT]      33       127.0.0.1 16379       10.0.2.15  6379     0     0
  TCP[ESTABLISHED]   21       127.0.0.1 16379       10.0.2.15  6380     0     0
  TCP[HOST_FORWARD]  11       127.0.0.1 16379       10.0.2.15  6379     0     0
"""


def test_a_guest_port_answers_only_when_qemu_saw_the_guest_accept() -> None:
    # QEMU holds host connections open while it tries the guest (SYN_SENT): not an answer.
    assert not established(USERNET, 6379)
    assert established(USERNET, 6380)
    assert not established(
        USERNET.replace("6380", "6379").replace("ESTABLISHED", "TIME_WAIT"), 6379
    )


def test_waiting_on_an_unpublished_port_is_refused_before_a_vm_starts(tmp_path: Path) -> None:
    """Else the VM would start, the command fail, and the VM run on, forgotten."""
    config = VmConfig(
        boot(tmp_path), tmp_path / "state", accel="tcg", publish=[Publish(16379, 6379)]
    )
    config.detach = True
    with pytest.raises(UserError, match=r"--wait-tcp 6380: publish that port"):
        run_detached(config, tmp_path / "cache", wait_tcp=6380, wait_timeout=1)
    assert not (tmp_path / "state").exists()  # nothing was started


def test_without_a_kernel_to_probe_auto_takes_what_was_learnt_else_kvm(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("OSBUILDER_QEMU_ACCEL", raising=False)
    monkeypatch.setattr("osbuilder.vm.accel._kvm_device_usable", lambda: True)
    assert choose_accel("auto", None, tmp_path) == "kvm"
    assert not (tmp_path / "accel.json").exists()  # an answer not probed is not remembered
    monkeypatch.setattr("osbuilder.vm.accel._kvm_is_fast", lambda kernel: False)
    assert choose_accel("auto", tmp_path / "kernel", tmp_path) == "tcg"
    assert choose_accel("auto", None, tmp_path) == "tcg"  # what a kernel's probe found


def image(path: Path, *marks: tuple[int, bytes]) -> Path:
    data = bytearray(64 * 1024)
    for offset, magic in marks:
        data[offset : offset + len(magic)] = magic
    path.write_bytes(bytes(data))
    return path


def qcow2_of(raw: Path, qemu_format: str = "qcow2", options: str = "") -> Path:
    """`raw` converted by qemu-img to `qemu_format` (qcow2, vpc, vmdk)."""
    converted = raw.with_name(f"{raw.name}.{qemu_format}")
    extra = ["-o", options] if options else []
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", qemu_format, *extra, str(raw), str(converted)],
        check=True,
    )
    return converted


MBR = (0x1FE, b"\x55\xaa")
GPT = (0x200, b"EFI PART")


def test_run_knows_a_boot_medium_and_its_firmware_by_its_contents(tmp_path: Path) -> None:
    hybrid = image(tmp_path / "a.iso", (0x8001, b"CD001"), MBR)
    assert boot_target(hybrid) == MediaBoot(hybrid, "iso", "bios")  # an ISO, despite its MBR
    bios = image(tmp_path / "a-bios.img", MBR)
    assert boot_target(bios) == MediaBoot(bios, "raw", "bios")
    vhd = image(tmp_path / "a.vhd", MBR, (64 * 1024 - 512, b"conectix"))  # its footer
    assert boot_target(vhd) == MediaBoot(vhd, "vhd", "bios")
    efi_iso = image(tmp_path / "a-efi.iso", (0x8001, b"CD001"), MBR, GPT)
    assert boot_target(efi_iso) == MediaBoot(efi_iso, "iso", "efi")
    efi = image(tmp_path / "a-efi.img", MBR, GPT)  # (a protective MBR, then the GPT)
    assert boot_target(efi) == MediaBoot(efi, "raw", "efi")
    for raw, firmware in ((bios, "bios"), (efi, "efi")):  # their disks are read through them
        qcow2 = qcow2_of(raw)
        assert boot_target(qcow2) == MediaBoot(qcow2, "qcow2", firmware)
        dynamic = qcow2_of(raw, "vpc", "subformat=dynamic")
        assert boot_target(dynamic) == MediaBoot(dynamic, "vhd", firmware)
        vmdk = qcow2_of(raw, "vmdk")
        assert boot_target(vmdk) == MediaBoot(vmdk, "vmdk", firmware)
    # An initrd given by mistake is refused, not handed to the firmware to hang on.
    initrd = image(tmp_path / "sys-initrd.img", (0, b"\x28\xb5\x2f\xfd"))
    with pytest.raises(UserError, match="not a bootable image"):
        boot_target(initrd)
    boot(tmp_path)
    assert isinstance(boot_target(tmp_path / "sys"), KernelBoot)  # not a file: a prefix


def test_run_unpacks_a_gcp_archives_disk_into_the_state_directory(tmp_path: Path) -> None:
    disk = image(tmp_path / "disk.raw", MBR)  # the member's name
    archive = tmp_path / "a.img.tar.gz"
    subprocess.run(["tar", "-czf", str(archive), "-C", str(tmp_path), "disk.raw"], check=True)
    disk.rename(tmp_path / "original.raw")
    state = tmp_path / "a.img.tar.gz-state"
    assert boot_target(archive, state) == MediaBoot(state / "disk.raw", "raw", "bios")
    assert (state / "disk.raw").read_bytes() == (tmp_path / "original.raw").read_bytes()
    assert [p.name for p in state.iterdir()] == ["disk.raw"]  # nothing else left there
    assert boot_target(archive, state) == MediaBoot(state / "disk.raw", "raw", "bios")  # again
    # Not a medium itself, where there is no VM's state to unpack it in (push openstack).
    with pytest.raises(UserError, match=r"a gzip'd file .*; unpack its disk\.raw \(tar -xzf\)"):
        boot_target(archive)
    # No disk.raw in it, or one that is no file: said so, and nothing is left behind.
    (tmp_path / "other").mkdir()
    (tmp_path / "other/disk.raw").mkdir()
    for members, message in (
        (["original.raw"], "cannot unpack its disk.raw: tar: disk.raw: Not found in archive"),
        (["-C", "other", "disk.raw"], "its disk.raw is not a file"),
    ):
        other = tmp_path / "other.tar.gz"
        subprocess.run(["tar", "-czf", str(other), "-C", str(tmp_path), *members], check=True)
        with pytest.raises(UserError) as raised:
            boot_target(other, tmp_path / "other-state")
        assert str(raised.value) == f"{other}: {message}"
        assert list((tmp_path / "other-state").iterdir()) == []
    # A VM running there goes on with its disk: refused before anything is unpacked.
    (state / "disk.raw").unlink()
    (state / "qemu.pid").write_text(str(os.getpid()))
    with pytest.raises(UserError, match="a VM is already running there"):
        boot_target(archive, state)
    assert not (state / "disk.raw").exists()


def test_media_boot_from_read_only_drives(tmp_path: Path) -> None:
    hybrid = image(tmp_path / "a,b.iso", (0x8001, b"CD001"))
    iso = " ".join(qemu_command(VmConfig(MediaBoot.from_file(hybrid), tmp_path / "state")))
    assert f"-drive file={tmp_path}/a,,b.iso,readonly=on,format=raw,media=cdrom" in iso
    assert "-boot order=d" in iso and "-kernel" not in iso and "-append" not in iso
    assert "pflash" not in iso  # SeaBIOS, QEMU's default
    qcow2 = qcow2_of(image(tmp_path / "a-efi.img", MBR, GPT))
    disk = " ".join(qemu_command(VmConfig(MediaBoot.from_file(qcow2), tmp_path / "state")))
    assert f"-drive file={qcow2},readonly=on,format=qcow2,if=virtio" in disk
    assert f"-drive if=pflash,format=raw,readonly=on,file={OVMF_CODE}" in disk
    assert f"-drive if=pflash,format=raw,file={tmp_path}/state/efi-vars.fd" in disk
    vhd = image(tmp_path / "a.vhd", MBR, (64 * 1024 - 512, b"conectix"))
    fixed = " ".join(qemu_command(VmConfig(MediaBoot.from_file(vhd), tmp_path / "state")))
    assert f"-drive file={vhd},readonly=on,format=vpc,if=virtio" in fixed  # QEMU's name
    vmdk = qcow2_of(image(tmp_path / "v-bios.img", MBR), "vmdk")
    sparse = " ".join(qemu_command(VmConfig(MediaBoot.from_file(vmdk), tmp_path / "state")))
    assert f"-drive file={vmdk},readonly=on,format=vmdk,if=virtio" in sparse
    with pytest.raises(UserError, match=r"--append: .* boots with the cmdline of its boot loader"):
        VmConfig(MediaBoot.from_file(qcow2), tmp_path / "state", append="quiet")


def test_disk_forms(tmp_path: Path) -> None:
    default = tmp_path / "state/disk.img"
    assert parse_disk("size=1G", default) == DataDisk(default, 1 << 30)
    assert parse_disk("data.qcow2", default) == DataDisk(Path("data.qcow2"))
    assert parse_disk("file=d.img,size=512M,format=raw", default) == DataDisk(
        Path("d.img"), 512 << 20, "raw"
    )
    assert parse_disk("d.img,size=2", default).size == 2 << 30  # GB unless told (LinuxKit)
    assert default_disk_path(tmp_path, 0).name == "disk.img"
    assert default_disk_path(tmp_path, 2).name == "disk2.img"
    for bad, message in (
        ("d.img,size=lots", "size must be a number of GB"),
        ("d.img,size=0", "at least 1M"),
        ("d.img,format=vmdk", "format must be qcow2 or raw"),
        ("d.img,speed=fast", "'speed=fast' is not understood"),
        ("d.img,size=1G,size=2G", "'size=2G' is not understood"),
        ("", "'' is not understood"),
    ):
        with pytest.raises(UserError, match=re.escape(message)):
            parse_disk(bad, default)


def test_missing_disks_are_made_and_existing_ones_kept(tmp_path: Path) -> None:
    made = DataDisk(tmp_path / "made.qcow2", 64 << 20)
    raw = DataDisk(tmp_path / "made.raw", 8 << 20, "raw")
    prepare_disks([made, raw])
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(made.path)],
            capture_output=True,
            check=True,
        ).stdout
    )
    assert (info["format"], info["virtual-size"]) == ("qcow2", 64 << 20)
    assert raw.path.stat().st_size == 8 << 20 and raw.drive_format() == "raw"
    before = made.path.read_bytes()
    prepare_disks([DataDisk(made.path, 1 << 30)])  # exists: no new disk, whatever the size
    assert made.path.read_bytes() == before

    config = VmConfig(boot(tmp_path), tmp_path / "state", disks=[made, raw])
    joined = " ".join(qemu_command(config))
    assert f"-drive file={made.path},format=qcow2,if=virtio" in joined  # known by contents
    assert f"-drive file={raw.path},format=raw,if=virtio" in joined
    assert joined.index(str(made.path)) < joined.index(str(raw.path))  # in the order given


def test_disks_that_cannot_be_used_are_refused_and_nothing_is_left(tmp_path: Path) -> None:
    qcow2 = DataDisk(tmp_path / "d.qcow2", 1 << 20)
    prepare_disks([qcow2])
    cases = [
        ([DataDisk(tmp_path / "none.img")], "no such file; give a size to create it"),
        ([DataDisk(tmp_path / "no/dir.img", 1 << 20)], "is not a directory"),
        ([DataDisk(tmp_path)], "is a directory, not a disk image"),
        ([DataDisk(qcow2.path, format="raw")], "is a qcow2 image; drop format=raw"),
        ([qcow2, DataDisk(tmp_path / "." / "d.qcow2")], "given twice"),
    ]
    for disks, message in cases:
        with pytest.raises(UserError, match=re.escape(message)):
            prepare_disks(disks)
    assert not (tmp_path / "none.img").exists()
    # qemu-img failing (a size it refuses) leaves no file behind either
    with pytest.raises(ExternalError, match="qemu-img"):
        prepare_disks([DataDisk(tmp_path / "huge.qcow2", 1 << 62)])
    assert not (tmp_path / "huge.qcow2").exists()


def arm64_boot(tmp_path: Path) -> KernelBoot:
    header = bytearray(64)
    header[0x38:0x3C] = b"ARM\x64"  # an arm64 Image's magic
    (tmp_path / "arm-kernel").write_bytes(bytes(header))
    (tmp_path / "arm-initrd.img").write_bytes(b"i")
    (tmp_path / "arm-cmdline").write_text("console=ttyAMA0\n")
    return KernelBoot.from_prefix(tmp_path / "arm")


def test_an_arm64_kernel_boots_on_an_arm64_machine_through_uefi(tmp_path: Path) -> None:
    assert boot(tmp_path).architecture == "amd64"
    arm = arm64_boot(tmp_path)
    assert arm.architecture == "arm64"
    command = qemu_command(VmConfig(arm, tmp_path / "state", append="quiet"))
    joined = " ".join(command)
    assert command[0] == "qemu-system-aarch64"
    assert "-machine virt,accel=tcg -cpu max" in joined
    assert f"-drive if=pflash,format=raw,readonly=on,file={AAVMF_CODE}" in joined
    assert f"-drive if=pflash,format=raw,file={tmp_path}/state/efi-vars.fd" in joined
    assert "pvpanic" not in joined  # the kernel has no driver: panic=-1 ends QEMU instead
    assert "-append console=ttyAMA0 panic=-1 quiet" in joined
    amd64 = " ".join(qemu_command(VmConfig(boot(tmp_path), tmp_path / "state")))
    assert "pflash" not in amd64 and "-device pvpanic" in amd64


def test_a_system_of_another_architecture_runs_under_tcg(tmp_path: Path) -> None:
    arm = arm64_boot(tmp_path)  # (these tests run on amd64)
    assert vm_commands._accel(None, arm) == "tcg"
    assert vm_commands._accel("auto", arm) == "tcg"
    with pytest.raises(UserError, match=r"--accel kvm: .* is an arm64 kernel, and KVM runs only"):
        vm_commands._accel("kvm", arm)


def test_user_data_is_a_cidata_volume_after_the_disks(tmp_path: Path) -> None:
    iso = tmp_path / "data.iso"
    write_data_iso(b'{"hostname": {"content": "h"}}', iso)
    reader = pycdlib.PyCdlib()
    reader.open(str(iso))
    try:
        assert reader.pvd.volume_identifier.decode().strip() == "cidata"
        content = io.BytesIO()
        reader.get_file_from_iso_fp(content, rr_path="/config")
        assert content.getvalue() == b'{"hostname": {"content": "h"}}'
    finally:
        reader.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.iso"]  # no partial file left

    disk = DataDisk(tmp_path / "d.qcow2", 1 << 20)
    prepare_disks([disk])
    config = VmConfig(boot(tmp_path), tmp_path / "state", disks=[disk], user_data=b"x")
    joined = " ".join(qemu_command(config))
    data_drive = f"-drive file={tmp_path}/state/data.iso,format=raw,if=virtio,readonly=on"
    assert data_drive in joined
    assert joined.index(str(disk.path)) < joined.index("data.iso")  # disks keep their names
    assert "data.iso" not in " ".join(qemu_command(VmConfig(boot(tmp_path), tmp_path / "s")))


def test_user_data_that_cannot_be_used_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"--data-file .*missing: cannot read it"):
        read_data_file(tmp_path / "missing")
    big = tmp_path / "big"
    big.write_bytes(b"x" * ((16 << 20) + 1))
    with pytest.raises(UserError, match=r"user data is at most 16 MiB"):
        read_data_file(big)


def test_a_kernel_squashfs_prefix_boots_its_stage_with_the_root_as_the_first_disk(
    tmp_path: Path,
) -> None:
    for suffix in ("kernel", "squashfs-initrd.img", "squashfs.img"):
        (tmp_path / f"sys-{suffix}").write_text(suffix)
    (tmp_path / "sys-cmdline").write_text("console=ttyS0\n")
    loaded = KernelBoot.from_prefix(tmp_path / "sys")
    assert (loaded.initrd.name, loaded.root) == (
        "sys-squashfs-initrd.img",
        tmp_path / "sys-squashfs.img",
    )
    disk = DataDisk(tmp_path / "d.qcow2", 1 << 20)
    prepare_disks([disk])
    joined = " ".join(qemu_command(VmConfig(loaded, tmp_path / "state", disks=[disk])))
    assert f"-initrd {tmp_path}/sys-squashfs-initrd.img" in joined
    root = f"-drive file={tmp_path}/sys-squashfs.img,format=raw,if=virtio,readonly=on"
    assert root in joined
    assert joined.index(root) < joined.index(str(disk.path))  # the root is vda, disks follow

    # Both formats built with one name: the newer one boots (an older build's files may linger).
    (tmp_path / "sys-initrd.img").write_text("initrd")
    assert KernelBoot.from_prefix(tmp_path / "sys").root is None
    os.utime(tmp_path / "sys-initrd.img", ns=(0, 0))
    assert KernelBoot.from_prefix(tmp_path / "sys").root == tmp_path / "sys-squashfs.img"

    (tmp_path / "sys-squashfs-initrd.img").unlink()
    with pytest.raises(UserError, match=r"sys-squashfs\.img has no sys-squashfs-initrd\.img"):
        KernelBoot.from_prefix(tmp_path / "sys")


def test_of_a_prefixs_kernel_initrd_squashfs_and_erofs_builds_the_newest_boots(
    tmp_path: Path,
) -> None:
    files = ("kernel", "initrd.img", "squashfs-initrd.img", "squashfs.img")
    files += ("erofs-initrd.img", "erofs.img")
    for age, suffix in enumerate(files):
        (tmp_path / f"sys-{suffix}").write_text(suffix)
        os.utime(tmp_path / f"sys-{suffix}", ns=(age * 10**9, age * 10**9))
    loaded = KernelBoot.from_prefix(tmp_path / "sys")
    assert (loaded.initrd.name, loaded.root) == ("sys-erofs-initrd.img", tmp_path / "sys-erofs.img")
    os.utime(tmp_path / "sys-erofs.img", ns=(0, 0))
    assert KernelBoot.from_prefix(tmp_path / "sys").root == tmp_path / "sys-squashfs.img"
    os.utime(tmp_path / "sys-squashfs.img", ns=(0, 0))
    assert KernelBoot.from_prefix(tmp_path / "sys").root is None

    (tmp_path / "sys-erofs-initrd.img").unlink()
    with pytest.raises(
        UserError, match=r"sys-erofs\.img has no sys-erofs-initrd\.img.*kernel\+erofs"
    ):
        KernelBoot.from_prefix(tmp_path / "sys")


def test_the_kvm_probe_boots_the_kernel_on_its_architectures_machine(tmp_path: Path) -> None:
    pc = tmp_path / "bzImage"
    pc.write_bytes(bytes(0x40))
    arm = tmp_path / "Image"
    arm.write_bytes(bytes(0x38) + b"ARM\x64" + bytes(8))
    command = probe_command(pc)
    assert command[:3] == ["qemu-system-x86_64", "-machine", "q35,accel=kvm"]
    command = probe_command(arm)
    assert command[:5] == ["qemu-system-aarch64", "-machine", "virt,accel=kvm", "-cpu", "max"]
    assert command[-2:] == [
        "-append",
        "console=ttyS0 console=ttyAMA0 panic=-1 root=/dev/nonexistent",
    ]
    assert command[command.index("-kernel") + 1] == str(arm)
