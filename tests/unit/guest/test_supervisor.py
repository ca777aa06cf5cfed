"""The supervisor with scripted containers: restart policies, backoff, stopping."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from osbuilder.guest.restart import Backoff, should_restart
from osbuilder.guest.supervisor import ServiceError, Supervisor

from .fakes import FakeClock, FakeLauncher, RecordingConsole, Script, make_bundle


def wait_until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


@pytest.fixture
def console() -> RecordingConsole:
    return RecordingConsole()


def make_supervisor(
    tmp_path: Path, launcher: FakeLauncher, console: RecordingConsole, clock: FakeClock
) -> Supervisor:
    launcher.clock = clock
    return Supervisor(launcher, console, tmp_path / "log", clock)


def test_backoff_doubles_to_a_ceiling_and_resets_after_a_stable_run() -> None:
    backoff = Backoff(initial=0.5, factor=2, maximum=4, stable_after=10)
    assert [backoff.delay_after(0.1) for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]
    assert backoff.delay_after(10.0) == 0.5
    assert backoff.delay_after(1.0) == 1


@pytest.mark.parametrize(
    ("policy", "exit_code", "expected"),
    [
        ("on-failure", 1, True),
        ("on-failure", -9, True),
        ("on-failure", None, True),
        ("on-failure", 0, False),
        ("always", 0, True),
        ("never", 1, False),
        ("never", None, False),
    ],
)
def test_restart_policy(policy: str, exit_code: int | None, expected: bool) -> None:
    assert should_restart(policy, exit_code) is expected


def test_failing_service_is_restarted_with_growing_delays(
    tmp_path: Path, console: RecordingConsole
) -> None:
    clock = FakeClock()
    fail = Script(exit_code=1)
    launcher = FakeLauncher({"web": [fail, fail, fail, Script(exit_code=None)]})
    supervisor = make_supervisor(tmp_path, launcher, console, clock)
    supervisor.start_all([make_bundle(tmp_path, "services", "web")])
    wait_until(lambda: supervisor.get("web").state == "running")
    assert launcher.launches("web") == 4
    assert clock.waits == [0.5, 1.0, 2.0]
    assert console.text.count("service web FAILED: exit code 1") == 3
    assert "service web: restarting in 0.5 s (restart: on-failure)" in console.text
    status = supervisor.describe()[0]
    assert status["restarts"] == 3
    assert status["last_exit"] == "exit code 1"
    supervisor.stop_all(1.0)


def test_clean_exit_is_not_restarted_on_failure_policy(
    tmp_path: Path, console: RecordingConsole
) -> None:
    launcher = FakeLauncher({"job": [Script(exit_code=0)]})
    supervisor = make_supervisor(tmp_path, launcher, console, FakeClock())
    supervisor.start_all([make_bundle(tmp_path, "services", "job")])
    wait_until(lambda: supervisor.get("job").state == "exited")
    assert launcher.launches("job") == 1
    assert "service job: exited (exit code 0)" in console.text


def test_always_policy_restarts_after_a_clean_exit(
    tmp_path: Path, console: RecordingConsole
) -> None:
    launcher = FakeLauncher({"tick": [Script(exit_code=0), Script(exit_code=0), Script(None)]})
    supervisor = make_supervisor(tmp_path, launcher, console, FakeClock())
    supervisor.start_all([make_bundle(tmp_path, "services", "tick", restart="always")])
    wait_until(lambda: supervisor.get("tick").state == "running")
    assert launcher.launches("tick") == 3
    supervisor.stop_all(1.0)


def test_never_policy_leaves_a_failed_service_stopped(
    tmp_path: Path, console: RecordingConsole
) -> None:
    launcher = FakeLauncher({"once": [Script(exit_code=3)]})
    supervisor = make_supervisor(tmp_path, launcher, console, FakeClock())
    supervisor.start_all([make_bundle(tmp_path, "services", "once", restart="never")])
    wait_until(lambda: supervisor.get("once").state == "failed")
    assert launcher.launches("once") == 1


def test_start_failure_is_reported_with_its_reason_and_retried(
    tmp_path: Path, console: RecordingConsole
) -> None:
    reason = "executable file `/bin/nope` not found in $PATH"
    launcher = FakeLauncher({"bad": [Script(start_error=reason), Script(exit_code=None)]})
    clock = FakeClock()
    supervisor = make_supervisor(tmp_path, launcher, console, clock)
    supervisor.start_all([make_bundle(tmp_path, "services", "bad")])
    wait_until(lambda: supervisor.get("bad").state == "running")
    assert f"service bad cannot start: {reason}" in console.text
    assert clock.waits == [0.5]
    supervisor.stop_all(1.0)


def test_stop_all_sends_term_then_kill_after_the_timeout(
    tmp_path: Path, console: RecordingConsole
) -> None:
    launcher = FakeLauncher(
        {
            "polite": [Script(exit_code=None)],
            "stubborn": [Script(exit_code=None, ignores_term=True)],
        }
    )
    supervisor = make_supervisor(tmp_path, launcher, console, FakeClock())
    supervisor.start_all(
        [make_bundle(tmp_path, "services", "polite"), make_bundle(tmp_path, "services", "stubborn")]
    )
    wait_until(lambda: all(s.state == "running" for s in supervisor.services.values()))
    started = time.monotonic()
    supervisor.stop_all(0.2)
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 2.0
    by_name = {container.name: container for container in launcher.containers}
    assert by_name["polite"].signals == [signal.SIGTERM]
    assert by_name["stubborn"].signals == [signal.SIGTERM, signal.SIGKILL]
    assert "service stubborn: still running after 0.2 s: SIGKILL" in console.text
    assert "service polite: stopped (killed by SIGTERM)" in console.text
    assert {s.state for s in supervisor.services.values()} == {"stopped"}
    # Stopping is not failing: nothing is restarted afterwards.
    assert launcher.launches("polite") == 1
    assert launcher.launches("stubborn") == 1


def test_stop_start_and_restart_by_name(tmp_path: Path, console: RecordingConsole) -> None:
    launcher = FakeLauncher({"db": [Script(exit_code=None)]})
    supervisor = make_supervisor(tmp_path, launcher, console, FakeClock())
    supervisor.start_all([make_bundle(tmp_path, "services", "db")])
    service = supervisor.get("db")
    wait_until(lambda: service.state == "running")
    supervisor.stop("db", 1.0)
    assert service.state == "stopped"
    assert launcher.launches("db") == 1
    supervisor.start("db")
    wait_until(lambda: service.state == "running" and launcher.launches("db") == 2)
    supervisor.restart("db", 1.0)
    wait_until(lambda: service.state == "running" and launcher.launches("db") == 3)
    assert launcher.events.count("finish db") == 2
    with pytest.raises(ServiceError, match="no service 'nope' \\(services: db\\)"):
        supervisor.stop("nope", 1.0)
    supervisor.stop_all(1.0)


def test_stop_during_backoff_cancels_the_restart(tmp_path: Path, console: RecordingConsole) -> None:
    launcher = FakeLauncher({"flaky": [Script(exit_code=1)]})
    supervisor = Supervisor(
        launcher, console, tmp_path / "log", backoff=lambda: Backoff(initial=30)
    )
    supervisor.start_all([make_bundle(tmp_path, "services", "flaky")])
    service = supervisor.get("flaky")
    wait_until(lambda: service.state == "backoff")
    started = time.monotonic()
    supervisor.stop_all(1.0)
    assert time.monotonic() - started < 1.0
    assert service.state == "stopped"
    assert launcher.launches("flaky") == 1


def test_services_start_concurrently(tmp_path: Path, console: RecordingConsole) -> None:
    names = [f"s{number}" for number in range(5)]
    launcher = FakeLauncher({name: [Script(exit_code=None)] for name in names})
    supervisor = make_supervisor(tmp_path, launcher, console, FakeClock())
    supervisor.start_all([make_bundle(tmp_path, "services", name) for name in names])
    wait_until(lambda: all(s.state == "running" for s in supervisor.services.values()))
    assert [entry["name"] for entry in supervisor.describe()] == names
    supervisor.stop_all(1.0)


def test_output_goes_to_the_log_file_and_the_console_with_a_prefix(
    tmp_path: Path, console: RecordingConsole
) -> None:
    launcher = FakeLauncher({"redis": [Script(exit_code=None, output="Ready to accept\nsecond\n")]})
    supervisor = make_supervisor(tmp_path, launcher, console, FakeClock())
    supervisor.start_all([make_bundle(tmp_path, "services", "redis")])
    console.wait_for("redis: second")
    assert "redis: Ready to accept" in console.lines
    assert (tmp_path / "log/redis.log").read_text() == "Ready to accept\nsecond\n"
    supervisor.stop_all(1.0)
