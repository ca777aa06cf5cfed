"""The spec's one-line micro-syntaxes, parsed once into typed values.

A bind `source:destination[:options]`, a tmpfs `destination[:options]` and an rlimit
`name,soft,hard` are strings in YAML. Validation parses each into a value the
assembler uses as it is (assemble/runtime_config.py never splits a string again),
and writes it back as the text it was (`to_data`, the spec written into an image).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from osbuilder.spec.validation import did_you_mean, invalid

#: "unlimited" in an rlimit: RLIM_INFINITY as the uint64 OCI field holds it.
RLIM_INFINITY = 2**64 - 1

RLIMITS = (
    "RLIMIT_CPU",
    "RLIMIT_FSIZE",
    "RLIMIT_DATA",
    "RLIMIT_STACK",
    "RLIMIT_CORE",
    "RLIMIT_RSS",
    "RLIMIT_NPROC",
    "RLIMIT_NOFILE",
    "RLIMIT_MEMLOCK",
    "RLIMIT_AS",
    "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
)


@dataclass(frozen=True)
class TextSyntax:
    """A value written as one string: pydantic validates a string with `parse` and
    serialises the value back to `text`."""

    text: str

    @classmethod
    def parse(cls, text: str) -> Self:
        raise NotImplementedError

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls.parse,
            core_schema.str_schema(strict=True),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda v: v.text),
        )

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Bind(TextSyntax):
    """`source:destination[:options]`; a source without a leading '/' names a volume."""

    source: str
    destination: str
    options: tuple[str, ...] | None  # None: not given (LinuxKit then binds rw,rbind,rshared)

    @classmethod
    def parse(cls, text: str) -> Self:
        parts = text.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            invalid(f"bind must be 'source:destination[:options]', got {text!r}")
        if not parts[1].startswith("/"):
            invalid(f"bind destination must be an absolute path, got {parts[1]!r} in {text!r}")
        options = tuple(parts[2].split(",")) if len(parts) == 3 else None
        if options is not None and not all(options):
            invalid(f"bind options must be a comma-separated list, got {parts[2]!r} in {text!r}")
        return cls(text, parts[0], parts[1], options)


@dataclass(frozen=True)
class Tmpfs(TextSyntax):
    """`destination[:options]`."""

    destination: str
    options: tuple[str, ...] | None

    @classmethod
    def parse(cls, text: str) -> Self:
        destination, colon, options = text.partition(":")
        if ":" in options:
            invalid(f"tmpfs must be 'destination[:options]', got {text!r}")
        if not destination.startswith("/"):
            invalid(f"tmpfs destination must be an absolute path, got {text!r}")
        return cls(text, destination, tuple(options.split(",")) if colon else None)


@dataclass(frozen=True)
class Rlimit(TextSyntax):
    """`name,soft,hard`: a name with or without RLIMIT_, numbers or `unlimited`."""

    name: str  # RLIMIT_*
    soft: int
    hard: int

    @classmethod
    def parse(cls, text: str) -> Self:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 3:
            invalid(f"rlimit must be 'name,soft,hard' (e.g. 'nofile,1024,4096'), got {text!r}")
        name = parts[0].upper()
        if not name.startswith("RLIMIT_"):
            name = "RLIMIT_" + name
        if name not in RLIMITS:
            invalid(f"unknown rlimit {parts[0]!r}{did_you_mean(name, RLIMITS)}")
        soft, hard = (_limit(limit, text) for limit in parts[1:])
        return cls(text, name, soft, hard)


def _limit(limit: str, text: str) -> int:
    if limit.lower() == "unlimited":
        return RLIM_INFINITY
    if not (limit.isdigit() and int(limit) < 2**64):
        invalid(f"rlimit value {limit!r} in {text!r} is not a number or 'unlimited'")
    return int(limit)
