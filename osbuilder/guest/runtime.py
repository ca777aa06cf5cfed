"""The OCI runtime (crun by default, runc when asked or when it is the only one), driven
through its command line like containerd's shim does: create, start, kill, delete; or
`run --detach`, create and start in one invocation, for a container with nothing to do
between the two (each start of the runtime costs about 0.15 s under emulation).

Its own error messages also go to a --log file per container, so a failure to start is
reported with the runtime's reason even though its stderr belongs to the container.

Every crun command runs from one sealed in-memory copy of its binary, made at its first
command: crun (and runc up to 1.1) copies itself into a sealed memfd and executes that
copy again at each start unless it already runs from one, so that a container can never
write the runtime's binary through /proc/PID/exe (CVE-2019-5736). The copy made once
protects the same way and spares every command a second exec and dynamic linking (about
0.1 s each under emulation). runc, 18 times crun's size, is left to copy itself.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Callable, Sequence

from osbuilder.guest.fspath import Path

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at boot

if TYPE_CHECKING:
    from osbuilder.guest.protocols import CommandRunnerLike
    from osbuilder.guest.spawn import CommandResult

CANDIDATES = {
    "crun": ("/usr/bin/crun", "/usr/sbin/crun", "/usr/local/bin/crun"),
    "runc": ("/usr/bin/runc", "/usr/sbin/runc", "/usr/local/sbin/runc", "/usr/local/bin/runc"),
}
_RUNC_MESSAGE = re.compile(r'msg="((?:[^"\\]|\\.)*)"')
_REASON_LINES = 3
# The runtimes whose sealed copy is kept: crun's costs 0.5 MB for the system's life; runc
# 1.1's would cost 9 MB, more than its saving (0.1 s a command) is worth in a small VM, so
# runc keeps copying itself at each command, as it does without us.
_COPIED_ONCE = frozenset({"crun"})
# The seals crun and runc look for on /proc/self/exe: no writing, resizing or unsealing.
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def choose_runtime(preference: str, exists: Callable[[str], bool] = os.path.exists) -> str | None:
    """The runtime's path: the preferred one if installed, else crun, else runc."""
    order = [preference] if preference else []
    order += [name for name in ("crun", "runc") if name not in order]
    for name in order:
        for path in CANDIDATES[name]:
            if exists(path):
                return path
    return None


def reason_from_log(text: str) -> str:
    """The last messages of a runtime's --log file, runc's logfmt reduced to its msg."""
    messages: list[str] = []
    for raw in text.splitlines():
        match = _RUNC_MESSAGE.search(raw)
        message = raw.strip()
        if match:
            message = match.group(1).replace('\\"', '"').replace("\\\\", "\\")
        if message:
            messages.append(message)
    return " | ".join(messages[-_REASON_LINES:])


def sealed_copy(binary: str) -> str:
    """The path of a sealed in-memory copy of `binary`, executable by this process and its
    children for this process's life (its descriptor is kept open on purpose); `binary`
    itself when the copy cannot be made (its runtime then copies itself, as without)."""
    try:
        copy = os.memfd_create(Path(binary).name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    except OSError:
        return binary
    try:
        with open(binary, "rb") as source:
            size = os.fstat(source.fileno()).st_size
            copied = 0
            while copied < size:
                sent = os.sendfile(copy, source.fileno(), copied, size - copied)
                if sent == 0:
                    raise OSError(f"{binary} shrank while it was copied")
                copied += sent
        fcntl.fcntl(copy, fcntl.F_ADD_SEALS, _SEALS)
    except OSError:
        os.close(copy)
        return binary
    # close-on-exec: a child reaches it by this path while the kernel opens it for exec.
    return f"/proc/{os.getpid()}/fd/{copy}"


class OciRuntime:
    def __init__(
        self,
        binary: str,
        runner: CommandRunnerLike,
        *,
        global_args: Sequence[str] = (),
        no_pivot: bool = False,
        timeout: float = 120.0,
    ) -> None:
        self.binary = binary
        self._runner = runner
        self._global_args = tuple(global_args)
        self.no_pivot = no_pivot
        self._timeout = timeout
        self._executable: str | None = None  # the sealed copy, made at the first command

    @property
    def name(self) -> str:
        return Path(self.binary).name

    def _run(
        self, args: Sequence[str], log_file: Path | None = None, output_fd: int | None = None
    ) -> CommandResult:
        argv = [self.binary, *self._global_args]
        if log_file is not None:
            argv.append(f"--log={log_file}")
        if self._executable is None:
            copied = self.name in _COPIED_ONCE
            self._executable = sealed_copy(self.binary) if copied else self.binary
        return self._runner.run(
            [*argv, *args],
            timeout=self._timeout,
            output_fd=output_fd,
            executable=self._executable,
        )

    def create(
        self, container_id: str, bundle: Path, pid_file: Path, log_file: Path, output_fd: int
    ) -> CommandResult:
        """The container's stdout and stderr are output_fd (the runtime hands its own on)."""
        args = ["create", f"--bundle={bundle}", f"--pid-file={pid_file}"]
        if self.no_pivot:
            args.append("--no-pivot")
        return self._run([*args, container_id], log_file, output_fd)

    def run_detached(
        self, container_id: str, bundle: Path, pid_file: Path, log_file: Path, output_fd: int
    ) -> CommandResult:
        """create and start in one go; the container keeps running when this returns."""
        args = ["run", "--detach", f"--bundle={bundle}", f"--pid-file={pid_file}"]
        if self.no_pivot:
            args.append("--no-pivot")
        return self._run([*args, container_id], log_file, output_fd)

    def start(self, container_id: str, log_file: Path) -> CommandResult:
        return self._run(["start", container_id], log_file)

    def kill(self, container_id: str, signal_name: str) -> CommandResult:
        return self._run(["kill", container_id, signal_name])

    def delete(self, container_id: str, *, force: bool = False) -> CommandResult:
        return self._run(["delete", *(["--force"] if force else []), container_id])
