"""Validating YAML data against the pydantic models, with every problem located.

pydantic collects every error of a document with its path (`loc`); this module
turns each into a `Problem`: the path into the data, the words a user reads
(ours, not pydantic's: "expected a list, got a string '/bin/true'") and, for an
unknown key, a did-you-mean among the keys the model accepts. spec/diagnostics.py
then places each problem at FILE:LINE:COL.

Field types refuse a value with `invalid(message)`, which becomes a problem whose
message is theirs, word for word.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, ClassVar, NoReturn, TypeVar

from msgspec import Struct
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from osbuilder.spec.source import DataPath, describe

M = TypeVar("M", bound="Model")

#: The error type of a field type's own refusal (`invalid`).
_OWN_ERROR = "osbuilder"


class Model(BaseModel):
    """Base of the models: unknown keys are errors, values are never coerced (strict), and
    as data (`to_data`) fields left at their default are left out."""

    model_config: ClassVar[ConfigDict] = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        validate_by_name=True,  # code builds models by attribute name, YAML by key
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    @classmethod
    def field_keys(cls) -> list[str]:
        """The YAML keys this section accepts."""
        return [info.alias or name for name, info in cls.model_fields.items()]

    def to_data(self) -> dict[str, Any]:
        """The model as YAML/JSON data, under its YAML keys."""
        return self.model_dump(by_alias=True, exclude_defaults=True)


class Problem(Struct, frozen=True):
    """What is wrong at `path`; with `key`, at that key of the mapping at `path`."""

    path: DataPath
    message: str
    key: str | int | None = None


class SchemaError(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))


def invalid(message: str) -> NoReturn:
    """Refuse a value, in a field type's validator, with these words."""
    raise PydanticCustomError(_OWN_ERROR, "{message}", {"message": message})


def parse(model: type[M], data: Any) -> M:
    """`data` as a `model`, or SchemaError with every problem."""
    try:  # (by YAML key only: the attribute names are for code building models)
        return model.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise SchemaError([_problem(model, error) for error in exc.errors()]) from None


def problems(model: type[Model], data: Any) -> list[Problem]:
    """Every problem of `data` as a `model`; none when it is valid."""
    try:
        parse(model, data)
    except SchemaError as exc:
        return exc.problems
    return []


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """` (did you mean 'x'?)` when a choice is close to `word`, else ''."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.7)
    if not close:
        close = difflib.get_close_matches(word.upper(), choices, n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def shown(value: Any) -> str:
    """A value as an error message quotes it: its kind, and short scalars themselves."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = repr(value)
        if len(text) > 40:
            text = text[:37] + "..."
        return f"{describe(value)} {text}"
    return describe(value)


# --- pydantic's errors in our words --------------------------------------------------------

#: What a type error expected, by pydantic's error type.
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


def _problem(model: type[Model], error: ErrorDetails) -> Problem:
    loc: DataPath = tuple(error["loc"])
    kind, value, ctx = error["type"], error["input"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        key = loc[-1]
        keys = _keys_at(model, loc[:-1])
        hint = did_you_mean(key, keys) if isinstance(key, str) else ""
        return Problem(loc[:-1], f"unknown field {key!r}{hint}", key=key)
    if loc and loc[-1] == "[key]":  # a mapping key of the wrong type
        return Problem(loc[:-2], f"keys must be strings, got {shown(value)}", key=loc[-2])
    if kind == "missing":
        return Problem(loc[:-1], f"missing required field {loc[-1]!r}")
    return Problem(loc, _message(kind, value, ctx, error["msg"]))


def _message(kind: str, value: Any, ctx: dict[str, Any], fallback: str) -> str:
    if kind == _OWN_ERROR:
        return str(ctx["message"])
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {shown(value)}"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}, got {shown(value)}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}, got {value!r}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}, got {value!r}"
    if kind == "too_short":
        items = "item" if ctx["min_length"] == 1 else "items"
        return f"must have at least {ctx['min_length']} {items}, got {ctx['actual_length']}"
    return fallback  # (no model declares a constraint with other words)


def _keys_at(model: type[Model], path: DataPath) -> list[str]:
    """The keys the model found at `path` of the data accepts (for a did-you-mean)."""
    annotation: Any = model
    for step in path:
        annotation = _bare(annotation)
        if isinstance(annotation, type) and issubclass(annotation, Model):
            fields = {info.alias or name: info for name, info in annotation.model_fields.items()}
            if step not in fields:
                return []
            annotation = fields[step].annotation
        elif typing.get_origin(annotation) in (list, dict):
            annotation = typing.get_args(annotation)[-1]
        else:
            return []
    annotation = _bare(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Model):
        return annotation.field_keys()
    return []


def _bare(annotation: Any) -> Any:
    """The annotation without `Annotated` metadata and without `| None`."""
    while True:
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is typing.Annotated:
            annotation = args[0]
        elif origin in (typing.Union, types.UnionType):
            rest = [a for a in args if a is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation
