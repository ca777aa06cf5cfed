"""Precompiled Python bytecode for images that run Python.

Debian's packages compile their modules in a postinst script, which an
extracted root filesystem never runs; without .pyc files every boot
compiles the standard library again (seconds under emulation). A recipe with
`bytecode: "3.11"` gets a .pyc beside each .py of its layers, written as
"unchecked-hash" pycs: no mtimes, and never revalidated.

They are compiled by compileall in a fresh interpreter (`python -I -S`), never in
osbuilder's own process: marshal writes a string differently depending on whether the
process happens to have interned it (one-character strings are shared singletons), so
the same source would give different bytes depending on which modules osbuilder had
loaded, and two builds of one recipe would differ. The host's Python must be the same
minor version as the image's.
"""

from __future__ import annotations

import io
import posixpath
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import IO

from osbuilder.errors import ExternalError, UserError
from osbuilder.oci.imagewriter import LayerWriter, dir_info, file_info
from osbuilder.runner import run


class Bytecode:
    """Collects the .py files that pass through a layer; `finish` adds their .pyc files."""

    def __init__(self, version: str, epoch: int, what: str) -> None:
        host = f"{sys.version_info.major}.{sys.version_info.minor}"
        if version != host:
            raise UserError(
                f"{what}: bytecode for Python {version} needs osbuilder to run on Python "
                f"{version} (this is {host}); drop 'bytecode' or use that Python"
            )
        self.epoch = epoch
        self._sources: Path | None = None  # a scratch tree of the modules, as in the layer

    def take(self, info: tarfile.TarInfo, data: IO[bytes] | None) -> IO[bytes] | None:
        """Pass an entry's data through, keeping a copy when it is a Python module."""
        name = info.name
        if data is None or not info.isfile() or not name.endswith(".py"):
            return data
        if name.startswith(("/", "../")) or posixpath.normpath(name) != name:
            return data  # not a plain path inside the layer: nothing to put beside it
        source = data.read()
        if self._sources is None:
            self._sources = Path(tempfile.mkdtemp(prefix="osbuilder-bytecode-"))
        path = self._sources / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(source)
        return io.BytesIO(source)

    def compile(self) -> dict[str, bytes]:
        """The .pyc of each module taken (by path in the layer); modules that do not
        compile (test data, templates that are not Python 3) get none, as with compileall.
        The modules taken are forgotten."""
        sources = self._sources
        if sources is None:
            return {}
        try:
            return compile_tree(sources, "/")
        finally:
            self.discard()

    def discard(self) -> None:
        """Forget the modules taken (a layer that failed): their scratch copies go."""
        if self._sources is not None:
            shutil.rmtree(self._sources, ignore_errors=True)
            self._sources = None

    def finish(self, layer: LayerWriter) -> None:
        """Add the __pycache__ directories and .pyc files, sorted, at the layer's end."""
        compiled = self.compile()
        directories = sorted({posixpath.dirname(name) for name in compiled})
        for directory in directories:
            layer.add(dir_info(directory, 0o755, self.epoch))
        for name in sorted(compiled):
            data = compiled[name]
            layer.add(file_info(name, len(data), 0o644, self.epoch), io.BytesIO(data))


def compile_tree(sources: Path, shown_as: str, optimize: int = 0) -> dict[str, bytes]:
    """The unchecked-hash .pyc of each module below `sources`, by its path there
    (DIR/__pycache__/NAME.cpython-311[.opt-2].pyc); the code names its file as below
    `shown_as` (the place the module has in the image). A module that does not compile gets
    none. `optimize` as python's -O: 2 leaves out asserts and docstrings."""
    compiled = run(
        [
            sys.executable,
            *("-I", "-S", "-m", "compileall", "-q", "-q", "-o", str(optimize)),
            *("--invalidation-mode", "unchecked-hash", "-d", shown_as, str(sources)),
        ],
        check=False,
    )
    if compiled.returncode not in (0, 1):  # 1: some module did not compile
        stderr = compiled.stderr.decode(errors="replace").strip()
        raise ExternalError(f"compileall failed ({compiled.returncode}): {stderr}")
    return {
        str(pyc.relative_to(sources)): pyc.read_bytes()
        for pyc in sources.rglob(f"__pycache__/*.{sys.implementation.cache_tag}*.pyc")
    }
