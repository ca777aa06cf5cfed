"""Scalars resolved by YAML 1.2 core-schema rules, as go-yaml v3 (LinuxKit's reader) does.

PyYAML resolves plain scalars by YAML 1.1: `yes`, `off`, `10:30`, `2024-01-02` and `=`
become booleans, integers, dates and a "value" tag. LinuxKit reads them as strings. So the
loader tags every plain scalar `PLAIN_TAG` (`<<` apart) and `resolve_scalar` gives it its
1.2 value; an explicit tag (`!!int "12"`, `!!bool yes`) goes through the same rules and
must agree with them, as in go-yaml.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml
from yaml.nodes import ScalarNode
from yaml.resolver import BaseResolver

#: The tag the loader gives a plain (unquoted, untagged) scalar until it is resolved here.
PLAIN_TAG = "tag:osbuilder,2026:plain"
MERGE_TAG = "tag:yaml.org,2002:merge"

_PREFIX = "tag:yaml.org,2002:"
STR, BOOL, INT, FLOAT, NULL, TIMESTAMP = (
    _PREFIX + name for name in ("str", "bool", "int", "float", "null", "timestamp")
)
#: Explicit tags whose text is resolved by the core schema (others are constructed by PyYAML).
RESOLVABLE_TAGS = frozenset({STR, BOOL, INT, FLOAT, NULL, TIMESTAMP})

_WORDS: dict[str, tuple[str, Any]] = {
    **{word: (BOOL, True) for word in ("true", "True", "TRUE")},
    **{word: (BOOL, False) for word in ("false", "False", "FALSE")},
    **{word: (NULL, None) for word in ("", "~", "null", "Null", "NULL")},
    **{word: (FLOAT, math.nan) for word in (".nan", ".NaN", ".NAN")},
    **{word: (FLOAT, math.inf) for word in (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF")},
    **{word: (FLOAT, -math.inf) for word in ("-.inf", "-.Inf", "-.INF")},
}
# go-yaml looks at the first character: only these can start a non-string.
_WORD_STARTS = frozenset("yYnNtTfFoO~")
_NUMBER_STARTS = frozenset("+-0123456789")

_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
# Go's strconv.ParseInt(s, 0, 64): a sign, then 0x/0o/0b, a leading 0 (octal) or decimal.
_INT = re.compile(
    r"(?P<sign>[-+]?)(?:0[xX](?P<hex>[0-9a-fA-F]+)|0[oO](?P<oct>[0-7]+)|0[bB](?P<bin>[01]+)"
    r"|0(?P<oldoct>[0-7]+)|(?P<dec>0|[1-9][0-9]*))"
)
_INT_BASES = {"hex": 16, "oct": 8, "bin": 2, "oldoct": 8, "dec": 10}
# The timestamps go-yaml knows (a subset of yaml.org/type/timestamp): a date, or a date and a
# time, with a zone after `T`/`t` and none after a space.
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
    r"(?:[Tt][0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(?:\.[0-9]+)?(?:Z|[-+][0-9]{2}:[0-9]{2})"
    r"|[ ][0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(?:\.[0-9]+)?)?"
)


def resolve_plain(text: str) -> tuple[str, Any]:
    """The core-schema tag and value of a plain scalar's text."""
    if text in _WORDS:
        return _WORDS[text]
    first = text[0]
    if first == ".":
        if _FLOAT.fullmatch(text):
            return FLOAT, float(text)
    elif first in _NUMBER_STARTS:
        if _TIMESTAMP.fullmatch(text):  # read into a string, as go-yaml does into `any`
            return TIMESTAMP, text
        return _number(text.replace("_", ""), text)
    return STR, text


def _number(digits: str, text: str) -> tuple[str, Any]:
    found = _INT.fullmatch(digits)
    if found:
        base = next(name for name in _INT_BASES if found[name] is not None)
        value = int(found[base], _INT_BASES[base])
        value = -value if found["sign"] == "-" else value
        # int64, else uint64 (which takes no sign); beyond, a float or a string
        if -(2**63) <= value < 2**63 or (not found["sign"] and value < 2**64):
            return INT, value
    if _FLOAT.fullmatch(digits):
        value_float = float(digits)
        if not math.isinf(value_float):  # Go's ParseFloat refuses what overflows: a string
            return FLOAT, value_float
    return STR, text


def resolve_tagged(tag: str, text: str) -> Any:
    """The value of a scalar with an explicit core tag; ValueError when the text is not one."""
    if tag == STR:
        return text
    resolved_tag, value = resolve_plain(text)
    if resolved_tag == tag:
        return value
    if tag == FLOAT and resolved_tag == INT:
        return float(value)
    raise ValueError(f"cannot decode {_short(resolved_tag)} `{text}` as a {_short(tag)}")


def _short(tag: str) -> str:
    return "!!" + tag.removeprefix(_PREFIX)


class CoreSchemaResolver(BaseResolver):
    """Leaves plain scalars for `resolve_plain` (a loader mixin: PyYAML calls `resolve` while
    composing). Quoted scalars are strings, collections maps and lists, as before."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is ScalarNode and implicit[0]:
            return MERGE_TAG if value == "<<" else PLAIN_TAG
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]


class _CoreSchemaSafeDumper(yaml.SafeDumper):
    """PyYAML's safe dumper, quoting also the strings YAML 1.2 would read as something
    else (`1e3`, `09`, `0o17`: plain to YAML 1.1, numbers to go-yaml and to our loader)."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        tag = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        if kind is ScalarNode and implicit[0] and tag == STR:
            return resolve_plain(value)[0]
        return tag


def dump_yaml(data: Any, *, sort_keys: bool) -> str:
    """`data` as YAML that reads back the same by YAML 1.1 and 1.2 (LinuxKit's) rules."""
    return yaml.dump(data, Dumper=_CoreSchemaSafeDumper, sort_keys=sort_keys)
