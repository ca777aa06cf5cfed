"""The init's options, read from the kernel command line (`osbuilder.NAME=VALUE`).

The kernel keeps dotted words to itself (it takes them for module parameters and never
passes them to init), so they are read from /proc/cmdline.
"""

from __future__ import annotations

from osbuilder.guest.logpump import DEFAULT_LOG_LIMIT, LogLimit
from osbuilder.guest.records import Record

DEFAULT_SHUTDOWN_TIMEOUT = 10.0


class BootOptions(Record):
    __slots__ = (
        "debug",
        "extra_modules",
        "log_limit",
        "no_pivot",
        "problems",
        "runtime",
        "shutdown_timeout",
        "skipped_modules",
    )

    def __init__(
        self,
        runtime: str = "",  # "crun", "runc" or "" for crun when present, else runc
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        debug: bool = False,
        extra_modules: tuple[str, ...] = (),
        no_pivot: bool = False,  # keep the initramfs root and run the runtime with --no-pivot
        problems: tuple[str, ...] = (),
        skipped_modules: tuple[str, ...] = (),  # never loaded, whatever the devices want
        log_limit: LogLimit = DEFAULT_LOG_LIMIT,
    ) -> None:
        self.runtime = runtime
        self.shutdown_timeout = shutdown_timeout
        self.debug = debug
        self.extra_modules = extra_modules
        self.no_pivot = no_pivot
        self.problems = problems
        self.skipped_modules = skipped_modules
        self.log_limit = log_limit


_UNITS = {"": 1, "K": 1024, "M": 1024 * 1024, "G": 1024 * 1024 * 1024}


def _size(value: str) -> int | None:
    """'512K' -> 524288; None when it is no size."""
    number, unit = value[:-1], value[-1:].upper()
    if unit not in _UNITS or unit == "":
        number, unit = value, ""
    return int(number) * _UNITS[unit] if number.isdigit() else None


def _flag(value: str) -> bool:
    return value.lower() not in ("0", "no", "false", "off")


def parse_cmdline(text: str) -> BootOptions:
    """Read our options from the command line; a bad value is reported, never fatal."""
    values: dict[str, str] = {}
    for word in text.split():
        name, _, value = word.partition("=")
        if name.startswith("osbuilder."):
            values[name.removeprefix("osbuilder.")] = value
    problems: list[str] = []
    runtime = values.pop("runtime", "")
    if runtime not in ("", "crun", "runc"):
        problems.append(f"osbuilder.runtime={runtime}: expected crun or runc")
        runtime = ""
    timeout = DEFAULT_SHUTDOWN_TIMEOUT
    if "shutdown_timeout" in values:
        raw = values.pop("shutdown_timeout")
        try:
            timeout = float(raw)
            if timeout < 0:
                raise ValueError(raw)
        except ValueError:
            problems.append(f"osbuilder.shutdown_timeout={raw}: expected seconds")
            timeout = DEFAULT_SHUTDOWN_TIMEOUT
    # Read by kernel+squashfs's boot stage (formats/boot_stage.py), which cannot report.
    rootwait = values.pop("rootwait", "0")
    if not rootwait.isdigit():
        problems.append(f"osbuilder.rootwait={rootwait}: expected whole seconds")
    # osbuilder.verity.FS: a --verity root's hash tree, read by the boot stage alone
    # (formats/verity.py).
    for name in [name for name in values if name.startswith("verity.")]:
        del values[name]
    modules = tuple(m for m in values.pop("modules", "").split(",") if m)
    skipped = tuple(m for m in values.pop("modules_skip", "").split(",") if m)
    debug = _flag(values.pop("debug", "0") or "1")
    no_pivot = _flag(values.pop("no_pivot", "0") or "1")
    log_bytes, log_keep = DEFAULT_LOG_LIMIT.max_bytes, DEFAULT_LOG_LIMIT.keep
    if "log_size" in values:
        raw = values.pop("log_size")
        size = _size(raw)
        if size is None:
            problems.append(f"osbuilder.log_size={raw}: expected bytes, or with K, M or G")
        else:
            log_bytes = size
    if "log_files" in values:
        raw = values.pop("log_files")
        if raw.isdigit():
            log_keep = int(raw)
        else:
            problems.append(f"osbuilder.log_files={raw}: expected a number of old files")
    problems.extend(f"osbuilder.{name}: unknown option" for name in sorted(values))
    return BootOptions(
        runtime,
        timeout,
        debug,
        modules,
        no_pivot,
        tuple(problems),
        skipped,
        LogLimit(log_bytes, log_keep),
    )
