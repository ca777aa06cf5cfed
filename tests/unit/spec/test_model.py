"""The spec model's own declarations: the container sections and the walk over them."""

from __future__ import annotations

from osbuilder.spec.model import CONTAINER_SECTIONS, Container, Spec


def test_the_container_sections_are_the_models_in_the_order_they_run() -> None:
    assert CONTAINER_SECTIONS == ("onboot", "onshutdown", "services")


def test_containers_walks_every_section_in_order_with_indexes() -> None:
    def container(name: str) -> Container:
        return Container(name=name, image="x")

    spec = Spec(
        services=[container("s0"), container("s1")],
        onshutdown=[container("d0")],
        onboot=[container("b0"), container("b1")],
    )
    walked = [(section, index, entry.name) for section, index, entry in spec.containers()]
    assert walked == [
        ("onboot", 0, "b0"),
        ("onboot", 1, "b1"),
        ("onshutdown", 0, "d0"),
        ("services", 0, "s0"),
        ("services", 1, "s1"),
    ]
    assert list(Spec().containers()) == []
