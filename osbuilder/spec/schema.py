"""Validating YAML data against msgspec Structs, with every problem located.

The spec's (and the recipes') models are msgspec Structs: msgspec turns valid data
into them strictly (no coercion, unknown keys refused) and gives their JSON Schema,
and it imports in a few milliseconds, which matters to a command that starts,
builds and exits in half a second. But msgspec stops at the first problem, and a
spec should be told all of its problems at once, each at its own line. So
`problems` walks the data along the Structs' own field list first (the types and
the `Meta` constraints of their annotations, plus the `Check`s of fieldtypes) and
reports every problem with its path; `parse` then hands valid data to msgspec.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, Literal, NoReturn, TypeVar

import msgspec
from msgspec import Struct

from osbuilder.spec.source import DataPath, describe

T = TypeVar("T", bound=msgspec.Struct)


class Model(
    msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True, omit_defaults=True
):
    """Base of the models: unknown keys are errors, values are never coerced, and
    as data (`to_data`) fields left at their default are left out. (msgspec passes
    these options on to subclasses, except kw_only; type checkers do not, so each model
    restates `frozen=True`, and those with required fields after optional ones
    `kw_only=True`.)"""

    @classmethod
    def field_keys(cls) -> list[str]:
        """The YAML keys this section accepts."""
        return [info.encode_name for info in msgspec.structs.fields(cls)]

    def to_data(self) -> dict[str, Any]:
        """The model as YAML/JSON data, under its YAML keys."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        return data


class CheckFailed(ValueError):
    """A value a `Check` refuses; the message is the user-facing text."""


def fail(message: str) -> NoReturn:
    raise CheckFailed(message)


class Check(Struct, frozen=True, eq=False):
    """Annotated metadata: `function(value)` calls `fail` for a value it refuses.

    It runs once the value has its declared type (for a list, once every item is
    valid), or with `before=True` on the raw value, in place of the type's own
    message (a YAML number where a quoted string is wanted deserves its own words).
    """

    function: Callable[[Any], object]
    before: bool = False


class Problem(Struct, frozen=True):
    """What is wrong at `path`; with `key`, at that key of the mapping at `path`."""

    path: DataPath
    message: str
    key: str | int | None = None


class SchemaError(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))


def parse(model: type[T], data: Any) -> T:
    """`data` as a `model`, or SchemaError with every problem."""
    found = problems(model, data)
    if found:
        raise SchemaError(found)
    # (Were msgspec to refuse what the walk let through, that would be a bug: it raises as one.)
    return msgspec.convert(data, model, strict=True)


def problems(model: type[msgspec.Struct], data: Any) -> list[Problem]:
    found: list[Problem] = []
    _walk(model, data, (), found)
    return found


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


# --- the walk -----------------------------------------------------------------------------


class _Plan(Struct, frozen=True):
    """An annotation taken apart: its bare type, whether None is allowed, its constraints."""

    bare: Any
    optional: bool
    checks: tuple[Check, ...]
    constraints: tuple[msgspec.Meta, ...]


@cache
def _plan(annotation: Any) -> _Plan:
    checks: list[Check] = []
    constraints: list[msgspec.Meta] = []
    optional = False
    while True:
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is Annotated:
            annotation = args[0]
            checks += [m for m in args[1:] if isinstance(m, Check)]
            for meta in (m for m in args[1:] if isinstance(m, msgspec.Meta)):
                unsupported = [c for c in _UNCHECKED if getattr(meta, c) is not None]
                assert not unsupported, f"the walk does not check {unsupported} yet"
                constraints.append(meta)
        elif origin in (typing.Union, types.UnionType) and type(None) in args:
            optional = True
            rest = tuple(a for a in args if a is not type(None))
            annotation = rest[0] if len(rest) == 1 else typing.Union[rest]  # noqa: UP007
        else:
            return _Plan(annotation, optional, tuple(checks), tuple(constraints))


@cache
def _fields(model: type[msgspec.Struct]) -> dict[str, msgspec.structs.FieldInfo]:
    return {info.encode_name: info for info in msgspec.structs.fields(model)}


_SCALARS: dict[Any, tuple[str, Callable[[Any], bool]]] = {
    str: ("a string", lambda v: isinstance(v, str)),
    int: ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    float: ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
    bool: ("a boolean (true or false)", lambda v: isinstance(v, bool)),
}


