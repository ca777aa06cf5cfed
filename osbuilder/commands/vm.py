"""`osbuilder run`, `osbuilder stop`, `osbuilder ps`: built systems under QEMU."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from osbuilder.commands import common as shared
from osbuilder.commands.systems import add_pull_options
from osbuilder.errors import ExitCode
from osbuilder.formats.catalog import (
    DEFAULT_FORMAT,
    FORMATS,
    boot_media,
    names,
    root_image_formats,
)

if TYPE_CHECKING:
    from osbuilder.media import MediaBoot
    from osbuilder.vm.qemu import KernelBoot

MIN_MEMORY_MB = 64  # below this the kernel cannot even unpack a small initrd


def _memory(value: str) -> str:
    """QEMU's -m in MB: '512', '512M' or '2G'."""
    number, unit = (value[:-1], value[-1].upper()) if value[-1:].isalpha() else (value, "M")
    if not number.isdigit() or unit not in "MG":
        raise argparse.ArgumentTypeError(f"{value!r}: give MB, e.g. 1024, or 2G")
    megabytes = int(number) * (1024 if unit == "G" else 1)
    if megabytes < MIN_MEMORY_MB:
        raise argparse.ArgumentTypeError(f"{value!r}: at least {MIN_MEMORY_MB} MB")
    return str(megabytes)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    run = sub.add_parser(
        "run",
        parents=[common],
        help="boot a built system under QEMU",
        description=f"Boot {', '.join(FORMATS[DEFAULT_FORMAT].file_names('PREFIX'))} (the "
        f"{DEFAULT_FORMAT} format; the root of {' or '.join(names(root_image_formats()))} is "
        "attached as a read-only first disk), or an image built as "
        f"{', '.join(names(boot_media()))} (from a read-only CD or disk; UEFI for a GPT; "
        "gcp's disk.raw is unpacked into the state directory first), under QEMU, the serial "
        "console on the terminal. The exit status is 0 when the guest powers off cleanly, "
        "non-zero after a kernel panic or a timeout.",
    )
    run.add_argument(
        "prefix",
        metavar="PREFIX|IMAGE|docker://REF",
        help="e.g. output/redis, or output/redis.iso, output/redis-bios.img, output/redis.qcow2, "
        "output/redis.img.tar.gz; or docker://REF, a system in a registry (pushed with push "
        "registry or build --push), pulled into the content store first",
    )
    run.add_argument(
        "--accel",
        choices=("auto", "kvm", "tcg"),
        help="accelerator (default auto: KVM if present and fast, else TCG; "
        "or $OSBUILDER_QEMU_ACCEL)",
    )
    run.add_argument(
        "--mem",
        type=_memory,
        default="1024",
        help="memory in MB, or with a G suffix (default 1024)",
    )
    run.add_argument(
        "--cpus", type=shared.whole_number(1), default=1, help="virtual CPUs (default 1)"
    )
    run.add_argument(
        "--publish",
        "-p",
        action="append",
        default=[],
        metavar="HOST:GUEST",
        help="forward 127.0.0.1:HOST to the guest's port (repeatable; /udp)",
    )
    run.add_argument(
        "--net",
        choices=("user", "restricted", "none"),
        default="user",
        help="user networking (default), restricted (only the published ports), or none",
    )
    run.add_argument(
        "--state",
        type=Path,
        metavar="DIR",
        help="state directory: pid, QMP socket, console.log (default PREFIX-state, IMAGE-state)",
    )
    run.add_argument(
        "--disk",
        action="append",
        default=[],
        metavar="[file=]PATH[,size=SIZE][,format=F]",
        help="a writable data disk, repeatable; created when missing (qcow2 unless "
        "format=raw; SIZE in GB, or 512M); PATH defaults to STATE/disk.img",
    )
    data = run.add_mutually_exclusive_group()
    data.add_argument(
        "--data",
        metavar="TEXT",
        help="user data for the guest (a cidata disk the metadata package reads into /run/config)",
    )
    data.add_argument("--data-file", type=Path, metavar="FILE", help="user data from FILE")
    run.add_argument(
        "--append", default="", metavar="WORDS", help="extra kernel command line words"
    )
    run.add_argument(
        "--secure-boot",
        type=Path,
        metavar="CERT",
        help="boot the UEFI image with Secure Boot on, CERT (PEM) the one certificate the "
        "firmware trusts (with a platform key made for the VM): an image not signed by "
        "CERT's key (build --secure-boot-key) is refused, and run exits non-zero",
    )
    run.add_argument(
        "--tpm",
        action="store_true",
        help="attach a TPM 2.0 (swtpm, its state in the state directory): the firmware and "
        "a unified kernel image's stub measure the boot into its PCRs",
    )
    run.add_argument(
        "--detach", "-d", action="store_true", help="start the VM in the background and return"
    )
    run.add_argument(
        "--wait-tcp",
        type=int,
        metavar="PORT",
        help="with --detach: return once the guest's (published) PORT answers",
    )
    run.add_argument(
        "--timeline",
        action="store_true",
        help="print the boot's stages and their times on stderr, from QEMU's start to each "
        "service started (and, with --wait-tcp, the port's answer); with --detach, return "
        "once the services have started",
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="with --detach: print the VM (state directory, pid, console log; with "
        "--timeline its timeline) as JSON on stdout",
    )
    run.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="stop the VM after this long (foreground: exit status 124; "
        "with --wait-tcp: how long to wait, default 120)",
    )
    pulling = run.add_argument_group("docker://REF options")
    pulling.add_argument(
        "--arch",
        metavar="ARCH",
        help="the architecture of the system to pull: amd64 or arm64 (default: this machine's)",
    )
    add_pull_options(run)
    run.set_defaults(handler=_run)

    stop = sub.add_parser(
        "stop",
        parents=[common],
        help="power off a running VM",
        description="ACPI powerdown through QMP; quit after a timeout.",
    )
    stop.add_argument(
        "state", type=Path, metavar="DIR", help="state directory, or the PREFIX or IMAGE run booted"
    )
    stop.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the guest's own shutdown (default 30)",
    )
    stop.set_defaults(handler=_stop)

    ps = sub.add_parser("ps", parents=[common], help="list running VMs")
    ps.add_argument("--json", action="store_true", help="print JSON")
    ps.set_defaults(handler=_ps)


