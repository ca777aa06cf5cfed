"""spec/validation.py: every problem of the data at once, in our words, from pydantic's errors."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import pytest
from pydantic import AfterValidator, BeforeValidator, Field

from osbuilder.pkg.recipe import Recipe
from osbuilder.spec.model import Spec
from osbuilder.spec.validation import Model, SchemaError, invalid, parse, problems


def _even(value: int) -> int:
    if value % 2:
        invalid(f"{value} is odd")
    return value


def _distinct(values: list[int]) -> list[int]:
    if len(set(values)) != len(values):
        invalid("numbers repeat")
    return values


def _quoted(value: Any) -> Any:
    if isinstance(value, int):
        invalid("write it in quotes")
    return value


class Inner(Model):
    size: Annotated[int, Field(ge=1, le=9)]
    label: str | None = None


class Outer(Model):
    name: str
    numbers: (
        Annotated[list[Annotated[int, AfterValidator(_even)]], AfterValidator(_distinct)] | None
    ) = None
    mode: Annotated[str, BeforeValidator(_quoted)] | None = None
    kind: Literal["a", "b", "c"] | None = None
    inner: list[Inner] | None = None
    labels: dict[str, str] | None = None
    renamed: Annotated[bool | None, Field(alias="reNamed")] = None


def messages(data: Any) -> list[tuple[tuple[str | int, ...], str | int | None, str]]:
    return sorted(((p.path, p.key, p.message) for p in problems(Outer, data)), key=str)


def test_valid_data_becomes_the_model_and_back() -> None:
    data = {"name": "x", "numbers": [2, 4], "inner": [{"size": 3}], "reNamed": True}
    outer = parse(Outer, data)
    assert outer.inner == [Inner(size=3)] and outer.renamed is True
    assert outer.to_data() == data  # defaults left out, YAML keys kept


def test_every_problem_is_reported_with_its_path() -> None:
    data = {
        "numbers": [2, 3, "4"],
        "kind": "d",
        "inner": [{"size": 0}, {"size": 2, "lable": "x"}, "no"],
        "labels": {"a": 1, 5: "b"},
        "renamed": True,
    }
    assert messages(data) == sorted(
        [
            (("numbers", 1), None, "3 is odd"),
            (("numbers", 2), None, "expected an integer, got a string '4'"),
            (("kind",), None, "must be one of 'a', 'b' or 'c', got a string 'd'"),
            (("inner", 0, "size"), None, "must be at least 1, got 0"),
            (("inner", 1), "lable", "unknown field 'lable' (did you mean 'label'?)"),
            (("inner", 2), None, "expected a mapping, got a string 'no'"),
            (("labels", "a"), None, "expected a string, got an integer 1"),
            (("labels",), 5, "keys must be strings, got an integer 5"),
            ((), "renamed", "unknown field 'renamed' (did you mean 'reNamed'?)"),
            ((), None, "missing required field 'name'"),
        ],
        key=str,
    )


def test_a_list_check_runs_once_its_items_are_valid() -> None:
    assert messages({"name": "x", "numbers": [2, 2]}) == [(("numbers",), None, "numbers repeat")]
    assert messages({"name": "x", "numbers": [2, 2, 5]}) == [(("numbers", 2), None, "5 is odd")]


def test_a_before_check_speaks_instead_of_the_type() -> None:
    assert messages({"name": "x", "mode": 644}) == [(("mode",), None, "write it in quotes")]
    assert messages({"name": "x", "mode": ["0644"]}) == [
        (("mode",), None, "expected a string, got a list")
    ]


@pytest.mark.parametrize("value", [True, 1.0, "1"])
def test_values_are_never_coerced(value: Any) -> None:
    with pytest.raises(SchemaError) as raised:
        parse(Inner, {"size": value})
    assert [p.path for p in raised.value.problems] == [("size",)]


def test_a_message_with_braces_is_told_as_it_is() -> None:
    class Braces(Model):
        text: Annotated[str, AfterValidator(lambda v: invalid(f"bad {v!r}"))]

    assert [p.message for p in problems(Braces, {"text": "{x}"})] == ["bad '{x}'"]


def _models(model: type[Model]) -> Iterator[type[Model]]:
    """The model and every model its fields hold, once each."""
    seen: set[type[Model]] = set()
    queue = [model]
    while queue:
        current = queue.pop()
        if current in seen:
            continue
        seen.add(current)
        yield current
        for field in current.model_fields.values():
            queue += [m for m in _nested(field.annotation) if isinstance(m, type)]


def _nested(annotation: Any) -> Iterator[type[Model]]:
    if isinstance(annotation, type) and issubclass(annotation, Model):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _nested(arg)


@pytest.mark.parametrize("root", [Spec, Recipe], ids=["spec", "recipe"])
def test_every_model_and_field_is_described(root: type[Model]) -> None:
    """The descriptions are the reference (docs/spec.md) and the JSON Schema's."""
    undescribed = [
        f"{model.__name__}.{field.alias or name}"
        for model in _models(root)
        for name, field in model.model_fields.items()
        if not field.description
    ]
    assert undescribed == []
    assert [m.__name__ for m in _models(root) if not m.__doc__] == []


def test_micro_syntaxes_are_typed_values_written_back_as_their_text() -> None:
    entry = {
        "name": "web",
        "image": "redis",
        "binds": ["/a:/b", "data:/d:ro,nosuid"],
        "tmpfs": ["/run:size=1m", "/tmp"],
        "rlimits": ["nofile,1024,unlimited"],
    }
    spec = parse(Spec, {"services": [entry]})
    [service] = spec.services or []
    assert [(b.source, b.destination, b.options) for b in service.binds or []] == [
        ("/a", "/b", None),
        ("data", "/d", ("ro", "nosuid")),
    ]
    assert [(t.destination, t.options) for t in service.tmpfs or []] == [
        ("/run", ("size=1m",)),
        ("/tmp", None),
    ]
    assert [(r.name, r.soft, r.hard) for r in service.rlimits or []] == [
        ("RLIMIT_NOFILE", 1024, 2**64 - 1)
    ]
    assert spec.to_data() == {"services": [entry]}
