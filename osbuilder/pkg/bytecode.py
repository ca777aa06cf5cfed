"""Precompiled Python bytecode for images that run Python.

Debian's packages compile their modules in a postinst script, which an
extracted root filesystem never runs; without .pyc files every boot
compiles the standard library again (seconds under emulation). A recipe with
`bytecode: "3.11"` gets a .pyc beside each .py of its layers, written as
"unchecked-hash" pycs: deterministic (no mtimes) and never revalidated.
The host's Python must be the same minor version as the image's.
"""

from __future__ import annotations

import importlib.util
import io
import posixpath
import sys
import tarfile
from importlib import _bootstrap_external  # the pyc writer compileall uses
from typing import IO

from osbuilder.errors import UserError
from osbuilder.oci.imagewriter import LayerWriter, dir_info, file_info


class Bytecode:
    """Compiles the .py files that pass through a layer; `finish` adds their .pyc files."""

    def __init__(self, version: str, epoch: int, what: str) -> None:
        host = f"{sys.version_info.major}.{sys.version_info.minor}"
        if version != host:
            raise UserError(
                f"{what}: bytecode for Python {version} needs osbuilder to run on Python "
                f"{version} (this is {host}); drop 'bytecode' or use that Python"
            )
        self.tag = sys.implementation.cache_tag  # e.g. cpython-311
        self.epoch = epoch
        self.compiled: dict[str, bytes] = {}

    def take(self, info: tarfile.TarInfo, data: IO[bytes] | None) -> IO[bytes] | None:
        """Pass an entry's data through, compiling it when it is a Python module."""
        if data is None or not info.isfile() or not info.name.endswith(".py"):
            return data
        source = data.read()
        try:
            code = compile(source, "/" + info.name, "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            pass  # test data and templates that are not Python 3: compileall skips them too
        else:
            folder, module = posixpath.split(info.name)
            name = posixpath.join(folder, "__pycache__", f"{module[:-3]}.{self.tag}.pyc")
            self.compiled[name] = bytes(
                _bootstrap_external._code_to_hash_pyc(  # type: ignore[attr-defined]
                    code, importlib.util.source_hash(source), checked=False
                )
            )
        return io.BytesIO(source)

    def finish(self, layer: LayerWriter) -> None:
        """Add the __pycache__ directories and .pyc files, sorted, at the layer's end."""
        directories = sorted({posixpath.dirname(name) for name in self.compiled})
        for directory in directories:
            layer.add(dir_info(directory, 0o755, self.epoch))
        for name in sorted(self.compiled):
            data = self.compiled[name]
            layer.add(file_info(name, len(data), 0o644, self.epoch), io.BytesIO(data))
        self.compiled.clear()