def _accel(requested: str | None, boot: KernelBoot | MediaBoot) -> str:
    """The accelerator; only TCG can run a system of another architecture than the host's."""
    from osbuilder.errors import UserError
    from osbuilder.oci.platform import host_target
    from osbuilder.vm.accel import choose_accel
    from osbuilder.vm.qemu import KernelBoot

    if isinstance(boot, KernelBoot):
        host = host_target().architecture
        if boot.architecture != host:
            if requested == "kvm":
                raise UserError(
                    f"--accel kvm: {boot.kernel} is an {boot.architecture} kernel, and KVM "
                    f"runs only {host} systems here; use tcg"
                )
            return "tcg"
        return choose_accel(requested, boot.kernel, _cache())
    return choose_accel(requested, None, _cache())


def _cache() -> Path:
    from osbuilder.oci.store import default_store_root

    return default_store_root()


def _run(args: argparse.Namespace) -> int:
    from osbuilder.errors import UserError
    from osbuilder.vm.control import read_pid
    from osbuilder.vm.disks import default_disk_path, parse_disk
    from osbuilder.vm.qemu import VmConfig, boot_target, parse_publish
    from osbuilder.vm.run import run_detached, run_foreground
    from osbuilder.vm.timeline import as_json, as_table
    from osbuilder.vm.userdata import checked, read_data_file

    for given, option in ((args.wait_tcp is not None, "--wait-tcp"), (args.json, "--json")):
        if given and not args.detach:
            raise UserError(f"{option} goes with --detach")
    prefix = _system_path(args) if args.prefix.startswith(DOCKER) else Path(args.prefix)
    state = args.state or Path(f"{prefix}-state")
    boot = boot_target(prefix, state)
    config = VmConfig(
        boot=boot,
        state=state,
        accel=_accel(args.accel, boot),
        memory=args.mem,
        cpus=args.cpus,
        network=args.net,
        publish=[parse_publish(text) for text in args.publish],
        append=args.append,
        detach=args.detach,
        disks=[
            parse_disk(text, default_disk_path(state, index))
            for index, text in enumerate(args.disk)
        ],
        user_data=(
            read_data_file(args.data_file)
            if args.data_file
            else checked(os.fsencode(args.data), "--data")  # the bytes as typed
            if args.data is not None
            else None
        ),
        secure_boot=args.secure_boot,
        tpm=args.tpm,
    )
    if not args.detach:
        return run_foreground(config, _cache(), args.timeout, timeline=args.timeline)
    timeline = run_detached(
        config, _cache(), args.wait_tcp, args.timeout or 120.0, timeline=args.timeline
    )
    if timeline is not None:
        print(as_table(timeline), file=sys.stderr, flush=True)
    if args.json:
        shared.print_json(
            {
                "state": str(config.state),
                "pid": read_pid(config.state),
                "console": str(config.console_log),
                **({} if timeline is None else {"timeline": as_json(timeline)}),
            }
        )
        return ExitCode.OK
    print(f"{config.state} (stop it with: osbuilder stop {config.state})")
    return ExitCode.OK


DOCKER = "docker://"


def _system_path(args: argparse.Namespace) -> Path:
    """`run docker://REF`: the system pulled into the store (a second run downloads
    nothing), its files written once beside it; what of them to boot."""
    from osbuilder.commands.common import open_store, registry_client
    from osbuilder.commands.systems import pull_system
    from osbuilder.oci.reference import parse_reference
    from osbuilder.systems.pull import boot_path, materialised

    ref = parse_reference(args.prefix.removeprefix(DOCKER))
    store = open_store(args)
    with registry_client(args) as client:
        system = pull_system(args, store, client, ref)
    with store.using():
        directory = materialised(store, system)
    return boot_path(directory, system.names())


def _state_dir(path: Path) -> Path:
    if (path / "qemu.pid").exists() or not Path(f"{path}-state").is_dir():
        return path
    return Path(f"{path}-state")


def _stop(args: argparse.Namespace) -> int:
    from osbuilder.vm.control import stop

    state = _state_dir(args.state)
    print(f"{state}: {stop(state, args.timeout)}")
    return ExitCode.OK


def _ps(args: argparse.Namespace) -> int:
    from osbuilder.vm.control import running

    vms = running(_cache())
    if args.json:
        shared.print_json([{"state": str(vm.state), "pid": vm.pid, **vm.record} for vm in vms])
        return ExitCode.OK
    for vm in vms:
        uptime = time.time() - float(vm.record.get("started", time.time()))
        ports = ",".join(vm.record.get("publish", [])) or "-"
        print(f"{vm.state}\tpid {vm.pid}\tup {uptime:.0f} s\t{ports}")
    return ExitCode.OK
