"""One container's life through the OCI runtime: prepare, create, after-create, start,
wait, delete; create and start are one `run --detach` when there is nothing to do after
create (no interfaces to move in, no namespaces to bind). The supervisor and the onboot
sequence see only `Launcher` and `ContainerHandle`, so tests can give them fakes.
"""

from __future__ import annotations

import contextlib
import os
import threading

from osbuilder.guest.bundle import Bundle
from osbuilder.guest.console import Console
from osbuilder.guest.fspath import Path
from osbuilder.guest.prepare import BundlePreparer, PrepareError
from osbuilder.guest.reaper import Reaper
from osbuilder.guest.runtime import OciRuntime, reason_from_log
from osbuilder.guest.spawn import CommandResult

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at boot

if TYPE_CHECKING:
    from osbuilder.guest.protocols import ContainerHandle


class StartError(Exception):
    """The container could not be started; str() is the reason."""


class OciContainer:
    def __init__(self, launcher: OciLauncher, bundle: Bundle, pid: int) -> None:
        self._launcher = launcher
        self._bundle = bundle
        self._pid = pid
        self._code: int | None = None
        self._lock = threading.Lock()
        self._finished = False

    @property
    def pid(self) -> int:
        return self._pid

    def wait(self, timeout: float | None = None) -> int | None:
        if self._code is None:
            code = self._launcher.reaper.wait(self._pid, timeout)
            with self._lock:
                if code is not None:
                    self._code = code
        return self._code

    def signal(self, signum: int) -> None:
        with self._lock:
            if self._code is not None or self._launcher.reaper.has_exited(self._pid):
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signum)

    def finish(self, release: bool = False, later: bool = False) -> None:
        with self._lock:
            if self._finished:
                return
            self._finished = True
        force = self._code is None
        if later:
            threading.Thread(
                target=self._launcher.remove_niced,
                args=(self._bundle, force, release),
                name=f"remove {self._bundle.name}",
                daemon=True,
            ).start()
        else:
            self._launcher.remove(self._bundle, force=force, release=release)


class OciLauncher:
    def __init__(
        self,
        runtime: OciRuntime,
        reaper: Reaper,
        preparer: BundlePreparer,
        state_dir: Path,
        console: Console | None = None,
    ) -> None:
        self.runtime = runtime
        self.reaper = reaper
        self.preparer = preparer
        self.state_dir = state_dir
        self._console = console

    def _files(self, bundle: Bundle) -> tuple[Path, Path]:
        name = bundle.container_id
        return self.state_dir / f"{name}.pid", self.state_dir / f"{name}.runtime.log"

    def launch(self, bundle: Bundle, output_fd: int) -> ContainerHandle:
        pid_file, log_file = self._files(bundle)
        in_one_step = not self.preparer.has_after_create(bundle)
        step = "run" if in_one_step else "create"
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            pid_file.unlink(missing_ok=True)
            log_file.write_bytes(b"")
            self.preparer.prepare(bundle)
            created = self._create(bundle, pid_file, log_file, output_fd, start=in_one_step)
            if not created.ok:
                raise StartError(self._reason(created, log_file, step))
            pid = int(pid_file.read_text().strip())
        except PrepareError as error:
            raise StartError(f"runtime.json: {error}") from None
        except (OSError, ValueError) as error:
            self.remove(bundle, force=True)
            raise StartError(f"{self.runtime.name} {step}: {error}") from None
        self.reaper.watch(pid)
        if in_one_step:
            return OciContainer(self, bundle, pid)
        try:
            self.preparer.after_create(bundle, pid)
        except PrepareError as error:
            self.remove(bundle, force=True)
            raise StartError(f"runtime.json: {error}") from None
        started = self.runtime.start(bundle.container_id, log_file)
        if not started.ok:
            self.remove(bundle, force=True)
            raise StartError(self._reason(started, log_file, "start"))
        return OciContainer(self, bundle, pid)

    def _create(
        self, bundle: Bundle, pid_file: Path, log_file: Path, output_fd: int, *, start: bool
    ) -> CommandResult:
        """create, or with `start` run --detach; retried once after clearing what blocks it."""
        create = self.runtime.run_detached if start else self.runtime.create
        result = create(bundle.container_id, bundle.path, pid_file, log_file, output_fd)
        reason = "" if result.ok else self._reason(result, log_file, "create")
        if "pivot_root" in reason and not self.runtime.no_pivot:
            # Still on a root pivot_root refuses (rootmove failed?): the runtime can cope.
            if self._console is not None:
                self._console.error(f"{reason}: using --no-pivot from now on")
            self.runtime.no_pivot = True
        elif "exist" not in reason:
            return result
        # Left behind by an earlier attempt that failed half-way: clear it and retry.
        self.runtime.delete(bundle.container_id, force=True)
        log_file.write_bytes(b"")
        return create(bundle.container_id, bundle.path, pid_file, log_file, output_fd)

    def _reason(self, result: CommandResult, log_file: Path, step: str) -> str:
        try:
            reason = reason_from_log(log_file.read_text(errors="replace"))
        except OSError:
            reason = ""
        reason = reason or reason_from_log(result.stderr or result.stdout)
        if result.exit_code is None:
            return f"{self.runtime.name} {step} did not finish"
        return reason or f"{self.runtime.name} {step} failed with exit code {result.exit_code}"

    def remove_niced(self, bundle: Bundle, force: bool, release: bool) -> None:
        """remove() at the lowest priority: it then takes only CPU time nothing else wants
        (the runtime it starts inherits this thread's niceness)."""
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            self.remove(bundle, force=force, release=release)
        except Exception as error:  # a thread of PID 1 must not die with a traceback
            if self._console is not None:
                self._console.error(f"{bundle.kind} {bundle.name}: cleaning up: {error!r}")

    def remove(self, bundle: Bundle, *, force: bool, release: bool = False) -> None:
        """Delete the container (killing what is left of it) and forget its files."""
        with contextlib.suppress(OSError):
            self.runtime.delete(bundle.container_id, force=force)
        if release:
            self.preparer.cleanup(bundle)
        pid_file, _ = self._files(bundle)
        pid_file.unlink(missing_ok=True)
