"""The `osbuilder` command: subcommands, exit codes, clean errors.

Exit codes: 0 ok, 1 spec or user error, 2 usage error, 3 failure of something
external (registry, qemu, a tool). A failure prints one line per problem and
no traceback unless --debug.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from osbuilder import __version__
from osbuilder.errors import ExitCode, OsbuilderError

if TYPE_CHECKING:
    from osbuilder.spec import Spec

log = logging.getLogger("osbuilder")

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    try:
        return handler(args)
    except OsbuilderError as exc:
        if args.debug:
            log.exception("failed")
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"osbuilder: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("osbuilder: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line, and the traceback with --debug
        if args.debug:
            raise
        print(
            f"osbuilder: internal error: {type(exc).__name__}: {exc} "
            "(this is a bug; rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return ExitCode.USER


def _parser() -> argparse.ArgumentParser:
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
        "3 failure of something external (registry, qemu, a tool).",
    )
    parser.set_defaults(debug=False, verbose=False)
    parser.add_argument("--version", action="version", version=f"osbuilder {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    validate = sub.add_parser(
        "validate",
        parents=[common],
        help="check spec files and report every error",
        description="Validate spec files and print every error as FILE:LINE:COL: path: message. "
        "Each file is a spec of its own unless --merge is given. Exit 0 when all are valid, "
        "1 when not.",
    )
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE", help="spec files")
    validate.add_argument(
        "--merge",
        action="store_true",
        help="validate the files as one spec, merged in order as `build` merges them",
    )
    validate.add_argument("--json", action="store_true", help="print the result as JSON")
    validate.set_defaults(handler=_validate)

    schema = sub.add_parser(
        "schema",
        parents=[common],
        help="print the JSON Schema of specs",
        description="Print the JSON Schema generated from osbuilder's spec models, or the "
        "Markdown spec reference.",
    )
    schema.add_argument("--format", choices=("json", "markdown"), default="json")
    schema.set_defaults(handler=_schema)
    return parser


def _validate(args: argparse.Namespace) -> int:
    from osbuilder.spec import check_specs

    groups: list[list[Path]] = [args.files] if args.merge else [[f] for f in args.files]
    results = [(group, *check_specs(group)) for group in groups]
    valid = all(loaded is not None for _, loaded, _ in results)
    if args.json:
        every = [d for _, _, diagnostics in results for d in diagnostics]
        print(
            json.dumps(
                {
                    "valid": valid,
                    "files": [str(f) for f in args.files],
                    "errors": [d.as_json() for d in every if d.severity == "error"],
                    "warnings": [d.as_json() for d in every if d.severity == "warning"],
                },
                indent=2,
            )
        )
        return ExitCode.OK if valid else ExitCode.USER
    for group, loaded, diagnostics in results:
        for diagnostic in diagnostics:
            print(diagnostic, file=sys.stderr)
        name = " + ".join(str(f) for f in group)
        if loaded is None:
            errors = sum(d.severity == "error" for d in diagnostics)
            print(f"{name}: invalid, {errors} error{'s' if errors != 1 else ''}", file=sys.stderr)
        else:
            print(f"{name}: valid ({_summary(loaded.spec)})")
    return ExitCode.OK if valid else ExitCode.USER


def _summary(spec: Spec) -> str:
    counts = [
        f"{len(items)} {name}"
        for name, items in (
            ("init", spec.init),
            ("onboot", spec.onboot),
            ("onshutdown", spec.onshutdown),
            ("services", spec.services),
            ("files", spec.files),
            ("volumes", spec.volumes),
        )
        if items
    ]
    return ", ".join(counts) or "empty"


def _schema(args: argparse.Namespace) -> int:
    if args.format == "markdown":
        from osbuilder.spec.reference import render_markdown

        sys.stdout.write(render_markdown())
        return ExitCode.OK
    from osbuilder.spec.model import Spec

    schema = Spec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "osbuilder spec"
    print(json.dumps(schema, indent=2, sort_keys=True))
    return ExitCode.OK
