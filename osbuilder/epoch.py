"""The time of everything osbuilder generates: SOURCE_DATE_EPOCH (reproducible-builds.org).

Package layers, image configs and what a build generates (files, config.json, the
SBOM, media metadata) carry this time, so the same inputs give the same bytes.
"""

from __future__ import annotations

import os

from osbuilder.errors import UserError

#: Used when SOURCE_DATE_EPOCH is not set: 2024-01-01T00:00:00Z.
DEFAULT_EPOCH = 1704067200


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH, else DEFAULT_EPOCH."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None:
        return DEFAULT_EPOCH
    try:
        return int(value)
    except ValueError:
        raise UserError(f"SOURCE_DATE_EPOCH must be a number of seconds, got {value!r}") from None
