"""The one way osbuilder runs external programs.

Every command is logged before it runs; a failure raises ExternalError
carrying the command and the tail of its stderr, so the CLI can print one
clear line and --debug shows the rest.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from osbuilder.errors import ExternalError

log = logging.getLogger(__name__)

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
    if shutil.which(program) is None and not Path(program).is_file():
        raise ExternalError(f"{program}: command not found (is its package installed?)")
    log.debug("run: %s", shlex.join(argv))
    try:
        result = subprocess.run(
            argv,
            input=input,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE,
            env=None if env is None else {**os.environ, **env},
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ExternalError(f"{program} did not finish within {timeout} s") from None
    except OSError as exc:
        raise ExternalError(f"{program}: cannot run: {exc.strerror}") from None
    if check and result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()
        log.debug("%s failed (exit %d); stderr:\n%s", program, result.returncode, stderr)
        tail = " | ".join(stderr.splitlines()[-_STDERR_TAIL_LINES:]) or "no error output"
        raise ExternalError(f"{shlex.join(argv)} failed (exit {result.returncode}): {tail}")
    return result
