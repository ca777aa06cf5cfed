"""The external-program wrapper: one clear error with the command and its stderr."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from osbuilder import runner
from osbuilder.errors import ExternalError
from osbuilder.runner import feed_stdin, run, stream_stdout


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


def test_what_is_fed_reaches_the_program(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    with feed_stdin(["sh", "-c", 'cat > "$0"', str(copy)]) as stdin:
        stdin.write(b"x" * (1 << 20))  # more than a pipe holds
    assert copy.read_bytes() == b"x" * (1 << 20)


def test_a_fed_program_that_fails_or_stops_reading_gives_its_own_error() -> None:
    with (
        pytest.raises(ExternalError, match=r"failed \(exit 2\): bad input"),
        feed_stdin(["sh", "-c", "cat > /dev/null; echo 'bad input' >&2; exit 2"]) as stdin,
    ):
        stdin.write(b"data")
    # It exits at once: writing on meets a closed pipe, and its exit status is what is told.
    with (
        pytest.raises(ExternalError, match=r"failed \(exit 3\): gave up"),
        feed_stdin(["sh", "-c", "echo 'gave up' >&2; exit 3"]) as stdin,
    ):
        for _ in range(64):
            stdin.write(b"y" * (1 << 20))
    with (
        pytest.raises(ExternalError, match="exited before reading all its input"),
        feed_stdin(["true"]) as stdin,
    ):
        for _ in range(64):
            stdin.write(b"z" * (1 << 20))


def test_an_interrupted_feed_stops_its_program_gently(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    script = CLEANS_UP.replace("echo ready", ': > "$0.ready"')  # its stdout goes nowhere
    with pytest.raises(KeyboardInterrupt), feed_stdin(["sh", "-c", script, str(marker)]):
        ready = Path(f"{marker}.ready")
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        raise KeyboardInterrupt
    assert marker.read_text() == "cleaned up\n"
