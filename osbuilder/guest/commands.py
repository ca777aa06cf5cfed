"""What each control request does, on the supervisor and the shutdown switch."""

from __future__ import annotations

from collections.abc import Callable

from osbuilder.guest.control import DEFAULT_LOG_LINES, ControlError, tail_lines
from osbuilder.guest.supervisor import ServiceError, Supervisor

POWER_COMMANDS = ("poweroff", "reboot", "halt")

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at boot

if TYPE_CHECKING:
    from typing import Any


class ControlCommands:
    def __init__(
        self,
        supervisor: Supervisor,
        request_shutdown: Callable[[str], None],
        stop_timeout: float,
    ) -> None:
        self._supervisor = supervisor
        self._request_shutdown = request_shutdown
        self._stop_timeout = stop_timeout

    def __call__(self, request: dict[str, Any]) -> Any:
        command = request["command"]
        try:
            if command == "ps":
                return self._supervisor.describe()
            if command in POWER_COMMANDS:
                self._request_shutdown(command)
                return f"{command} requested"
            name = request.get("name")
            if not isinstance(name, str) or not name:
                raise ControlError(f"{command}: needs a service name")
            if command == "logs":
                lines = request.get("lines", DEFAULT_LOG_LINES)
                if not isinstance(lines, int) or lines < 1:
                    raise ControlError("logs: lines must be a positive number")
                return tail_lines(self._supervisor.get(name).log_path, lines)
            if command == "stop":
                self._supervisor.stop(name, self._stop_timeout)
            elif command == "start":
                self._supervisor.start(name, self._stop_timeout)
            elif command == "restart":
                self._supervisor.restart(name, self._stop_timeout)
            else:
                raise ControlError(f"unknown command {command!r}")
            return self._supervisor.get(name).describe()
        except ServiceError as error:
            raise ControlError(str(error)) from None
