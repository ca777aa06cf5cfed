"""`osbuilder validate` and `osbuilder schema`."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from osbuilder.commands import common as shared
from osbuilder.errors import ExitCode, UserError

if TYPE_CHECKING:
    from osbuilder.spec import Spec


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    validate = sub.add_parser(
        "validate",
        parents=[common],
        help="check spec files and report every error",
        description="Validate spec files and print every error as FILE:LINE:COL: path: message. "
        "Each file is a spec of its own unless --merge is given. Exit 0 when all are valid, "
        "1 when not.",
    )
    validate.add_argument(
        "files", nargs="+", metavar="FILE", help="spec files (-: standard input; or http(s) URLs)"
    )
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


def _validate(args: argparse.Namespace) -> int:
    from osbuilder.spec import check_specs

    if [str(f) for f in args.files].count("-") > 1:
        raise UserError("- (standard input) can be given only once")
    groups: list[list[str]] = [args.files] if args.merge else [[f] for f in args.files]
    results = [(group, *check_specs(group, shared.resolve_package)) for group in groups]
    valid = all(loaded is not None for _, loaded, _ in results)
    if args.json:
        every = [d for _, _, diagnostics in results for d in diagnostics]
        shared.print_json(
            {
                "valid": valid,
                "files": [str(f) for f in args.files],
                "errors": [d.as_json() for d in every if d.severity == "error"],
                "warnings": [d.as_json() for d in every if d.severity == "warning"],
            }
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
    counts = {"init": len(spec.init or [])}
    for section, _, _ in spec.containers():
        counts[section] = counts.get(section, 0) + 1
    counts |= {"files": len(spec.files or []), "volumes": len(spec.volumes or [])}
    return ", ".join(f"{count} {name}" for name, count in counts.items() if count) or "empty"


def _schema(args: argparse.Namespace) -> int:
    if args.format == "markdown":
        from osbuilder.spec.reference import render_markdown

        sys.stdout.write(render_markdown())
        return ExitCode.OK
    from osbuilder.spec import Spec

    schema = Spec.model_json_schema(by_alias=True, mode="validation")
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "osbuilder spec",
    }
    shared.print_json(schema)
    return ExitCode.OK
