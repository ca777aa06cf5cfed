"""Start programs without subprocess: its Popen waits for its own children, which would
race the reaper (and lose exit codes to it). posix_spawn gives a pid and nothing else.

Children start with an empty signal mask and default dispositions: the init blocks the
signals it handles and Python ignores SIGPIPE, and neither must leak into containers.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping, Sequence

from osbuilder.guest.reaper import Reaper
from osbuilder.guest.records import Record

DEFAULT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/"}
_RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def spawn(
    argv: Sequence[str],
    *,
    stdout: int | None = None,
    stderr: int | None = None,
    env: Mapping[str, str] | None = None,
    executable: str | None = None,
) -> int:
    """Start `executable`, by default argv[0] (an absolute path), with stdin on /dev/null;
    returns its pid."""
    actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0)
    ]
    if stdout is not None:
        actions.append((os.POSIX_SPAWN_DUP2, stdout, 1))
    if stderr is not None:
        actions.append((os.POSIX_SPAWN_DUP2, stderr, 2))
    return os.posix_spawn(
        executable or argv[0],
        list(argv),
        dict(DEFAULT_ENV if env is None else env),
        file_actions=actions,
        setsigmask=(),
        setsigdef=_RESET_SIGNALS,
    )


class CommandResult(Record):
    __slots__ = ("argv", "exit_code", "stderr", "stdout")

    def __init__(
        self, argv: tuple[str, ...], exit_code: int | None, stdout: str, stderr: str
    ) -> None:
        self.argv = argv
        self.exit_code = exit_code  # None: killed after the timeout
        self.stdout = stdout
        self.stderr = stderr

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class CommandRunner:
    """Runs a short program to its end, capturing its output in memory files (no pipes,
    so no deadlock whatever it prints), waiting through the reaper."""

    def __init__(self, reaper: Reaper, env: Mapping[str, str] | None = None) -> None:
        self._reaper = reaper
        self._env = env

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 60.0,
        output_fd: int | None = None,
        executable: str | None = None,
    ) -> CommandResult:
        """With output_fd, the program's stdout and stderr go there instead of being captured
        (an OCI runtime's `create` hands them on to the container); with executable, that
        file runs instead of argv[0]."""
        out = os.memfd_create("stdout")
        err = os.memfd_create("stderr")
        try:
            pid = spawn(
                argv,
                stdout=out if output_fd is None else output_fd,
                stderr=err if output_fd is None else output_fd,
                env=self._env,
                executable=executable,
            )
            self._reaper.watch(pid)
            code = self._reaper.wait(pid, timeout)
            if code is None:
                os.kill(pid, signal.SIGKILL)
                self._reaper.wait(pid, 5.0)
                self._reaper.forget(pid)
            return CommandResult(tuple(argv), code, _read_all(out), _read_all(err))
        finally:
            os.close(out)
            os.close(err)


def _read_all(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks: list[bytes] = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")
