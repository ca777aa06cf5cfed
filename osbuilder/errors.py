"""The error types the CLI turns into one clean line and an exit code.

Every failure a user can act on is an `OsbuilderError`; anything else reaching
the CLI is a bug and gets a traceback only with --debug.
"""

from __future__ import annotations

import errno
from enum import IntEnum
from pathlib import Path
from typing import Self


class ExitCode(IntEnum):
    OK = 0
    USER = 1  # the spec, a file or an argument the user gave is wrong
    USAGE = 2  # the command line itself is malformed (argparse's convention)
    EXTERNAL = 3  # something outside osbuilder failed: a registry, qemu, a tool
    INTERNAL = 70  # a bug in osbuilder (sysexits.h's EX_SOFTWARE), never the user's mistake


class OsbuilderError(Exception):
    """A failure with a message meant for the user."""

    exit_code: ExitCode = ExitCode.USER

    def prefixed(self, prefix: str) -> Self:
        """The same error (its type and attributes) with `prefix: ` before each line of its
        message: for the one caller that says what failed (e.g. the format being written)."""
        error = type(self).__new__(type(self))
        error.__dict__.update(self.__dict__)
        error.args = ("\n".join(f"{prefix}: {line}" for line in str(self).splitlines()),)
        return error


class UserError(OsbuilderError):
    """The input is wrong; the message says what to fix."""

    exit_code = ExitCode.USER


class ExternalError(OsbuilderError):
    """A program, registry or service that osbuilder depends on failed."""

    exit_code = ExitCode.EXTERNAL


class WriteFailed(UserError):
    """Writing a file failed (a full disk, a read-only mount): no other source or retry helps."""


def cannot_write(
    path: Path, error: OSError, remedy: str = "write the outputs elsewhere with -o DIR"
) -> WriteFailed:
    """The error for a failed write at `path`; `remedy` says what else to do than freeing
    space when the disk is full."""
    hint = ""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = f" (free some space, or {remedy})"
    elif error.errno == errno.ENOENT:
        hint = f" ({path.parent} does not exist)"
    return WriteFailed(f"{path}: cannot write: {error.strerror or error}{hint}")
