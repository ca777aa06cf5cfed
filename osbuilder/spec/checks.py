"""Checks across entries of a (merged) spec: names that must be unique or must exist.

They read the raw data and skip what has the wrong type (the schema check
reports that), so they can run on a spec with other errors and every problem
is reported in one pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic_core import PydanticCustomError

from osbuilder.spec.model import CONTAINER_SECTIONS
from osbuilder.spec.source import DataPath, Diagnostic, Document, Location
from osbuilder.spec.syntax import Bind
from osbuilder.spec.validation import did_you_mean

_BUILTIN_USERS = ("", "root")


def cross_checks(document: Document) -> list[Diagnostic]:
    data = document.data if isinstance(document.data, dict) else {}
    found: list[Diagnostic] = []
    found += _unique(document, data, "services", "service")
    found += _unique(document, data, "volumes", "volume")
    found += _user_names(document, data)
    found += _volume_binds(document, data)
    found += _file_kinds(document, data)
    found += _restart_only_for_services(document, data)
    return found


def _entries(data: dict[str, Any], section: str) -> Iterator[tuple[int, dict[str, Any]]]:
    items = data.get(section)
    if isinstance(items, list):
        for index, item in enumerate(items):
            if isinstance(item, dict):
                yield index, item


def _unique(document: Document, data: dict[str, Any], section: str, what: str) -> list[Diagnostic]:
    seen: dict[str, Location] = {}
    found = []
    for index, entry in _entries(data, section):
        name = entry.get("name")
        if not isinstance(name, str):
            continue
        path: DataPath = (section, index, "name")
        location = document.value_location(path)
        if name in seen:
            found.append(
                Diagnostic(
                    location, path, f"duplicate {what} name {name!r} (first at {seen[name]})"
                )
            )
        else:
            seen[name] = location
    return found


def _user_names(document: Document, data: dict[str, Any]) -> list[Diagnostic]:
    names = [
        entry["name"]
        for section in CONTAINER_SECTIONS
        for _, entry in _entries(data, section)
        if isinstance(entry.get("name"), str)
    ]
    known = set(names) | set(_BUILTIN_USERS)
    found = []
    for section in (*CONTAINER_SECTIONS, "files"):
        for index, entry in _entries(data, section):
            ids: list[tuple[DataPath, Any]] = [
                ((section, index, key), entry.get(key)) for key in ("uid", "gid")
            ]
            extra = entry.get("additionalGids") if section != "files" else None
            if isinstance(extra, list):
                ids += [((section, index, "additionalGids", i), v) for i, v in enumerate(extra)]
            for path, value in ids:
                if isinstance(value, str) and value not in known:
                    found.append(
                        Diagnostic(
                            document.value_location(path),
                            path,
                            f"unknown user {value!r}: a name must be 'root' or the name of a "
                            f"container in the spec{did_you_mean(value, names)}",
                        )
                    )
    return found


def _volume_binds(document: Document, data: dict[str, Any]) -> list[Diagnostic]:
    volumes = {
        entry["name"]: entry
        for _, entry in _entries(data, "volumes")
        if isinstance(entry.get("name"), str)
    }
    found = []
    for section in CONTAINER_SECTIONS:
        for index, entry in _entries(data, section):
            for path, source, bind_options in _bind_sources(entry, (section, index)):
                if source.startswith("/"):
                    continue
                location = document.value_location(path)
                volume = volumes.get(source)
                if volume is None:
                    found.append(
                        Diagnostic(
                            location,
                            path,
                            f"bind source {source!r} is not a declared volume: declare it under "
                            "'volumes' or use an absolute host path"
                            + did_you_mean(source, list(volumes)),
                        )
                    )
                elif volume.get("readonly") is True and "ro" not in bind_options:
                    found.append(
                        Diagnostic(
                            location,
                            path,
                            f"volume {source!r} is read-only: bind it with the 'ro' option",
                        )
                    )
    return found


def _bind_sources(
    entry: dict[str, Any], base: DataPath
) -> Iterator[tuple[DataPath, str, list[str]]]:
    """(path, source, options) of every bind of a container: binds, binds.add, bind mounts."""
    for key in ("binds", "binds.add"):
        binds = entry.get(key)
        if not isinstance(binds, list):
            continue
        for i, text in enumerate(binds):
            bind = _parsed_bind(text)
            if bind is not None:
                yield (*base, key, i), bind.source, list(bind.options or ())
    mounts = entry.get("mounts")
    if isinstance(mounts, list):
        for i, mount in enumerate(mounts):
            if isinstance(mount, dict) and mount.get("type") == "bind":
                source, raw_options = mount.get("source"), mount.get("options")
                if isinstance(source, str) and source:
                    listed = raw_options if isinstance(raw_options, list) else []
                    opts = [o for o in listed if isinstance(o, str)]
                    yield (*base, "mounts", i, "source"), source, opts


def _parsed_bind(text: Any) -> Bind | None:
    """The bind, or None when it is not one (the schema reports that)."""
    if not isinstance(text, str):
        return None
    try:
        return Bind.parse(text)
    except PydanticCustomError:
        return None


FILE_KINDS = ("contents", "source", "directory", "symlink", "metadata")


def _file_kinds(document: Document, data: dict[str, Any]) -> list[Diagnostic]:
    found = []
    for index, entry in _entries(data, "files"):
        given = [k for k in FILE_KINDS if entry.get(k) not in (None, False)]
        path: DataPath = ("files", index)
        if len(given) != 1:
            which = f"found {' and '.join(given)}" if given else "found none"
            found.append(
                Diagnostic(
                    document.value_location(path),
                    path,
                    f"set exactly one of {', '.join(FILE_KINDS)} ({which})",
                )
            )
        if entry.get("optional") is True and "source" not in entry:
            found.append(
                Diagnostic(
                    document.key_location((*path, "optional")),
                    path,
                    "'optional' applies only to a file with 'source'",
                )
            )
    return found


def _restart_only_for_services(document: Document, data: dict[str, Any]) -> list[Diagnostic]:
    return [
        Diagnostic(
            document.key_location((section, index, "restart")),
            (section, index),
            "'restart' applies to services only (onboot and onshutdown containers run once)",
        )
        for section in CONTAINER_SECTIONS
        if section != "services"
        for index, entry in _entries(data, section)
        if "restart" in entry
    ]
