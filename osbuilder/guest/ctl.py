"""osbuilder-ctl: talk to the init from inside the guest (e.g. from the getty shell).

osbuilder-ctl ps | logs NAME [-n LINES] | start NAME | stop NAME | restart NAME
              | poweroff | reboot | halt
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from osbuilder.guest.control import DEFAULT_LOG_LINES, request
from osbuilder.guest.fspath import Path
from osbuilder.guest.paths import CONTROL_SOCKET


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="osbuilder-ctl", description="Control the osbuilder init."
    )
    parser.add_argument("--socket", type=Path, default=CONTROL_SOCKET, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print the init's answer as JSON")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("ps", help="list the services")
    logs = commands.add_parser("logs", help="show the end of a service's log")
    logs.add_argument("name")
    logs.add_argument("-n", "--lines", type=int, default=DEFAULT_LOG_LINES)
    for command, text in (("start", "start"), ("stop", "stop"), ("restart", "restart")):
        commands.add_parser(command, help=f"{text} a service").add_argument("name")
    for command in ("poweroff", "reboot", "halt"):
        commands.add_parser(command, help=f"{command} the machine")
    return parser


def format_services(services: list[dict[str, Any]]) -> str:
    header = ("NAME", "STATE", "PID", "RESTARTS", "UPTIME", "LAST EXIT")
    rows = [header]
    for service in services:
        uptime = service.get("uptime")
        rows.append(
            (
                str(service["name"]),
                str(service["state"]),
                str(service.get("pid") or "-"),
                str(service.get("restarts", 0)),
                "-" if uptime is None else f"{uptime:g}s",
                str(service.get("last_exit") or "-"),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    for service in services:
        if service.get("error"):
            lines.append(f"{service['name']}: {service['error']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    message: dict[str, Any] = {"command": arguments.command}
    if hasattr(arguments, "name"):
        message["name"] = arguments.name
    if arguments.command == "logs":
        message["lines"] = arguments.lines
    try:
        answer = request(arguments.socket, message)
    except (OSError, ValueError) as error:
        print(
            f"osbuilder-ctl: cannot reach the init at {arguments.socket}: {error}", file=sys.stderr
        )
        return 2
    if not answer.get("ok"):
        print(f"osbuilder-ctl: {answer.get('error', 'failed')}", file=sys.stderr)
        return 1
    result = answer.get("result")
    if arguments.json:
        print(json.dumps(result, indent=2))
    elif arguments.command == "ps" and isinstance(result, list):
        print(format_services(result))
    elif arguments.command == "logs" and isinstance(result, list):
        print("\n".join(str(line) for line in result))
    elif isinstance(result, dict):
        print(f"{result.get('name')}: {result.get('state')}")
    else:
        print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
