"""JSON objects' optional fields: left out when unset."""

from __future__ import annotations

from osbuilder.jsonfields import given


def test_given_keeps_the_fields_that_are_set_in_order() -> None:
    assert given(Cmd=None, Env=[], WorkingDir="", Labels=None, Entrypoint=["sh"]) == {
        "Env": [],
        "WorkingDir": "",
        "Entrypoint": ["sh"],
    }
    assert given() == {}
