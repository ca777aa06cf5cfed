"""A loaded spec locating the errors of the work done with it."""

from __future__ import annotations

import pytest

from osbuilder.errors import UserError
from osbuilder.spec import SpecValueError, check_sources

SPEC = """\
onboot:
  - name: a
    image: a
services:
  - name: b
    image: b
"""


def test_locating_puts_the_values_line_before_each_line_of_its_error() -> None:
    loaded, _ = check_sources([("spec.yml", SPEC)])
    assert loaded is not None
    with pytest.raises(UserError) as caught, loaded.locating():
        raise SpecValueError(("services", 0, "image"), "not in the store\nnor anywhere")
    assert not isinstance(caught.value, SpecValueError)
    assert str(caught.value).splitlines() == [
        "spec.yml:6:12: services[0].image: not in the store",
        "spec.yml:6:12: services[0].image: nor anywhere",
    ]


def test_locating_leaves_other_errors_as_they_are() -> None:
    loaded, _ = check_sources([("spec.yml", SPEC)])
    assert loaded is not None
    error = UserError("--root squashfs is for the disk formats")
    with pytest.raises(UserError) as caught, loaded.locating():
        raise error
    assert caught.value is error
