"""Several spec files on one command line merge as LinuxKit's AppendConfig does.

Lists (init, onboot, onshutdown, services, files, volumes, trust lists)
append in file order; each kernel field given by a later file overrides.
Locations follow the data, so errors found after merging still point at the
file and line each entry came from.
"""

from __future__ import annotations

from typing import Any

from osbuilder.spec.model import CONTAINER_SECTIONS
from osbuilder.spec.source import DataPath, Document

LIST_SECTIONS = ("init", *CONTAINER_SECTIONS, "files", "volumes")


def merge_documents(documents: list[Document]) -> Document:
    """Merge spec documents whose data are mappings; the first gives the origin."""
    if len(documents) == 1:
        return documents[0]
    merged = Document(data={}, origin=documents[0].origin)
    merged.values[()] = documents[0].origin
    for document in documents:
        _append(merged, document)
    return merged


def _append(merged: Document, document: Document) -> None:
    data: dict[str, Any] = document.data
    target: dict[str, Any] = merged.data
    for section, value in data.items():
        if section in LIST_SECTIONS and isinstance(value, list):
            offset = len(target.setdefault(section, []))
            target[section].extend(value)
            _copy_locations(merged, document, (section,), (section,), offset)
        elif section == "trust" and isinstance(value, dict):
            trust = target.setdefault("trust", {})
            for key, items in value.items():
                if isinstance(items, list):
                    offset = len(trust.setdefault(key, []))
                    trust[key].extend(items)
                    _copy_locations(merged, document, ("trust", key), ("trust", key), offset)
            _copy_key(merged, document, ("trust",))
        elif section == "kernel" and isinstance(value, dict):
            kernel = target.setdefault("kernel", {})
            for key, item in value.items():
                kernel[key] = item
                _drop_locations(merged, ("kernel", key))
                _copy_locations(merged, document, ("kernel", key), ("kernel", key), None)
            _copy_key(merged, document, ("kernel",))
        else:  # not mergeable (wrong type): the schema check of that file reports it
            target[section] = value
            _drop_locations(merged, (section,))
            _copy_locations(merged, document, (section,), (section,), None)


def _copy_key(merged: Document, document: Document, path: DataPath) -> None:
    for table_from, table_to in ((document.keys, merged.keys), (document.values, merged.values)):
        if path in table_from:
            table_to.setdefault(path, table_from[path])


def _copy_locations(
    merged: Document, document: Document, source: DataPath, dest: DataPath, offset: int | None
) -> None:
    """Copy locations under `source` to `dest`, shifting the first index after it by offset."""
    depth = len(source)
    for table_from, table_to in ((document.keys, merged.keys), (document.values, merged.values)):
        for path, location in table_from.items():
            if path[:depth] != source:
                continue
            rest = path[depth:]
            if offset is not None and rest and isinstance(rest[0], int):
                rest = (rest[0] + offset, *rest[1:])
            elif offset is not None and not rest:
                table_to.setdefault(dest, location)
                continue
            table_to[(*dest, *rest)] = location


def _drop_locations(merged: Document, prefix: DataPath) -> None:
    depth = len(prefix)
    for table in (merged.keys, merged.values):
        for path in [p for p in table if p[:depth] == prefix]:
            del table[path]
