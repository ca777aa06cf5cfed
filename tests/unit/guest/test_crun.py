"""Real containers: busybox bundles run by the real crun through the init's own runtime
wrapper, reaper and runtime.json preparation (root and crun needed; skipped otherwise)."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from osbuilder.guest import syscalls
from osbuilder.guest.bundle import load_bundle
from osbuilder.guest.container import OciLauncher
from osbuilder.guest.prepare import BundlePreparer, SyscallMounter
from osbuilder.guest.reaper import Reaper, ReaperThread
from osbuilder.guest.restart import Backoff
from osbuilder.guest.runtime import OciRuntime
from osbuilder.guest.sequence import run_to_completion
from osbuilder.guest.spawn import CommandRunner
from osbuilder.guest.supervisor import Supervisor

from .fakes import RecordingConsole

BUSYBOX = Path("/bin/busybox")
CGROUP2_MAGIC = 0x63677270

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("crun") is None or not BUSYBOX.exists(),
    reason="needs root, crun and a static /bin/busybox",
)


def crun_command(directory: Path) -> str:
    """crun itself, or, on a host whose /sys/fs/cgroup is not pure cgroup2 (crun refuses
    hybrid cgroups), crun in its own mount namespace with cgroup2 mounted there."""
    crun = shutil.which("crun")
    assert crun is not None
    if syscalls.filesystem_type("/sys/fs/cgroup") == CGROUP2_MAGIC:
        return crun
    wrapper = directory / "crun"
    wrapper.write_text(
        "#!/bin/sh\n"
        "exec unshare -m sh -c 'mount -t cgroup2 cgroup2 /sys/fs/cgroup && "
        f'exec {crun} "$@"\' crun "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


@dataclass
class Host:
    root: Path
    console: RecordingConsole
    launcher: OciLauncher

    def bundle(self, kind: str, name: str, command: str, *, readonly: bool = True) -> Path:
        """A busybox bundle: rootfs/ (readonly) or lower/ with runtime.json's overlay."""
        path = self.root / "containers" / kind / name
        image = path / ("rootfs" if readonly else "lower")
        for directory in ("bin", "proc", "dev", "tmp"):
            (image / directory).mkdir(parents=True, exist_ok=True)
        shutil.copy2(BUSYBOX, image / "bin/busybox")
        (image / "bin/sh").symlink_to("busybox")
        config: dict[str, Any] = {
            "ociVersion": "1.0.2",
            "process": {
                "terminal": False,
                "user": {"uid": 0, "gid": 0},
                "args": ["/bin/busybox", "sh", "-c", command],
                "env": ["PATH=/bin"],
                "cwd": "/",
                "noNewPrivileges": True,
            },
            "root": {"path": "rootfs", "readonly": readonly},
            "hostname": name.rsplit("-", maxsplit=1)[-1],
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {
                    "destination": "/dev",
                    "type": "tmpfs",
                    "source": "tmpfs",
                    "options": ["nosuid", "mode=755"],
                },
            ],
            "linux": {"namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts")]},
        }
        (path / "config.json").write_text(json.dumps(config))
        if not readonly:
            (path / "rootfs").mkdir()
            (path / "tmp").mkdir()
            runtime = {
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
                "restart": "on-failure",
            }
            (path / "runtime.json").write_text(json.dumps(runtime))
        return path


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    reaper = Reaper()
    reaping = ReaperThread(reaper, interval=0.005)
    syscalls.set_child_subreaper(True)  # containers outlive `crun create`: they come to us
    reaping.start()
    runner = CommandRunner(reaper)
    runtime = OciRuntime(crun_command(tmp_path), runner, global_args=[f"--root={tmp_path}/state"])
    preparer = BundlePreparer(SyscallMounter(), runner.run, cgroup_root=tmp_path / "cgroup")
    console = RecordingConsole()
    launcher = OciLauncher(runtime, reaper, preparer, tmp_path / "run", console)
    try:
        yield Host(tmp_path, console, launcher)
    finally:
        reaping.stop()
        syscalls.set_child_subreaper(False)
        for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
            target = line.split()[1]
            if target.startswith(str(tmp_path)):
                syscalls.umount(target, syscalls.MNT_DETACH)


