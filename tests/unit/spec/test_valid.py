"""Valid specs: osbuilder's examples and LinuxKit-format specs load, and merge as LinuxKit does."""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from osbuilder.pkg.tag import template_reference
from osbuilder.spec import check_sources, check_specs, load_spec
from osbuilder.spec.capabilities import KNOWN_CAPABILITIES
from osbuilder.spec.model import Spec

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((REPO / "examples").glob("*.yml"))
LINUXKIT_SPECS = sorted((REPO / "tests/data/linuxkit").glob("*.yml"))


@pytest.mark.parametrize("path", EXAMPLES + LINUXKIT_SPECS, ids=lambda p: p.name)
def test_spec_is_valid(path: Path) -> None:
    loaded, diagnostics = check_specs([path], template_reference)
    assert [d for d in diagnostics if d.severity == "error"] == []
    assert loaded is not None


def test_examples_cover_the_documented_systems() -> None:
    assert {p.stem for p in EXAMPLES} >= {"redis", "minimal", "getty", "sshd"}


def test_redis_example_is_the_redis_os() -> None:
    spec = load_spec([REPO / "examples/redis.yml"], template_reference).spec
    assert spec.kernel is not None and spec.kernel.cmdline is not None
    assert "console=ttyS0" in spec.kernel.cmdline
    assert [ref.split(":")[0] for ref in spec.init or []] == ["osbuilder/init", "osbuilder/crun"]
    assert [c.name for c in spec.onboot or []] == ["dhcpcd"]
    getty, redis = spec.services or []
    assert getty.env == ["INSECURE=true"]
    assert redis.image.startswith("osbuilder/redis:")
    assert redis.net == "host"
    assert redis.capabilities == [
        "CAP_NET_BIND_SERVICE",
        "CAP_CHOWN",
        "CAP_SETUID",
        "CAP_SETGID",
        "CAP_DAC_OVERRIDE",
    ]


def test_linuxkit_trust_section_is_read() -> None:
    loaded = load_spec([REPO / "tests/data/linuxkit/redis-os.yml"], template_reference)
    assert loaded.spec.trust is not None and loaded.spec.trust.org == ["linuxkit", "library"]
    assert loaded.warnings == []


Model = type[BaseModel]


def _schema_fields(model: Model, seen: set[Model]) -> set[tuple[str, str]]:
    """Every (model, key) the spec accepts, through all nested models."""
    if model in seen:
        return set()
    seen.add(model)
    fields = set()
    for name, field in model.model_fields.items():
        fields.add((_declared_by(model, name), field.alias or name))
        nested = _model_in(field.annotation)
        if nested is not None:
            fields |= _schema_fields(nested, seen)
    return fields


def _declared_by(model: Model, name: str) -> str:
    """The model that declares the field (a subclass's inherited fields are its base's)."""
    return next(
        base.__name__
        for base in reversed(model.__mro__)
        if issubclass(base, BaseModel) and name in inspect.get_annotations(base)
    )


def _model_in(annotation: Any) -> Model | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, dict, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _used_fields(model: Model, data: Any) -> set[tuple[str, str]]:
    """The (model, key) pairs a document uses, walking data and models together."""
    if isinstance(data, list):
        return {pair for item in data for pair in _used_fields(model, item)}
    if not isinstance(data, dict):
        return set()
    fields = {f.alias or name: (name, f.annotation) for name, f in model.model_fields.items()}
    used = set()
    for key, value in data.items():
        name, annotation = fields[key]
        used.add((_declared_by(model, name), key))
        nested = _model_in(annotation)
        if nested is not None:
            used |= _used_fields(nested, value)
    return used


#: Fields osbuilder adds to LinuxKit's schema; LinuxKit specs cannot use them.
OSBUILDER_EXTENSIONS = {("Container", "restart")}


