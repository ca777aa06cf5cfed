"""The one way osbuilder runs external programs.

Every command is logged before it runs; a failure raises ExternalError
carrying the command and the tail of its stderr, so the CLI can print one
clear line and --debug shows the rest.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from osbuilder.errors import ExternalError

log = logging.getLogger(__name__)


class CommandFailed(ExternalError):
    """A program exited non-zero; the message has its stderr's tail, `stderr` all of it."""

    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        tail = " | ".join(stderr.splitlines()[-_STDERR_TAIL_LINES:]) or "no error output"
        super().__init__(f"{shlex.join(argv)} failed (exit {returncode}): {tail}")
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr


_STDERR_TAIL_LINES = 5


def run(
    command: Sequence[str | Path],
    *,
    input: bytes | None = None,
    capture: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run `command`; raise ExternalError with its stderr when it fails and `check` is set.

    stdout is captured (never logged: it may hold secrets, as credential helpers' does).
    """
    argv = [str(part) for part in command]
    program = argv[0]
    process = _start(
        argv,
        env,
        stdin=None if input is None else subprocess.PIPE,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE,
        cwd=cwd,
    )
    with process:
        try:
            stdout, stderr_bytes = process.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(process, program)
            raise ExternalError(f"{program} did not finish within {timeout} s") from None
        except BaseException:  # Ctrl-C, SIGTERM: the program goes too, cleaning up after itself
            _stop(process, program)
            raise
    result = subprocess.CompletedProcess(argv, process.returncode, stdout, stderr_bytes)
    if check and result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()
        log.debug("%s failed (exit %d); stderr:\n%s", program, result.returncode, stderr)
        raise CommandFailed(argv, result.returncode, stderr)
    return result


@contextlib.contextmanager
def stream_stdout(
    command: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[IO[bytes]]:
    """Run `command` and yield its stdout to read while it runs.

    stderr goes to a temporary file (a pipe could fill up and stall the
    program); when the block ends the program must have exited 0, else an
    ExternalError carries the tail of its stderr. If the block raises, the
    program is killed.
    """
    argv = [str(part) for part in command]
    program = argv[0]
    with tempfile.TemporaryFile() as stderr:
        process = _start(
            argv,
            env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
        )
        assert process.stdout is not None
        try:
            yield process.stdout
            while process.stdout.read(1024 * 1024):  # drain what the reader left, in bounded reads
                pass
        except Exception:
            # A reader choking on truncated output is a symptom: if the program failed,
            # its own error is the one to report.
            process.stdout.close()
            try:
                failed = process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                failed = process.wait()
            if failed > 0:
                _raise_failure(argv, failed, stderr)
            raise
        except BaseException:  # interrupted: stop the program, letting it clean up
            _stop(process, program, process.stdout)
            raise
        finally:
            process.stdout.close()
        returncode = process.wait()
        if returncode != 0:
            _raise_failure(argv, returncode, stderr)


@contextlib.contextmanager
def feed_stdin(
    command: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
) -> Iterator[IO[bytes]]:
    """Run `command` and yield its stdin to write to while it runs.

    The block's end closes stdin; the program must then exit 0, else an ExternalError
    carries the tail of its stderr (which goes to a temporary file, as in stream_stdout;
    stdout is discarded). If the block raises, the program is stopped; if the program
    fails while the block is still writing, its own error is the one raised.
    """
    argv = [str(part) for part in command]
    program = argv[0]
    with tempfile.TemporaryFile() as stderr:
        process = _start(argv, env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr)
        assert process.stdin is not None
        try:
            yield process.stdin
            process.stdin.close()
        except BrokenPipeError:
            # The program stopped reading: its exit status says why.
            with contextlib.suppress(OSError):
                process.stdin.close()
            if (failed := process.wait()) != 0:
                _raise_failure(argv, failed, stderr)
            raise ExternalError(f"{program} exited before reading all its input") from None
        except BaseException:
            with contextlib.suppress(OSError):
                process.stdin.close()
            _stop(process, program)
            raise
        returncode = process.wait()
        if returncode != 0:
            _raise_failure(argv, returncode, stderr)


def _start(
    argv: list[str], env: Mapping[str, str] | None, **options: Any
) -> subprocess.Popen[bytes]:
    """Start `argv` (logged first) with `env` added to ours; a clear error if it cannot."""
    program = argv[0]
    if shutil.which(program) is None and not Path(program).is_file():
        raise ExternalError(f"{program}: command not found (is its package installed?)")
    log.debug("run: %s", shlex.join(argv))
    try:
        return subprocess.Popen(argv, env=None if env is None else {**os.environ, **env}, **options)
    except OSError as exc:
        raise ExternalError(f"{program}: cannot run: {exc.strerror}") from None


STOP_GRACE = 60.0  # seconds a stopped program gets to clean up (mmdebstrap: its temp root)
_PATIENT = 1.0  # after this long, say what is being waited for


def _stop(process: subprocess.Popen[bytes], program: str, output: IO[bytes] | None = None) -> None:
    """SIGTERM, then SIGKILL if it is still there after STOP_GRACE seconds.

    Killed outright, mmdebstrap would leave its temporary root (hundreds of MB) and its
    dpkg children behind; on SIGTERM it finishes the step under way, then cleans up.
    Its `output` is read (and dropped) meanwhile: a program blocked writing to a pipe no
    one reads could never get there.
    """
    process.terminate()
    started = time.monotonic()
    try:
        if not _ended(process, output, started + _PATIENT):
            log.warning(
                "waiting up to %g s for %s to clean up (interrupt again to kill it)",
                STOP_GRACE,
                program,
            )
            if not _ended(process, output, started + STOP_GRACE):
                process.kill()
        process.wait()
    except BaseException:  # interrupted again while waiting: no more patience
        process.kill()
        process.wait()
        raise


def _ended(process: subprocess.Popen[bytes], output: IO[bytes] | None, deadline: float) -> bool:
    """Whether `process` exits before `deadline`, reading and dropping its `output`."""
    while (left := deadline - time.monotonic()) > 0:
        if output is None or output.closed:
            try:
                process.wait(timeout=left)
            except subprocess.TimeoutExpired:
                return False
            return True
        ready, _, _ = select.select([output], [], [], left)
        if ready and not os.read(output.fileno(), 1 << 20):
            output.close()  # end of its output: now wait for the process itself
    return process.poll() is not None


def _raise_failure(argv: list[str], returncode: int, stderr: IO[bytes]) -> None:
    stderr.seek(0)
    text = stderr.read().decode(errors="replace").strip()
    log.debug("%s failed (exit %d); stderr:\n%s", argv[0], returncode, text)
    raise CommandFailed(argv, returncode, text) from None
