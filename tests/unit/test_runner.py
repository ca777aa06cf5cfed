"""The external-program wrapper: one clear error with the command and its stderr."""

from __future__ import annotations

import logging

import pytest

from osbuilder.errors import ExternalError
from osbuilder.runner import run


def test_success_returns_captured_output() -> None:
    assert run(["sh", "-c", "echo out; echo err >&2"]).stdout == b"out\n"


def test_failure_names_the_command_and_its_stderr(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="osbuilder.runner")
    with pytest.raises(ExternalError) as error:
        run(["sh", "-c", "echo first >&2; echo 'the reason' >&2; exit 3"])
    message = str(error.value)
    assert message.startswith("sh -c ")
    assert "failed (exit 3): first | the reason" in message
    assert "run: sh -c" in caplog.text  # the command is logged before it runs


def test_missing_program() -> None:
    with pytest.raises(ExternalError, match="no-such-tool: command not found"):
        run(["no-such-tool", "--help"])


def test_timeout() -> None:
    with pytest.raises(ExternalError, match=r"did not finish within 0\.2 s"):
        run(["sleep", "5"], timeout=0.2)


def test_unchecked_failure_is_returned() -> None:
    assert run(["false"], check=False).returncode == 1