def _walk(annotation: Any, value: Any, path: DataPath, found: list[Problem]) -> bool:
    """Report what is wrong with `value` at `path`; whether it is valid."""
    plan = _plan(annotation)
    if value is None and plan.optional:
        return True
    checks = plan.checks
    for check in (c for c in checks if c.before):
        if not _passes(check, value, path, found):
            return False
    if not _walk_type(plan.bare, value, path, found):
        return False
    for meta in plan.constraints:
        if (message := _violated(meta, value)) is not None:
            found.append(Problem(path, message))
            return False
    return all(_passes(c, value, path, found) for c in checks if not c.before)


def _passes(check: Check, value: Any, path: DataPath, found: list[Problem]) -> bool:
    try:
        check.function(value)
    except CheckFailed as exc:
        found.append(Problem(path, str(exc)))
        return False
    return True


def _walk_type(bare: Any, value: Any, path: DataPath, found: list[Problem]) -> bool:
    origin = typing.get_origin(bare)
    args = typing.get_args(bare)
    if isinstance(bare, type) and issubclass(bare, msgspec.Struct):
        if not isinstance(value, dict):
            return _expected("a mapping", value, path, found)
        return _walk_struct(bare, value, path, found)
    if origin is list:
        if not isinstance(value, list):
            return _expected("a list", value, path, found)
        results = [_walk(args[0], item, (*path, i), found) for i, item in enumerate(value)]
        return all(results)
    if origin is dict:
        if not isinstance(value, dict):
            return _expected("a mapping", value, path, found)
        ok = True
        for key, item in value.items():
            if not isinstance(key, str):
                found.append(Problem(path, f"keys must be strings, got {shown(key)}", key=key))
                ok = False
            elif not _walk(args[1], item, (*path, key), found):
                ok = False
        return ok
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):  # (True is not 1)
            return True
        choices = [repr(a) for a in args]
        listed = f"{', '.join(choices[:-1])} or {choices[-1]}" if len(choices) > 1 else choices[0]
        found.append(Problem(path, f"must be one of {listed}, got {shown(value)}"))
        return False
    if bare in _SCALARS:
        what, accepts = _SCALARS[bare]
        return accepts(value) or _expected(what, value, path, found)
    if bare is Any:
        return True
    # Any other type (a union of scalars): msgspec's verdict.
    try:
        msgspec.convert(value, bare, strict=True)
    except msgspec.ValidationError as exc:
        found.append(Problem(path, str(exc).split(" - at ")[0]))
        return False
    return True


def _walk_struct(
    model: type[msgspec.Struct], value: dict[Any, Any], path: DataPath, found: list[Problem]
) -> bool:
    fields = _fields(model)
    ok = True
    for key, item in value.items():
        info = fields.get(key) if isinstance(key, str) else None
        if info is None:
            hint = did_you_mean(key, list(fields)) if isinstance(key, str) else ""
            found.append(Problem(path, f"unknown field {key!r}{hint}", key=key))
            ok = False
        elif not _walk(info.type, item, (*path, key), found):
            ok = False
    for key, info in fields.items():
        if info.required and key not in value:
            found.append(Problem(path, f"missing required field {key!r}"))
            ok = False
    return ok


def _expected(what: str, value: Any, path: DataPath, found: list[Problem]) -> bool:
    found.append(Problem(path, f"expected {what}, got {shown(value)}"))
    return False


# Constraints msgspec would enforce that `_violated` does not report (no model uses them).
_UNCHECKED = ("gt", "lt", "multiple_of", "pattern", "max_length", "tz")


def _violated(meta: msgspec.Meta, value: Any) -> str | None:
    """The message for a `Meta` bound `value` breaks, or None."""
    if meta.ge is not None and value < meta.ge:
        return f"must be at least {meta.ge}, got {value!r}"
    if meta.le is not None and value > meta.le:
        return f"must be at most {meta.le}, got {value!r}"
    if meta.min_length is not None and len(value) < meta.min_length:
        items = "item" if meta.min_length == 1 else "items"
        return f"must have at least {meta.min_length} {items}, got {len(value)}"
    return None
