"""Reading the files trust configuration names (policies, keys, keyrings, registries.d)
with a bound: a wrong path (a disk image, /dev/zero) must not be read whole."""

from __future__ import annotations

from pathlib import Path

from osbuilder.errors import UserError


def read_bounded(path: Path, limit: int, what: str, error: type[UserError]) -> bytes:
    """At most `limit` + 1 bytes of `path`, so that the caller can tell a file too large;
    `error("PATH: cannot read WHAT: why")` when it cannot be read at all."""
    try:
        with path.open("rb") as stream:
            return stream.read(limit + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
