"""Pydantic validation errors, told as located one-line diagnostics."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from osbuilder.spec.fieldtypes import SPEC_ERROR, did_you_mean
from osbuilder.spec.source import DataPath, Diagnostic, Document, describe

_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean (true or false)",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def diagnostics_from(
    error: ValidationError, document: Document, model: type[BaseModel], base: DataPath = ()
) -> list[Diagnostic]:
    """One diagnostic per pydantic error, located in `document`.

    `base` is where the validated data sits in the document (for a label or a
    single section validated on its own).
    """
    found = []
    for detail in error.errors(include_url=False):
        loc: DataPath = tuple(detail["loc"])
        found.append(_diagnostic(detail, loc, (*base, *loc), document, model))
    return sorted(found, key=lambda d: (d.location.line, d.location.column, d.message))


def _diagnostic(
    detail: ErrorDetails,
    loc: DataPath,
    path: DataPath,
    document: Document,
    model: type[BaseModel],
) -> Diagnostic:
    kind = detail["type"]
    value = detail.get("input")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        hint = did_you_mean(key, _keys_at(model, loc[:-1]))
        return Diagnostic(document.key_location(path), path[:-1], f"unknown field {key!r}{hint}")
    if kind == "missing":
        return Diagnostic(
            document.value_location(path[:-1]),
            path[:-1],
            f"missing required field {str(loc[-1])!r}",
        )
    location = document.value_location(path)
    if kind == SPEC_ERROR:
        return Diagnostic(location, path, detail["msg"])
    if kind in _EXPECTED:
        return Diagnostic(location, path, f"expected {_EXPECTED[kind]}, got {_shown(value)}")
    if kind == "literal_error":
        expected = detail.get("ctx", {}).get("expected", "")
        return Diagnostic(location, path, f"must be one of {expected}, got {_shown(value)}")
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return Diagnostic(location, path, f"{detail['msg'].lower()}, got {value!r}")
    return Diagnostic(location, path, detail["msg"])


def _shown(value: Any) -> str:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = repr(value)
        if len(text) > 40:
            text = text[:37] + "..."
        return f"{describe(value)} {text}"
    return describe(value)


def _keys_at(root: type[BaseModel], loc: DataPath) -> list[str]:
    """The keys the model at `loc` accepts, for 'did you mean' hints."""
    current: Any = root
    for part in loc:
        current = _strip(current)
        if isinstance(part, int):
            current = _item(current)
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return []
        current = field.annotation
    current = _strip(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _strip(annotation: Any) -> Any:
    """Remove Optional[...] and Annotated[...] wrappers."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0]
        else:
            return annotation


def _item(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    return _strip(args[-1]) if args else annotation
