"""Constrained scalar types of the spec, each with one clear error message.

Each type is an `Annotated` type carrying a `Check` (see spec/schema.py): the check
runs where the value is, so an error points at the exact list item or field.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any

from msgspec import Meta

from osbuilder.oci.reference import InvalidReference, parse_reference
from osbuilder.spec.capabilities import KNOWN_CAPABILITIES, SPECIAL_CAPABILITY_SETS
from osbuilder.spec.schema import Check, did_you_mean, fail
from osbuilder.spec.source import describe

__all__ = ["did_you_mean", "fail"]


def _image_reference(value: str) -> str:
    try:
        parse_reference(value)
    except InvalidReference as exc:
        fail(str(exc))
    return value


#: An image reference: `name[:tag][@digest]`, checked against the reference grammar.
ImageRef = Annotated[
    str, Check(_image_reference), Meta(description="image reference, e.g. redis:7")
]


def _capability(value: str) -> str:
    if value in KNOWN_CAPABILITIES or value.lower() in SPECIAL_CAPABILITY_SETS:
        return value
    fail(f"unknown capability {value!r}{_capability_hint(value)}")


def _capability_hint(value: str) -> str:
    # Compare without the shared CAP_ prefix, which would make every name look alike.
    word = value.upper().removeprefix("CAP_")
    bare = [c.removeprefix("CAP_") for c in KNOWN_CAPABILITIES]
    extended = [b for b in bare if b.startswith(word)]
    if len(extended) == 1:
        return f" (did you mean 'CAP_{extended[0]}'?)"
    close = difflib.get_close_matches(word, bare, n=1, cutoff=0.7)
    return f" (did you mean 'CAP_{close[0]}'?)" if close else ""


def _capability_list(values: list[str]) -> list[str]:
    if len(values) > 1:
        for value in values:
            if value.lower() in SPECIAL_CAPABILITY_SETS:
                fail(f"{value!r} stands for a whole set and must be the list's only entry")
    return values


Capability = Annotated[str, Check(_capability)]
#: Capability names (CAP_*), or a lone `all` / `none`.
CapabilityList = Annotated[list[Capability], Check(_capability_list)]


def _mode(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        fail(
            f'mode must be a quoted octal string such as "0644"; YAML read this one as the '
            f"number {value} (write it in quotes)"
        )
    if isinstance(value, str) and not re.fullmatch(r"0?[0-7]{3,4}", value):
        fail(f"mode must be an octal string such as '0644', got {value!r}")
    return value


#: A file mode as an octal string ("0644"), as LinuxKit requires.
OctalMode = Annotated[str, Check(_mode, before=True)]


def _numeric_or_name(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        fail(f"expected a numeric id or the name of a container, got {describe(value)}")
    if isinstance(value, int) and not 0 <= value < 2**32:
        fail(f"id {value} is out of range (0 to 4294967295)")
    return value


#: A uid or gid: a number, or the name of a container of the spec (resolved at build).
UserId = Annotated[int | str, Check(_numeric_or_name, before=True)]


def _namespace(kind: str, allow_none: bool) -> Check:
    choices = ("host", "new", "none") if allow_none else ("host", "new")

    def check(value: str) -> str:
        if value in choices or value.startswith("/"):
            return value
        words = ", ".join(repr(c) for c in choices)
        fail(
            f"{kind} must be {words} or the path of a namespace to join "
            f"(e.g. /proc/1/ns/{kind}), got {value!r}{did_you_mean(value, choices)}"
        )

    return Check(check)


NetNamespace = Annotated[str, _namespace("net", allow_none=True)]
PidNamespace = Annotated[str, _namespace("pid", allow_none=False)]
IpcNamespace = Annotated[str, _namespace("ipc", allow_none=False)]
UtsNamespace = Annotated[str, _namespace("uts", allow_none=False)]
UserNamespace = Annotated[str, _namespace("user", allow_none=False)]


def _bind(value: str) -> str:
    parts = value.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        fail(f"bind must be 'source:destination[:options]', got {value!r}")
    if not parts[1].startswith("/"):
        fail(f"bind destination must be an absolute path, got {parts[1]!r} in {value!r}")
    if len(parts) == 3 and not all(parts[2].split(",")):
        fail(f"bind options must be a comma-separated list, got {parts[2]!r} in {value!r}")
    return value


#: `source:destination[:options]`; a source without a leading '/' names a volume.
Bind = Annotated[str, Check(_bind)]


def _tmpfs(value: str) -> str:
    destination, _, options = value.partition(":")
    if ":" in options:
        fail(f"tmpfs must be 'destination[:options]', got {value!r}")
    if not destination.startswith("/"):
        fail(f"tmpfs destination must be an absolute path, got {value!r}")
    return value


Tmpfs = Annotated[str, Check(_tmpfs)]

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


def _rlimit(value: str) -> str:
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 3:
        fail(f"rlimit must be 'name,soft,hard' (e.g. 'nofile,1024,4096'), got {value!r}")
    name = parts[0].upper()
    if not name.startswith("RLIMIT_"):
        name = "RLIMIT_" + name
    if name not in RLIMITS:
        fail(f"unknown rlimit {parts[0]!r}{did_you_mean(name, RLIMITS)}")
    for limit in parts[1:]:
        if limit.lower() != "unlimited" and not (limit.isdigit() and int(limit) < 2**64):
            fail(f"rlimit value {limit!r} in {value!r} is not a number or 'unlimited'")
    return value


Rlimit = Annotated[str, Check(_rlimit)]


def _env(value: str) -> str:
    name, equals, _ = value.partition("=")
    if not equals or not name:
        fail(f"environment entries are 'NAME=value', got {value!r}")
    return value


EnvVar = Annotated[str, Check(_env)]


def _absolute(value: str) -> str:
    if not value.startswith("/"):
        fail(f"must be an absolute path, got {value!r}")
    return value


AbsolutePath = Annotated[str, Check(_absolute)]


def _file_path(value: str) -> str:
    if not value.strip("/"):
        fail("path must name a file below the root, got an empty path")
    if ".." in value.split("/"):
        fail(f"path must not contain '..', got {value!r}")
    if "\0" in value:
        fail("path must not contain a NUL character")
    return value


#: Where a `files` entry lands in the image; relative to / (a leading '/' is allowed).
ImagePath = Annotated[str, Check(_file_path)]

CONTAINER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def _container_name(value: str) -> str:
    if not CONTAINER_NAME.fullmatch(value):
        fail(
            f"container name must start with a letter or digit and use only letters, digits, "
            f"'_', '.', '-' (at most 128), got {value!r}"
        )
    return value


ContainerName = Annotated[str, Check(_container_name)]

VOLUME_NAME = re.compile(r"[a-z0-9_-]*")


def _volume_name(value: str) -> str:
    if not VOLUME_NAME.fullmatch(value):
        fail(f"volume name must match ^[a-z0-9_-]*$ (lowercase, digits, '_', '-'), got {value!r}")
    return value


VolumeName = Annotated[str, Check(_volume_name)]


def _platform(value: str) -> str:
    parts = value.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        fail(f"platform must be 'os/arch[/variant]' (e.g. linux/amd64), got {value!r}")
    return value


Platform = Annotated[str, Check(_platform)]

DEVICE_TYPES = ("a", "b", "c", "u", "p")
DeviceType = Annotated[
    str,
    Check(
        lambda v: (
            v
            if v in DEVICE_TYPES
            else fail(
                f"device type must be one of {', '.join(DEVICE_TYPES)} "
                f"(all, block, char, unbuffered char, fifo), got {v!r}"
            )
        )
    ),
]

PROPAGATIONS = (
    "shared",
    "slave",
    "private",
    "rshared",
    "rslave",
    "rprivate",
    "unbindable",
    "runbindable",
)
Propagation = Annotated[
    str,
    Check(
        lambda v: (
            v
            if v in PROPAGATIONS
            else fail(
                f"rootfsPropagation must be one of {', '.join(PROPAGATIONS)}, got {v!r}"
                f"{did_you_mean(v, PROPAGATIONS)}"
            )
        )
    ),
]

OomScoreAdj = Annotated[int, Meta(ge=-1000, le=1000)]
