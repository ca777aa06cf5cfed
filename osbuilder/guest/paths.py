"""Where things are in the guest, gathered so tests can point the init at a scratch tree."""

from __future__ import annotations

from osbuilder.guest.fspath import Path

CONTROL_SOCKET = Path("/run/osbuilder/control.sock")


class GuestPaths:
    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    @property
    def volumes(self) -> Path:
        return self.containers / "volumes"

    @property
    def log_dir(self) -> Path:
        return self.root / "var/log"

    @property
    def run_dir(self) -> Path:
        """Runtime state of the init: pid files, the runtime's own logs, the control socket."""
        return self.root / "run/osbuilder"

    @property
    def control_socket(self) -> Path:
        return self.run_dir / "control.sock"

    @property
    def sysfs(self) -> Path:
        return self.root / "sys"

    @property
    def cgroup(self) -> Path:
        return self.root / "sys/fs/cgroup"
