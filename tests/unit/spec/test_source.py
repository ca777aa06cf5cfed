"""Values of a spec: errors of building them (`at`), how a value reads to a user."""

from __future__ import annotations

import pytest

from osbuilder.errors import ExternalError, UserError, WriteFailed
from osbuilder.spec.source import SpecValueError, at, describe


def test_at_makes_a_user_error_the_values_error() -> None:
    with pytest.raises(SpecValueError) as caught, at(("services", 1, "image")):
        raise UserError("redis:7 is not in the store")
    assert caught.value.path == ("services", 1, "image")
    assert str(caught.value) == "services[1].image: redis:7 is not in the store"


def test_at_puts_its_prefix_before_each_message() -> None:
    with pytest.raises(SpecValueError) as caught, at(("volumes", 0, "image"), "linux/arm64: "):
        raise WriteFailed("no such manifest")  # (any UserError)
    assert str(caught.value) == "volumes[0].image: linux/arm64: no such manifest"


def test_at_keeps_a_closer_path_and_leaves_other_errors_alone() -> None:
    with pytest.raises(SpecValueError) as caught, at(("files", 0)):
        raise SpecValueError(("files", 0, "uid"), "unknown user")
    assert caught.value.path == ("files", 0, "uid")
    with pytest.raises(ExternalError), at(("init", 0)):
        raise ExternalError("registry down")
    with at(("init", 0)):
        pass  # nothing raised: nothing to say


@pytest.mark.parametrize(
    ("value", "reads"),
    [
        (None, "null"),
        (True, "a boolean"),
        (3, "an integer"),
        (1.5, "a number"),
        ("x", "a string"),
        ([1], "a list"),
        ({"a": 1}, "a mapping"),
        (b"\x00", "binary data"),
        (object(), "object"),
    ],
)
def test_describe_says_what_a_yaml_value_is(value: object, reads: str) -> None:
    assert describe(value) == reads
