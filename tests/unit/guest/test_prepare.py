"""runtime.json: the mounts, directories, cgroups and namespace binds around the runtime."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from osbuilder.guest import syscalls as sc
from osbuilder.guest.bundle import Bundle, BundleError, MountSpec, discover, parse_runtime
from osbuilder.guest.mountopts import parse_mount_options
from osbuilder.guest.prepare import BundlePreparer, PrepareError, plan_mount
from osbuilder.guest.spawn import CommandResult

BUNDLE = Path("/containers/services/redis")


def test_mount_options_split_into_flags_and_data() -> None:
    flags, data = parse_mount_options(["rw", "nosuid", "nodev", "size=10m", "defaults", "mode=755"])
    assert flags == sc.MS_NOSUID | sc.MS_NODEV
    assert data == "size=10m,mode=755"
    assert parse_mount_options(["ro", "rw"]) == (0, "")
    assert parse_mount_options(["rbind", "ro"])[0] == sc.MS_BIND | sc.MS_REC | sc.MS_RDONLY


def test_overlay_paths_are_relative_to_the_bundle() -> None:
    step = plan_mount(
        BUNDLE,
        MountSpec(
            "rootfs",
            "overlay",
            "overlay",
            ("lowerdir=lower", "upperdir=tmp/upper", "workdir=tmp/work"),
        ),
    )
    assert step.target == f"{BUNDLE}/rootfs"
    assert step.source == "overlay" and step.fstype == "overlay"
    assert step.data == (
        f"lowerdir={BUNDLE}/lower,upperdir={BUNDLE}/tmp/upper,workdir={BUNDLE}/tmp/work"
    )
    assert step.directories == (f"{BUNDLE}/rootfs", f"{BUNDLE}/tmp/upper", f"{BUNDLE}/tmp/work")
    assert step.flags == 0 and step.propagation == 0


def test_linuxkit_absolute_paths_are_kept() -> None:
    linuxkit = "/containers/services/redis"
    step = plan_mount(
        BUNDLE,
        MountSpec(
            f"{linuxkit}/rootfs",
            "overlay",
            "overlay",
            (
                f"lowerdir={linuxkit}/lower:/other",
                f"upperdir={linuxkit}/tmp/upper",
                f"workdir={linuxkit}/tmp/work",
            ),
        ),
    )
    assert step.target == f"{linuxkit}/rootfs"
    assert step.data.startswith(f"lowerdir={linuxkit}/lower:/other,")


def test_bind_sources_resolve_but_filesystem_names_do_not() -> None:
    bind = plan_mount(BUNDLE, MountSpec("rootfs", "", "rootfs", ("bind",)))
    assert bind.source == f"{BUNDLE}/rootfs" and bind.flags == sc.MS_BIND
    tmpfs = plan_mount(BUNDLE, MountSpec("tmp", "tmpfs", "tmpfs", ("size=5m",)))
    assert tmpfs.source == "tmpfs" and tmpfs.data == "size=5m"


def test_propagation_is_a_separate_step() -> None:
    remount_private = plan_mount(BUNDLE, MountSpec("tmp", options=("remount", "private")))
    assert not remount_private.mounts_something
    assert remount_private.propagation == sc.MS_PRIVATE
    shared_bind = plan_mount(BUNDLE, MountSpec("/var/lib", "", "/data", ("rbind", "rshared")))
    assert shared_bind.flags == sc.MS_BIND | sc.MS_REC
    assert shared_bind.propagation == sc.MS_SHARED | sc.MS_REC


class RecordingMounter:
    def __init__(self, fail_on: str = "") -> None:
        self.calls: list[tuple[object, ...]] = []
        self.fail_on = fail_on

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str
    ) -> None:
        if self.fail_on and target.endswith(self.fail_on):
            raise OSError(16, "Device or resource busy")
        self.calls.append(("mount", source, target, fstype, flags, data))

    def umount(self, target: str, flags: int) -> None:
        self.calls.append(("umount", target, flags))


def run_nothing(argv: Sequence[str]) -> CommandResult:
    raise AssertionError(f"unexpected command {argv}")


LINUXKIT_STYLE = {
    "mounts": [
        {"destination": "tmp", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "tmp", "options": ["remount", "private"]},
        {
            "destination": "rootfs",
            "type": "overlay",
            "source": "overlay",
            "options": ["lowerdir=lower", "upperdir=tmp/upper", "workdir=tmp/work"],
        },
    ],
    "mkdir": ["/var/lib/redis-data"],
    "cgroups": ["redis"],
    "restart": "always",
}


def make_bundle(tmp_path: Path, runtime: dict[str, object]) -> Bundle:
    path = tmp_path / "containers/services/redis"
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "runtime.json").write_text(json.dumps(runtime))
    runtime_mkdir = [str(tmp_path / d.lstrip("/")) for d in runtime.get("mkdir", [])]  # type: ignore[attr-defined]
    data = {**runtime, "mkdir": runtime_mkdir}
    return Bundle("services", path, parse_runtime(data))


def test_prepare_mounts_in_order_once_and_cleans_up_in_reverse(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, LINUXKIT_STYLE)
    mounter = RecordingMounter()
    preparer = BundlePreparer(mounter, run_nothing, cgroup_root=tmp_path / "cgroup")
    preparer.prepare(bundle)
    base = str(bundle.path)
    assert mounter.calls == [
        ("mount", "tmpfs", f"{base}/tmp", "tmpfs", 0, ""),
        ("mount", None, f"{base}/tmp", None, sc.MS_PRIVATE, ""),
        (
            "mount",
            "overlay",
            f"{base}/rootfs",
            "overlay",
            0,
            f"lowerdir={base}/lower,upperdir={base}/tmp/upper,workdir={base}/tmp/work",
        ),
    ]
    assert (bundle.path / "tmp/upper").is_dir() and (bundle.path / "tmp/work").is_dir()
    assert (tmp_path / "var/lib/redis-data").is_dir()
    assert (tmp_path / "cgroup/redis").is_dir()
    assert bundle.extras.restart == "always"
    preparer.prepare(bundle)  # a restart keeps the writable layer: no new mounts
    assert len(mounter.calls) == 3
    preparer.cleanup(bundle)
    assert mounter.calls[3:] == [
        ("umount", f"{base}/rootfs", sc.MNT_DETACH),
        ("umount", f"{base}/tmp", sc.MNT_DETACH),
    ]


def test_a_failed_mount_undoes_the_earlier_ones(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, LINUXKIT_STYLE)
    mounter = RecordingMounter(fail_on="rootfs")
    preparer = BundlePreparer(mounter, run_nothing, cgroup_root=tmp_path / "cgroup")
    with pytest.raises(PrepareError, match=r"mount overlay on .*/rootfs: Device or resource busy"):
        preparer.prepare(bundle)
    assert mounter.calls[-1] == ("umount", f"{bundle.path}/tmp", sc.MNT_DETACH)


def test_after_create_binds_namespaces_and_moves_interfaces(tmp_path: Path) -> None:
    netns = tmp_path / "run/netns/wg"
    runtime: dict[str, object] = {
        "bindNS": {"net": str(netns)},
        "interfaces": [{"name": "wg0", "add": "wireguard", "createInRoot": True}, {"name": "eth1"}],
    }
    bundle = make_bundle(tmp_path, runtime)
    commands: list[list[str]] = []

    def run(argv: Sequence[str]) -> CommandResult:
        commands.append(list(argv))
        return CommandResult(tuple(argv), 0, "", "")

    mounter = RecordingMounter()
    BundlePreparer(mounter, run, proc=Path("/proc")).after_create(bundle, 4242)
    assert commands == [
        ["/bin/busybox", "ip", "link", "add", "wg0", "type", "wireguard"],
        ["/bin/busybox", "ip", "link", "set", "wg0", "netns", "4242"],
        ["/bin/busybox", "ip", "link", "set", "eth1", "netns", "4242"],
    ]
    assert mounter.calls == [("mount", "/proc/4242/ns/net", str(netns), None, sc.MS_BIND, "")]
    assert netns.is_file()


def test_a_failing_interface_step_says_why(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, {"interfaces": [{"name": "v0", "peer": "v1"}]})

    def run(argv: Sequence[str]) -> CommandResult:
        return CommandResult(tuple(argv), 2, "", "ip: RTNETLINK answers: Operation not supported\n")

    with pytest.raises(
        PrepareError, match="interface v0: ip link add v0 type veth peer name v1: ip: RTNETLINK"
    ):
        BundlePreparer(RecordingMounter(), run).after_create(bundle, 1)


def test_discover_orders_bundles_and_reports_bad_ones(tmp_path: Path) -> None:
    for name in ("001-second", "000-first", "002-broken", "003-norestart"):
        (tmp_path / "onboot" / name).mkdir(parents=True)
        (tmp_path / "onboot" / name / "config.json").write_text("{}")
    (tmp_path / "onboot/002-broken/runtime.json").write_text('{"mounts": [{"type": "tmpfs"}]}')
    (tmp_path / "onboot/003-norestart/runtime.json").write_text('{"restart": "sometimes"}')
    bundles, problems = discover(tmp_path, "onboot")
    assert [b.path.name for b in bundles] == ["000-first", "001-second"]
    assert bundles[0].name == "first"
    assert bundles[0].container_id == "onboot.000-first"
    assert bundles[0].label == "onboot/first"
    assert "002-broken: runtime.json mounts[0]: no destination" in problems[0]
    assert "restart: 'sometimes' is not one of always, on-failure, never" in problems[1]
    assert discover(tmp_path, "services") == ([], [])


def test_runtime_json_defaults_and_type_errors() -> None:
    extras = parse_runtime({"bindNS": {"net": "/run/netns/x", "uts": ""}})
    assert extras.restart == "on-failure"
    assert extras.bind_ns == (("net", "/run/netns/x"),)
    with pytest.raises(BundleError, match="bindNS: unknown namespace time"):
        parse_runtime({"bindNS": {"time": "/x"}})
    with pytest.raises(BundleError, match="mkdir: expected a list of strings"):
        parse_runtime({"mkdir": "/x"})
