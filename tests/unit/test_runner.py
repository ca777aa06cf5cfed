"""The external-program wrapper: one clear error with the command and its stderr."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from osbuilder import runner
from osbuilder.errors import ExternalError
from osbuilder.runner import run, stream_stdout


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


# Records that it was asked to stop (SIGTERM) and could clean up, as mmdebstrap removes
# its temporary root then; SIGKILL would leave no chance.
CLEANS_UP = "trap 'echo cleaned up > \"$0\"; kill $!; exit 1' TERM; echo ready; sleep 30 & wait $!"


def test_a_program_past_its_timeout_is_stopped_gently(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    with pytest.raises(ExternalError, match="did not finish"):
        run(["sh", "-c", CLEANS_UP, str(marker)], timeout=2)  # ample time to set the trap
    assert marker.read_text() == "cleaned up\n"


def test_an_interrupted_stream_stops_its_program_gently(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    with (
        pytest.raises(KeyboardInterrupt),
        stream_stdout(["sh", "-c", CLEANS_UP, str(marker)]) as out,
    ):
        assert out.readline() == b"ready\n"  # the trap is set
        raise KeyboardInterrupt
    assert marker.read_text() == "cleaned up\n"


def test_a_stopped_program_may_write_its_last_output_before_it_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mmdebstrap, told to stop, first finishes its step and writes its tarball: a pipe no
    one read would hold it until it was killed, its temporary root left behind."""
    monkeypatch.setattr(runner, "STOP_GRACE", 10.0)
    marker = tmp_path / "marker"
    script = CLEANS_UP.replace("trap '", "trap 'head -c 1000000 /dev/zero; ")
    with pytest.raises(KeyboardInterrupt), stream_stdout(["sh", "-c", script, str(marker)]) as out:
        assert out.readline() == b"ready\n"
        raise KeyboardInterrupt
    assert marker.read_text() == "cleaned up\n"
