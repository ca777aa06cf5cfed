"""The JSON files a build generates (config.json, runtime.json, the SBOM, a volume's OCI
index.json, the spec as built for `files: metadata: json`): indented, newline-ended.

msgspec writes them: the json module's indenting encoder is pure Python, ten times
slower (~1 ms of every build). The bytes are those json.dumps gives with the same indent
and ensure_ascii=False.
"""

from __future__ import annotations

import msgspec


def json_document(data: object, *, indent: int, sort_keys: bool = False) -> bytes:
    encoded = msgspec.json.encode(data, order="sorted" if sort_keys else None)
    return msgspec.json.format(encoded, indent=indent) + b"\n"
