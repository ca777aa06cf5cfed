"""Generated JSON documents: the bytes json.dumps gives, newline-ended."""

from __future__ import annotations

import json

import pytest

from osbuilder.assemble.jsondoc import json_document

DOCUMENT = {
    "ociVersion": "1.0.2",
    "process": {"args": ["/bin/sh", "-c", 'echo "hé" \\ \t'], "env": [], "terminal": False},
    "linux": {"uidMappings": [{"containerID": 0, "hostID": 100, "size": 1}], "sysctl": {}},
    "annotations": {"z": None, "a": [1, -2, 3.5, True]},
}


@pytest.mark.parametrize("indent", [2, 4])
@pytest.mark.parametrize("sort_keys", [False, True])
def test_the_bytes_are_json_dumps_indented(indent: int, sort_keys: bool) -> None:
    expected = json.dumps(DOCUMENT, indent=indent, sort_keys=sort_keys, ensure_ascii=False)
    assert json_document(DOCUMENT, indent=indent, sort_keys=sort_keys) == (
        expected.encode() + b"\n"
    )