def test_onboot_container_runs_to_completion(host: Host) -> None:
    path = host.bundle("onboot", "000-hello", "echo hello from $(hostname); echo oops >&2; exit 3")
    result = run_to_completion(
        load_bundle("onboot", path), host.launcher, host.console, host.root / "log"
    )
    assert result.exit_code == 3
    assert "onboot/hello: hello from hello" in host.console.lines
    assert "onboot/hello: oops" in host.console.lines
    assert "onboot hello FAILED: exit code 3" in host.console.text
    assert (host.root / "log/onboot.000-hello.log").read_text() == "hello from hello\noops\n"


def test_writable_container_gets_an_overlay_root_that_is_undone(host: Host) -> None:
    path = host.bundle("onboot", "001-writer", "echo written > /new && cat /new", readonly=False)
    result = run_to_completion(
        load_bundle("onboot", path), host.launcher, host.console, host.root / "log"
    )
    assert result.ok, host.console.text
    assert "onboot/writer: written" in host.console.lines
    assert not (path / "lower/new").exists()  # the write went to the tmpfs upper layer
    assert str(path / "rootfs") not in Path("/proc/self/mounts").read_text()


def test_an_onboot_container_cleaned_up_later_is_gone_soon_after(host: Host) -> None:
    path = host.bundle("onboot", "003-quick", "echo done", readonly=False)
    result = run_to_completion(
        load_bundle("onboot", path),
        host.launcher,
        host.console,
        host.root / "log",
        cleanup_later=True,
    )
    assert result.ok, host.console.text
    deadline = time.monotonic() + 20
    while str(path / "rootfs") in Path("/proc/self/mounts").read_text() or any(
        (host.root / "state").glob("*quick*")
    ):
        assert time.monotonic() < deadline, "the container was not cleaned up"
        time.sleep(0.05)


def test_a_container_that_cannot_start_reports_the_runtimes_reason(host: Host) -> None:
    path = host.bundle("onboot", "002-broken", "true")
    config = json.loads((path / "config.json").read_text())
    config["process"]["args"] = ["/bin/nope"]
    (path / "config.json").write_text(json.dumps(config))
    result = run_to_completion(
        load_bundle("onboot", path), host.launcher, host.console, host.root / "log"
    )
    assert result.exit_code is None
    assert "/bin/nope" in result.error
    assert "onboot broken FAILED to start: " in host.console.text


def test_a_service_that_exits_1_is_restarted(host: Host) -> None:
    path = host.bundle("services", "flaky", "echo attempt; exit 1")
    supervisor = Supervisor(
        host.launcher, host.console, host.root / "log", backoff=lambda: Backoff(initial=0.05)
    )
    supervisor.start_all([load_bundle("services", path)])
    service = supervisor.get("flaky")
    deadline = time.monotonic() + 20
    while service.launches < 3:
        assert time.monotonic() < deadline, host.console.text
        time.sleep(0.01)
    supervisor.stop_all(2.0)
    assert host.console.text.count("service flaky FAILED: exit code 1") >= 2
    assert "service flaky: restarting in 0.05 s (restart: on-failure)" in host.console.text
    assert host.console.lines.count("flaky: attempt") >= 2


def test_a_service_ignoring_sigterm_is_killed_after_the_timeout(host: Host) -> None:
    # A container's PID 1 without a SIGTERM handler never sees SIGTERM from outside.
    path = host.bundle("services", "stubborn", "echo up; exec sleep 1000")
    supervisor = Supervisor(host.launcher, host.console, host.root / "log")
    supervisor.start_all([load_bundle("services", path)])
    host.console.wait_for("stubborn: up", timeout=20)
    started = time.monotonic()
    supervisor.stop_all(0.3)
    assert 0.3 <= time.monotonic() - started < 10
    assert "service stubborn: still running after 0.3 s: SIGKILL" in host.console.text
    assert "service stubborn: stopped (killed by SIGKILL)" in host.console.text
