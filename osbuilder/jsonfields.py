"""JSON objects with optional fields, as OCI image configs and runtime specs have them:
a field that is unset is left out, not written as null."""

from __future__ import annotations

from typing import Any


def given(**fields: Any) -> dict[str, Any]:
    """The `fields` that are set (not None), in their order: `given(Cmd=None, Env=[])` is
    `{"Env": []}`."""
    return {name: value for name, value in fields.items() if value is not None}