def test_linuxkit_specs_together_use_every_field_of_the_schema() -> None:
    used: set[tuple[str, str]] = set()
    for path in LINUXKIT_SPECS:
        used |= _used_fields(Spec, yaml.safe_load(path.read_text()))
    assert _schema_fields(Spec, set()) - used == OSBUILDER_EXTENSIONS


def test_several_files_merge_like_linuxkit() -> None:
    base = (
        "kernel:\n  image: osbuilder/kernel:1\n  cmdline: console=ttyS0\n"
        "init: [osbuilder/init]\n"
        "onboot:\n  - name: dhcpcd\n    image: osbuilder/dhcpcd\n"
        "services:\n  - name: getty\n    image: osbuilder/getty\n"
        "trust:\n  org: [linuxkit]\n"
    )
    extra = (
        "kernel:\n  image: osbuilder/kernel:2\n"
        "init: [osbuilder/crun]\n"
        "services:\n  - name: redis\n    image: osbuilder/redis\n"
        "files:\n  - path: etc/motd\n    contents: hi\n"
        "trust:\n  org: [library]\n"
    )
    loaded, _ = check_sources([("base.yml", base), ("extra.yml", extra)])
    assert loaded is not None
    spec = loaded.spec
    assert spec.kernel is not None
    assert spec.kernel.image == "osbuilder/kernel:2"  # later kernel fields override
    assert spec.kernel.cmdline == "console=ttyS0"  # unset fields are kept
    assert spec.init == ["osbuilder/init", "osbuilder/crun"]  # lists append
    assert [s.name for s in spec.services or []] == ["getty", "redis"]
    assert [c.name for c in spec.onboot or []] == ["dhcpcd"]
    assert spec.trust is not None and spec.trust.org == ["linuxkit", "library"]
    # locations follow the entries to their own file
    assert str(loaded.document.value_location(("services", 1, "name"))) == "extra.yml:5:11"
    assert str(loaded.document.value_location(("kernel", "image"))) == "extra.yml:2:10"
    assert str(loaded.document.value_location(("kernel", "cmdline"))) == "base.yml:3:12"


def test_uid_may_name_a_container_of_another_merged_file() -> None:
    first = "services:\n  - name: web\n    image: nginx\n    uid: redis\n"
    second = "services:\n  - name: redis\n    image: redis\n"
    loaded, diagnostics = check_sources([("a.yml", first), ("b.yml", second)])
    assert diagnostics == []
    assert loaded is not None


def test_yaml_anchors_and_merge_keys() -> None:
    text = "x-common: &common\n  net: host\n  capabilities: [CAP_NET_BIND_SERVICE]\n"
    loaded, diagnostics = check_sources([("t.yml", text)])
    assert loaded is None  # x-common is not a field
    assert [str(d) for d in diagnostics] == ["t.yml:1:1: unknown field 'x-common'"]
    text = (
        "services:\n"
        "  - &web\n"
        "    name: web\n"
        "    image: nginx\n"
        "    net: host\n"
        "  - <<: *web\n"
        "    name: web2\n"
    )
    loaded, diagnostics = check_sources([("t.yml", text)])
    assert diagnostics == []
    assert loaded is not None
    assert [(s.name, s.image, s.net) for s in loaded.spec.services or []] == [
        ("web", "nginx", "host"),
        ("web2", "nginx", "host"),
    ]


def test_empty_file_is_an_empty_spec() -> None:
    loaded, diagnostics = check_sources([("empty.yml", "# nothing yet\n")])
    assert diagnostics == []
    assert loaded is not None and loaded.spec == Spec()


def test_every_capability_and_the_special_sets() -> None:
    caps = "\n".join(f"      - {c}" for c in KNOWN_CAPABILITIES)
    text = (
        "services:\n  - name: a\n    image: a\n    capabilities:\n" + caps + "\n"
        "  - name: b\n    image: b\n    capabilities: [all]\n    ambient: [NONE]\n"
    )
    loaded, diagnostics = check_sources([("t.yml", text)])
    assert diagnostics == []
    assert loaded is not None
