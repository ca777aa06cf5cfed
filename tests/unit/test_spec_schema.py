"""The schema walk (spec/schema.py): every problem of the data at once, then msgspec's Structs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
import pytest

from osbuilder.spec.schema import Check, Model, SchemaError, fail, parse, problems


def _even(value: int) -> None:
    if value % 2:
        fail(f"{value} is odd")


def _distinct(values: list[int]) -> None:
    if len(set(values)) != len(values):
        fail("numbers repeat")


def _quoted(value: Any) -> None:
    if isinstance(value, int):
        fail("write it in quotes")


class Inner(Model, frozen=True):
    size: Annotated[int, msgspec.Meta(ge=1, le=9)]
    label: str | None = None


class Outer(Model, frozen=True, kw_only=True):
    name: str
    numbers: Annotated[list[Annotated[int, Check(_even)]], Check(_distinct)] | None = None
    mode: Annotated[str, Check(_quoted, before=True)] | None = None
    kind: Literal["a", "b", "c"] | None = None
    inner: list[Inner] | None = None
    labels: dict[str, str] | None = None
    renamed: bool | None = msgspec.field(default=None, name="reNamed")


def messages(data: Any) -> list[tuple[tuple[str | int, ...], str | int | None, str]]:
    return [(p.path, p.key, p.message) for p in problems(Outer, data)]


def test_valid_data_becomes_the_struct_and_back() -> None:
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
    assert messages(data) == [
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
    ]


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


def test_a_constraint_the_walk_cannot_report_is_refused_at_once() -> None:
    class Unchecked(Model, frozen=True):
        code: Annotated[str, msgspec.Meta(pattern="^[a-z]+$")]

    with pytest.raises(AssertionError, match="pattern"):
        problems(Unchecked, {"code": "x"})
