"""JSON as containers/image reads signature payloads and policies: a key given twice is
refused, since a silent last-wins could hide a requirement or a second identity."""

from __future__ import annotations

import json
from typing import Any


class DuplicateKey(ValueError):
    """`key` appears twice in one object."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads' object_pairs_hook that raises DuplicateKey."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKey(key)
        result[key] = value
    return result


class InvalidJSON(ValueError):
    """Not JSON as load_strict reads it; the message says why, for the caller to prefix
    with what was read."""


def load_strict(raw: bytes | str) -> Any:
    """`raw` parsed as JSON, refusing a key given twice; InvalidJSON otherwise."""
    try:
        return json.loads(raw, object_pairs_hook=refuse_duplicate_keys)
    except DuplicateKey as exc:
        raise InvalidJSON(f"duplicate key {exc.key!r} in a JSON object") from None
    except RecursionError:
        raise InvalidJSON("JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError too
        raise InvalidJSON(f"not valid JSON: {exc}") from None
