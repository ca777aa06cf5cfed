"""The `osbuilder` command: subcommands, exit codes, clean errors.

Exit codes: 0 ok, 1 spec or user error, 2 usage error, 3 failure of something
external (registry, qemu, a tool), 70 a bug in osbuilder (EX_SOFTWARE). A failure
prints one line per problem and no traceback unless --debug.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from osbuilder import __version__
from osbuilder.commands import build, cloud, images, key, lock, pkg, spec, systems, vm
from osbuilder.errors import ExitCode, OsbuilderError

log = logging.getLogger("osbuilder")

Handler = Callable[[argparse.Namespace], int]


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: temporary files removed, a foreground VM stopped."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def run() -> NoReturn:
    """The `osbuilder` program: `main`, and its status as the process's."""
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away with output still buffered: as in main
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 128 + signal.SIGPIPE
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    words = systems.route(cloud.route(list(sys.argv[1:] if argv is None else argv)))
    parser = _parser(words)
    args = parser.parse_args(words)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    # `kill`, `timeout` and CI runners stop a command with SIGTERM, which would otherwise
    # end Python at once, leaving partial files and a running QEMU behind.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return handler(args)
    except OsbuilderError as exc:
        if args.debug:
            log.exception("failed")
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"osbuilder: {line}", file=sys.stderr)
        return exc.exit_code
    except Terminated:
        print("osbuilder: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("osbuilder: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of the output went away (`osbuilder ... | head`): stop quietly, as
        # other tools do, and keep Python's flush at exit from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except Exception as exc:  # a bug: one line, and the traceback with --debug
        if args.debug:
            raise
        print(
            f"osbuilder: internal error: {type(exc).__name__}: {exc} "
            "(this is a bug: rerun with --debug for the traceback, and report it)",
            file=sys.stderr,
        )
        return ExitCode.INTERNAL
    finally:
        if in_main_thread:  # (signal handlers can only be set from the main thread)
            signal.signal(signal.SIGTERM, previous)


if TYPE_CHECKING:
    Register = Callable[
        [argparse._SubParsersAction[argparse.ArgumentParser], argparse.ArgumentParser], None
    ]

# The module registering each command. argparse makes every parser and argument up front;
# all of osbuilder's cost ~3 ms of each run, so a command line that names a command gets
# that module's parsers only. Without a known command (help, a typo) it gets them all.
COMMANDS: dict[str, Register] = {
    "validate": spec.register,
    "schema": spec.register,
    "build": build.register,
    "lock": lock.register,
    "pull": images.register,
    "push": images.register,
    "cache": images.register,
    "sign": images.register,
    "pkg": pkg.register,
    "run": vm.register,
    "stop": vm.register,
    "ps": vm.register,
    "key": key.register,
    cloud.COMMAND: cloud.register,
    systems.COMMAND: systems.register,
    "sbom": systems.register,
}


def _parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser of the command `argv` names (every option before it takes no value), or
    of every command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log everything and show tracebacks",
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log progress"
    )

    parser = argparse.ArgumentParser(
        prog="osbuilder",
        description="Build small, immutable Linux systems from OCI container images.",
        parents=[common],
        epilog="Exit codes: 0 ok, 1 spec or user error, 2 usage error, "
        "3 failure of something external (registry, qemu, a tool), 70 a bug in osbuilder.",
    )
    parser.set_defaults(debug=False, verbose=False)
    parser.add_argument("--version", action="version", version=f"osbuilder {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    named = COMMANDS.get(next((word for word in argv if not word.startswith("-")), ""))
    for register in [named] if named else dict.fromkeys(COMMANDS.values()):
        register(sub, common)
    return parser
