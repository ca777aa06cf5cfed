"""JSON as containers/image reads signature payloads and policies: a key given twice is
refused, since a silent last-wins could hide a requirement or a second identity."""

from __future__ import annotations

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
