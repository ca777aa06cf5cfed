"""PID 1's entry point: main() (the image's /init runs it with `python3.11 -c`, which
spares runpy's imports; `python3.11 -m osbuilder.guest` runs it too).

Whatever happens, this never returns: the kernel panics when PID 1 exits.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import time

from osbuilder.guest.console import Console


def idle_forever(reap: bool) -> None:
    """Never return. The signal thread, when it runs, keeps reaping and the control socket
    keeps answering; otherwise orphans are reaped here, so zombies do not pile up."""
    while True:
        with contextlib.suppress(BaseException):  # PID 1 may not leave, not even on ^C
            time.sleep(1.0 if reap else 3600)
            while reap and os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass


def main() -> None:
    if os.getpid() != 1:
        print(
            "osbuilder.guest is the init (PID 1) of an osbuilder system; "
            "inside one, use osbuilder-ctl to talk to it.",
            file=sys.stderr,
        )
        sys.exit(2)
    # No garbage collection while booting: importing the init and booting make objects
    # that live as long as it does, and collecting them again and again was 5% of the
    # instructions of its imports. Init.run turns collection on once booted.
    gc.disable()
    console = Console()
    reaping = False
    try:
        from osbuilder.guest.init import Init

        init = Init(console)
        try:
            init.run()
        finally:
            reaping = init.reaping
    except BaseException:
        import traceback  # only when something failed: it imports a lot

        console.error("the init failed:\n" + traceback.format_exc())
    idle_forever(reap=not reaping)


if __name__ == "__main__":
    main()
