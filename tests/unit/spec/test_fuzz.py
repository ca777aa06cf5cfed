"""Property: any YAML text is either a valid spec or rejected with located errors.

Never another exception, never an error without a real location. Together
the properties below feed 10,500 documents. Seeds are
the examples and the LinuxKit-format specs; hypothesis mutates their text
(characters, lines, indentation) and their structure (values of any YAML
type at any path, added and removed keys).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from osbuilder.spec import check_sources
from osbuilder.spec.model import Container, File, Spec, Volume

REPO = Path(__file__).resolve().parents[3]
SEEDS = [
    p.read_text()
    for p in sorted((REPO / "examples").glob("*.yml"))
    + sorted((REPO / "tests/data/linuxkit").glob("*.yml"))
]
FIELD_NAMES = sorted(
    set(Spec.field_keys())
    | set(Container.field_keys())
    | set(File.field_keys())
    | set(Volume.field_keys())
)
YAML_NOISE = [*":-[]{}#&*!|>'\"%@`, \n\t?<=~", "---", "...", "<<", "!!binary", "&a", "*a"]

FUZZ = settings(
    max_examples=5000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check_located(text: str) -> None:
    loaded, diagnostics = check_sources([("fuzz.yml", text)])
    errors = [d for d in diagnostics if d.severity == "error"]
    if loaded is not None:
        assert errors == []
        return
    assert errors, "an invalid spec must come with at least one error"
    last_line = text.count("\n") + 2
    for error in errors:
        assert error.location.file == "fuzz.yml"
        assert 1 <= error.location.line <= last_line, str(error)
        assert error.location.column >= 1, str(error)
        assert error.message.strip(), str(error)
        assert "\n" not in str(error)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(FIELD_NAMES),
    st.sampled_from(["host", "new", "none", "all", "CAP_CHOWN", "0644", "/a:/b", "redis"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def text_mutations(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        lines = text.split("\n")
        op = draw(st.sampled_from(["insert", "delete", "dup", "drop", "swap", "indent", "cut"]))
        if op == "insert":
            at = draw(st.integers(0, len(text)))
            noise = draw(st.lists(st.sampled_from(YAML_NOISE) | st.text(max_size=3), max_size=4))
            text = text[:at] + "".join(noise) + text[at:]
        elif op == "delete" and text:
            at = draw(st.integers(0, len(text) - 1))
            text = text[:at] + text[at + draw(st.integers(1, 10)) :]
        elif op == "dup":
            i = draw(st.integers(0, len(lines) - 1))
            text = "\n".join([*lines[: i + 1], lines[i], *lines[i + 1 :]])
        elif op == "drop":
            i = draw(st.integers(0, len(lines) - 1))
            text = "\n".join(lines[:i] + lines[i + 1 :])
        elif op == "swap":
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        elif op == "indent":
            i = draw(st.integers(0, len(lines) - 1))
            shift = draw(st.integers(-4, 4))
            lines[i] = " " * shift + lines[i] if shift >= 0 else lines[i][-shift:]
            text = "\n".join(lines)
        elif op == "cut":
            text = text[: draw(st.integers(0, len(text)))]
    return text


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def structure_mutations(draw: st.DrawFn) -> str:
    data = yaml.safe_load(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(data)))
        if not path:
            continue
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        op = draw(st.sampled_from(["replace", "delete", "add"]))
        if op == "replace":
            parent[path[-1]] = draw(values)
        elif op == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(FIELD_NAMES))] = draw(values)
        else:
            parent.append(draw(values))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


@FUZZ
@given(text_mutations())
def test_mutated_text_is_valid_or_located(text: str) -> None:
    check_located(text)


@FUZZ
@given(structure_mutations())
def test_mutated_structure_is_valid_or_located(text: str) -> None:
    check_located(text)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(YAML_NOISE) | st.text(max_size=4), max_size=30).map("".join))
def test_arbitrary_text_is_valid_or_located(text: str) -> None:
    check_located(text)


def test_the_fuzzing_covers_ten_thousand_documents() -> None:
    # Two mutation properties at FUZZ's count, plus the arbitrary-text one.
    assert 2 * FUZZ.max_examples + 500 >= 10_000
