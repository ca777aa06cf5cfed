"""Retry policy shared by registry requests: backoff and Retry-After."""

from __future__ import annotations

import email.utils
import logging
import random
import time

log = logging.getLogger(__name__)

#: A server asking for a longer pause than this gets this.
MAX_DELAY = 60.0
#: Answers worth another try: timeout, too many requests, and the server's own failures.
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(attempt: int, base: float, requested: float | None = None) -> float:
    """Exponential backoff with jitter, at least what the server asked for, at most MAX_DELAY."""
    delay: float = base * (2**attempt) * (1 + random.random() / 4)
    if requested is not None:
        delay = max(delay, requested)
    return min(delay, MAX_DELAY)


def pause(attempt: int, base: float, requested: float | None, what: str, why: str) -> None:
    delay = backoff_delay(attempt, base, requested)
    log.info("%s: %s; retrying in %.1f s", what, why, delay)
    time.sleep(delay)
