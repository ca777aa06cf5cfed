"""Specs are read by YAML 1.2 core-schema rules, as LinuxKit's go-yaml v3 reads them
(gopkg.in/yaml.v3 resolve.go): `yes`, `on`, `10:30`, dates and `=` are strings, and a
trailing empty document is ignored."""

from __future__ import annotations

import math
import textwrap
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from osbuilder.spec import check_sources
from osbuilder.spec.source import SpecSyntaxError, load_document
from osbuilder.spec.yaml12 import dump_yaml, resolve_plain

HEAD = "kernel:\n  image: osbuilder/kernel\ninit:\n  - osbuilder/init\n"

PLAIN_SCALARS: list[tuple[str, Any]] = [
    # YAML 1.1's booleans are strings; only true/false in three spellings are booleans
    *[(word, word) for word in ("yes", "no", "on", "off", "y", "n", "Yes", "ON", "Off", "tRue")],
    *[(word, True) for word in ("true", "True", "TRUE")],
    *[(word, False) for word in ("false", "False", "FALSE")],
    *[(word, None) for word in ("", "~", "null", "Null", "NULL")],
    ("nULL", "nULL"),
    # sexagesimals, dates and `=` (YAML 1.1's "value" tag) are strings
    ("10:30", "10:30"),
    ("190:20:30", "190:20:30"),
    ("2024-01-02", "2024-01-02"),
    ("2001-12-14t21:59:43.10-05:00", "2001-12-14t21:59:43.10-05:00"),
    ("=", "="),
    # integers as Go's ParseInt(s, 0, 64) reads them once `_` are dropped
    ("0", 0),
    ("-17", -17),
    ("+12", 12),
    ("1_000", 1000),
    ("0o17", 15),
    ("017", 15),  # the 1.1 octal, which go-yaml v3 still reads
    ("0x1F", 31),
    ("-0x1f", -31),
    ("0b101", 5),
    ("-0b11", -3),
    ("18446744073709551615", 2**64 - 1),  # a uint64
    ("99999999999999999999", 1e20),  # beyond: a float
    ("09", 9.0),  # not octal, not an int: a float
    ("0x", "0x"),
    ("0o8", "0o8"),
    ("1e400", "1e400"),  # ParseFloat refuses what overflows
    # floats
    ("1.5", 1.5),
    (".5", 0.5),
    ("-.5", -0.5),
    ("1.", 1.0),
    ("1e3", 1000.0),
    ("1_000.5", 1000.5),
    (".inf", math.inf),
    ("+.Inf", math.inf),
    ("-.INF", -math.inf),
    (".iNf", ".iNf"),
    ("._5", "._5"),
    ("1.5.5", "1.5.5"),
    ("0755", 493),
]


@pytest.mark.parametrize(("text", "expected"), PLAIN_SCALARS, ids=[t[0] for t in PLAIN_SCALARS])
def test_plain_scalars_resolve_as_go_yaml_v3_does(text: str, expected: Any) -> None:
    value = resolve_plain(text)[1]
    assert value == expected and type(value) is type(expected)


def test_nan_is_a_float() -> None:
    assert math.isnan(resolve_plain(".NaN")[1])


def test_yaml_1_1_words_reach_the_spec_as_strings() -> None:
    text = (
        HEAD
        + "onboot:\n  - name: a\n    image: a\n    command: [echo, yes, on, 10:30, =, 2024-01-02]\n"
    )
    data = load_document("t.yml", text).data
    assert data["onboot"][0]["command"] == ["echo", "yes", "on", "10:30", "=", "2024-01-02"]
    loaded, diagnostics = check_sources([("t.yml", text)])
    assert loaded is not None and diagnostics == []


def test_keys_are_resolved_alike() -> None:
    assert load_document("t.yml", "on: 1\nyes: 2\n").data == {"on": 1, "yes": 2}


def test_readonly_yes_is_a_string_the_models_refuse_at_its_place() -> None:
    text = HEAD + "services:\n  - name: a\n    image: a\n    readonly: yes\n"
    loaded, diagnostics = check_sources([("t.yml", text)])
    assert loaded is None
    assert [str(d) for d in diagnostics] == [
        "t.yml:8:15: services[0].readonly: expected a boolean (true or false), got a string 'yes'"
    ]


def test_merge_keys_still_merge() -> None:
    text = "base: &b\n  net: host\nother:\n  <<: *b\n  pid: host\n"
    assert load_document("t.yml", text).data["other"] == {"pid": "host", "net": "host"}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("!!int '12'", 12),
        ("!!float 3", 3.0),
        ("!!str 12", "12"),
        ("!!bool true", True),
        ("!!null ''", None),
        ("!!timestamp 2020-01-02", "2020-01-02"),
        ("'12'", "12"),
    ],
)
def test_explicit_tags_go_through_the_same_rules(text: str, value: Any) -> None:
    assert load_document("t.yml", f"a: {text}\n").data == {"a": value}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: !!bool yes\n", "t.yml:1:4: invalid value: cannot decode !!str `yes` as a !!bool"),
        ("a: !!int 1.5\n", "t.yml:1:4: invalid value: cannot decode !!float `1.5` as a !!int"),
        ("a:\n  - !!null x\n", "t.yml:2:5: invalid value: cannot decode !!str `x` as a !!null"),
    ],
)
def test_an_explicit_tag_the_text_does_not_fit_is_located(text: str, message: str) -> None:
    with pytest.raises(SpecSyntaxError) as caught:
        load_document("t.yml", text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "tail",
    ["---\n", "---\n# nothing more\n", "--- ~\n", "...\n---\n", "---\n---\n"],
    ids=["dashes", "comments", "null", "end-marker", "two-empty"],
)
def test_trailing_empty_documents_are_ignored_as_linuxkit_ignores_them(tail: str) -> None:
    text = textwrap.dedent(HEAD) + tail
    loaded, diagnostics = check_sources([("t.yml", text)])
    assert loaded is not None and diagnostics == []


def test_a_second_spec_after_an_empty_document_is_still_refused() -> None:
    text = HEAD + "---\n---\nservices: []\n"
    with pytest.raises(SpecSyntaxError) as caught:
        load_document("t.yml", text)
    assert str(caught.value) == (
        "t.yml:7:1: a spec file holds one YAML document; split multiple specs into files"
    )


ROUND_TRIP = ["1e3", "+1e3", "09", "0o17", "0O7", "yes", "10:30", "=", "1_0", "", "~", "a b"]


def test_strings_written_as_yaml_read_back_as_the_same_strings() -> None:
    """What osbuilder writes (--dry-run, `metadata: yaml`) reads back as written, by YAML
    1.2 rules (LinuxKit's) and by 1.1's alike: a string that 1.2 would read as a number is
    quoted though PyYAML's own dumper leaves it plain."""
    data = {"command": ROUND_TRIP, "count": 3, "ratio": 1.5, "on": True, "none": None}
    text = dump_yaml(data, sort_keys=False)
    assert load_document("t.yml", text).data == data
    assert yaml.safe_load(text) == data
    assert "'1e3'" in text and "'0o17'" in text and "count: 3" in text


@given(
    st.lists(
        st.text(alphabet=st.sampled_from("0123456789+-._:eEoxObBaTtyYnN~= "), max_size=8)
        | st.text(max_size=8),
        max_size=8,
    )
)
def test_any_string_written_reads_back_as_that_string(strings: list[str]) -> None:
    text = dump_yaml({"strings": strings}, sort_keys=False)
    assert load_document("t.yml", text).data == {"strings": strings}
