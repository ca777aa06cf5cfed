"""Constrained scalar types of the spec, each with one clear error message.

Each type is an `Annotated` type whose validator refuses a value with `invalid`
(spec/validation.py): pydantic runs it where the value is, so an error points at
the exact list item or field. The micro-syntaxes that parse into typed values
(binds, tmpfs, rlimits) are in spec/syntax.py.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, PlainValidator

from osbuilder.oci.reference import InvalidReference, parse_reference
from osbuilder.spec.capabilities import KNOWN_CAPABILITIES, SPECIAL_CAPABILITY_SETS
from osbuilder.spec.source import describe
from osbuilder.spec.validation import did_you_mean, invalid


def _image_reference(value: str) -> str:
    try:
        parse_reference(value)
    except InvalidReference as exc:
        invalid(str(exc))
    return value


#: An image reference: `name[:tag][@digest]`, checked against the reference grammar.
ImageRef = Annotated[str, AfterValidator(_image_reference)]


def _namespace_prefix(value: str) -> str:
    # A namespace begins image names: `org/anything` must parse as one.
    if value.endswith("/") or "@" in value or value.rfind(":") > value.rfind("/") > -1:
        invalid(f"{value!r} is not a namespace (e.g. linuxkit, or ghcr.io/acme)")
    try:
        parse_reference(f"{value}/image")
    except InvalidReference:
        invalid(f"{value!r} is not a namespace (e.g. linuxkit, or ghcr.io/acme)")
    return value


#: A namespace or registry under which every image is meant: `linuxkit`, `ghcr.io/acme`.
NamespacePrefix = Annotated[str, AfterValidator(_namespace_prefix)]


def _capability(value: str) -> str:
    if value in KNOWN_CAPABILITIES or value.lower() in SPECIAL_CAPABILITY_SETS:
        return value
    invalid(f"unknown capability {value!r}{_capability_hint(value)}")


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
                invalid(f"{value!r} stands for a whole set and must be the list's only entry")
    return values


Capability = Annotated[str, AfterValidator(_capability)]
#: Capability names (CAP_*), or a lone `all` / `none`.
CapabilityList = Annotated[list[Capability], AfterValidator(_capability_list)]


def _mode(value: Any) -> Any:
    # Go's strconv.ParseInt(mode, 8, 32), as LinuxKit reads a mode: octal digits, any
    # number of them ("0", "644", "4755", "00644"); no "0o" prefix, no sign. Bits above
    # 07777 (which LinuxKit would write into the tar header) are refused.
    if isinstance(value, int) and not isinstance(value, bool):
        invalid(
            f'mode must be a quoted octal string such as "0644"; YAML read this one as the '
            f"number {value} (write it in quotes)"
        )
    if isinstance(value, str):
        if not re.fullmatch(r"[0-7]+", value):
            invalid(f"mode must be an octal string such as '0644', got {value!r}")
        if int(value, 8) > 0o7777:
            invalid(f"mode {value!r} has bits above 07777 (permissions, setuid, setgid, sticky)")
    return value


#: A file mode as an octal string ("0644"), as LinuxKit requires.
OctalMode = Annotated[str, BeforeValidator(_mode)]


def _numeric_or_name(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        invalid(f"expected a numeric id or the name of a container, got {describe(value)}")
    if isinstance(value, int) and not 0 <= value < 2**32:
        invalid(f"id {value} is out of range (0 to 4294967295)")
    return value


#: A uid or gid: a number, or the name of a container of the spec (resolved at build).
UserId = Annotated[int | str, PlainValidator(_numeric_or_name, json_schema_input_type=int | str)]


def _namespace(kind: str, allow_none: bool) -> AfterValidator:
    # `root` is LinuxKit's other word for `host` (ConfigToOCI treats them alike); accepted,
    # not advertised.
    choices = ("host", "root", "new", "none") if allow_none else ("host", "root", "new")

    def check(value: str) -> str:
        if value in choices or value.startswith("/"):
            return value
        words = ", ".join(repr(c) for c in choices if c != "root")
        invalid(
            f"{kind} must be {words} or the path of a namespace to join "
            f"(e.g. /proc/1/ns/{kind}), got {value!r}{did_you_mean(value, choices)}"
        )

    return AfterValidator(check)


NetNamespace = Annotated[str, _namespace("net", allow_none=True)]
PidNamespace = Annotated[str, _namespace("pid", allow_none=False)]
IpcNamespace = Annotated[str, _namespace("ipc", allow_none=False)]
UtsNamespace = Annotated[str, _namespace("uts", allow_none=False)]
UserNamespace = Annotated[str, _namespace("user", allow_none=False)]


def _env(value: str) -> str:
    name, equals, _ = value.partition("=")
    if not equals or not name:
        invalid(f"environment entries are 'NAME=value', got {value!r}")
    return value


EnvVar = Annotated[str, AfterValidator(_env)]


def _absolute(value: str) -> str:
    if not value.startswith("/"):
        invalid(f"must be an absolute path, got {value!r}")
    return value


AbsolutePath = Annotated[str, AfterValidator(_absolute)]


def _file_path(value: str) -> str:
    if not value.strip("/"):
        invalid("path must name a file below the root, got an empty path")
    if ".." in value.split("/"):
        invalid(f"path must not contain '..', got {value!r}")
    if "\0" in value:
        invalid("path must not contain a NUL character")
    return value


#: Where a `files` entry lands in the image; relative to / (a leading '/' is allowed).
ImagePath = Annotated[str, AfterValidator(_file_path)]

# The name is the container's id for the OCI runtime, so runc's rule: libcontainer's
# `^[\w+-\.]+$` (in Go's RE2 `+-\.` is the range '+'..'.': letters, digits and _ + , - .),
# and not "." or ".."; nor a leading '-', which runc's command line would read as an option.
# LinuxKit itself checks nothing; its onboot and onshutdown containers run under runc.
CONTAINER_NAME = re.compile(r"[A-Za-z0-9_+,.][A-Za-z0-9_+,.-]*")


def _container_name(value: str) -> str:
    if not CONTAINER_NAME.fullmatch(value) or value in (".", ".."):
        invalid(
            f"container name must use only letters, digits, '_', '+', ',', '.', '-' "
            f"(a runc container id), not start with '-' nor be '.' or '..', got {value!r}"
        )
    return value


ContainerName = Annotated[str, AfterValidator(_container_name)]

VOLUME_NAME = re.compile(r"[a-z0-9_-]*")


def _volume_name(value: str) -> str:
    if not VOLUME_NAME.fullmatch(value):
        invalid(
            f"volume name must match ^[a-z0-9_-]*$ (lowercase, digits, '_', '-'), got {value!r}"
        )
    return value


VolumeName = Annotated[str, AfterValidator(_volume_name)]


def _platform(value: str) -> str:
    parts = value.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        invalid(f"platform must be 'os/arch[/variant]' (e.g. linux/amd64), got {value!r}")
    return value


Platform = Annotated[str, AfterValidator(_platform)]

DEVICE_TYPES = ("a", "b", "c", "u", "p")
DeviceType = Annotated[
    str,
    AfterValidator(
        lambda v: (
            v
            if v in DEVICE_TYPES
            else invalid(
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
    AfterValidator(
        lambda v: (
            v
            if v in PROPAGATIONS
            else invalid(
                f"rootfsPropagation must be one of {', '.join(PROPAGATIONS)}, got {v!r}"
                f"{did_you_mean(v, PROPAGATIONS)}"
            )
        )
    ),
]


def _whole_kilobytes(value: int) -> int:
    if value <= 0 or value % 1024:
        invalid(f"pageSize must be a whole number of KB, in bytes (e.g. 2097152), got {value}")
    return value


#: A huge page size in bytes; the runtime spec wants it as "2MB", which needs whole KB.
PageSize = Annotated[int, AfterValidator(_whole_kilobytes)]

OomScoreAdj = Annotated[int, Field(ge=-1000, le=1000)]
