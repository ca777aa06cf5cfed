"""The standard library reduced to what an image's Python programs import.

A recipe with `stdlib:` (and `bytecode:`, the Python version) keeps, of the standard
library its Debian packages bring (usr/lib/python3.11, 21 MB), only the modules its
programs can import. The stdlib's files are withheld from the root layer; the building
Python's modulefinder (the same minor version, as for `bytecode`) follows every import of
the recipe's `modules` (packages whole) through the image's own sources, at the top of a
module or inside a function, and of what CPython imports by name as it starts (the
codecs, and runpy for `python -m`).

The pure-Python modules found go back into usr/lib/python3.11 as sourceless .pyc files
(json/decoder.pyc: imported without a source to look for), unchecked-hash as `bytecode`
writes them, but without docstrings and asserts (as -OO would). Not a zip on sys.path:
zipimport is Python code, and importing the init's modules through it took 15% more
instructions than from a directory (valgrind, on the init image's own tree). The C
extension modules found stay in lib-dynload. Modules the interpreter has frozen in (io,
codecs, abc ...) are never read from a file and stay out, except os.pyc: the landmark by
which the interpreter finds its prefix (without it, it warns on every start). Nothing else
of the stdlib is kept, and the layer is deterministic (sorted entries, fixed times).

What is imported only by a name computed at run time (importlib, __import__) is invisible
to any finder: the recipe names such modules in `modules`. tests/unit/pkg/test_stdlib.py
imports every module of the init with nothing but the reduced stdlib.
"""

from __future__ import annotations

import contextlib
import io
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from importlib.machinery import FrozenImporter
from modulefinder import Module, ModuleFinder
from pathlib import Path
from typing import IO

from osbuilder.errors import UserError
from osbuilder.oci.imagewriter import LayerWriter, dir_info, file_info
from osbuilder.pkg.bytecode import compile_tree
from osbuilder.pkg.recipe import ReducedStdlib

#: What CPython imports by name as it starts, which no import statement shows: the
#: codec package and the codecs of UTF-8 mode (the init's C locale), of ASCII and Latin-1;
#: and runpy, which runs `python -m` (frozen in, but what it imports is not all frozen).
STARTUP_MODULES = (
    "encodings",
    "encodings.utf_8",
    "encodings.ascii",
    "encodings.latin_1",
    "runpy",
)
#: Modules the interpreter has frozen in under another name (importlib puts them in place).
FROZEN_AS = {
    "importlib._bootstrap": "_frozen_importlib",
    "importlib._bootstrap_external": "_frozen_importlib_external",
}
_EXTENSION = ".so"  # how an extension module is named in the scratch tree, for any host
#: The interpreter finds its prefix by this module's file (os.py or os.pyc) in the stdlib
#: directory; frozen in, it is never read.
LANDMARK = "os"


def stdlib_directory(version: str) -> str:
    return f"usr/lib/python{version}"


class PrunedStdlib:
    """Withholds the stdlib from the layers and copies the modules of `path` on the way;
    `finish` writes the modules and extension modules the image's programs import."""

    def __init__(self, spec: ReducedStdlib, version: str, epoch: int, what: str) -> None:
        self.spec = spec
        self.version = version
        self.epoch = epoch
        self.what = what
        self.directory = stdlib_directory(version)
        self.extensions = f"{self.directory}/lib-dynload"
        self._path = [p.strip("/") for p in spec.path]
        self._scratch = Path(tempfile.mkdtemp(prefix="osbuilder-stdlib-"))
        #: The stdlib's directories and extension modules as the root layer had them
        #: (an extension module by its name in the scratch tree).
        self._withheld: dict[str, tarfile.TarInfo] = {}

    def take(self, info: tarfile.TarInfo, data: IO[bytes] | None) -> IO[bytes] | None:
        """Pass an entry's data through, keeping a copy of a module of `path`."""
        name = info.name
        if data is None or not info.isfile() or not name.endswith(".py"):
            return data
        if not any(name.startswith(f"{directory}/") for directory in self._path):
            return data
        source = data.read()
        self._keep(name, source)
        return io.BytesIO(source)

    def withholds(self, info: tarfile.TarInfo, data: IO[bytes] | None) -> bool:
        """Whether the entry is part of the stdlib (kept aside here, not for the layer)."""
        name = info.name
        if name != self.directory and not name.startswith(f"{self.directory}/"):
            return False
        if info.isdir():
            self._withheld[name] = info
        elif data is not None and info.isfile() and name.endswith(".py"):
            self._keep(name, data.read())
        elif data is not None and info.isfile() and posixpath.dirname(name) == self.extensions:
            module = extension_module(posixpath.basename(name))
            if module is not None:
                self._withheld[f"{self.extensions}/{module}{_EXTENSION}"] = info
                self._keep(f"{self.extensions}/{module}{_EXTENSION}", data.read())
        return True

    def _keep(self, name: str, data: bytes) -> None:
        path = self._scratch / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def finish(self, layer: LayerWriter) -> None:
        """Add the modules' .pyc files and the extension modules used, with their
        directories, sorted."""
        if self.directory not in self._withheld:
            raise UserError(
                f"{self.what}: 'stdlib' found no /{self.directory} in the image: "
                f"its packages bring no Python {self.version}"
            )
        modules, extensions = self.find()
        files: dict[str, tuple[tarfile.TarInfo, bytes]] = {}
        for name, data in self.compile(modules).items():
            files[name] = (file_info(name, len(data), 0o644, self.epoch), data)
        for module in extensions:
            scratch_name = f"{self.extensions}/{module}{_EXTENSION}"
            info = self._withheld[scratch_name]
            files[info.name] = (info, (self._scratch / scratch_name).read_bytes())
        directories = {self.directory, self.extensions}
        for name in files:
            parent = posixpath.dirname(name)
            while parent != self.directory:
                directories.add(parent)
                parent = posixpath.dirname(parent)
        for name in sorted([*directories, *files]):
            if name in files:
                info, data = files[name]
                layer.add(info, io.BytesIO(data))
            else:
                layer.add(self._withheld.get(name) or dir_info(name, 0o755, self.epoch))

    def find(self) -> tuple[dict[str, Path], list[str]]:
        """The pure-Python modules of the stdlib that `modules` import (by name: their
        source in the scratch tree), and the extension modules (by name)."""
        stdlib = self._scratch / self.directory
        extensions = self._scratch / self.extensions
        finder = ModuleFinder(
            path=[*(str(self._scratch / p) for p in self._path), str(stdlib), str(extensions)],
            excludes=self.spec.exclude,
        )
        for name in (*STARTUP_MODULES, LANDMARK):
            self._require(finder, name)
        for name in self.spec.modules:
            for below in self._package_modules(finder, name):
                finder.import_hook(below)
        found: dict[str, Path] = {}
        found_extensions: list[str] = []
        for name, module in sorted(finder.modules.items()):
            file = getattr(module, "__file__", None)
            frozen = FrozenImporter.find_spec(FROZEN_AS.get(name, name)) is not None
            if file is None or (frozen and name != LANDMARK):
                continue  # built in, or frozen in: never read from a file
            path = Path(file)
            if path.parent == extensions:
                found_extensions.append(name)
            elif path.is_relative_to(stdlib):
                found[name] = path
        return found, found_extensions

    def _require(self, finder: ModuleFinder, name: str) -> Module:
        """The finder's module `name` (with what it imports); it must be in the image."""
        with contextlib.suppress(ImportError):
            finder.import_hook(name)
        module = finder.modules.get(name)
        if module is None:
            places = ", ".join([*self.spec.path, f"/{self.directory}"])
            raise UserError(f"{self.what}: 'stdlib': the image has no module {name!r} in {places}")
        return module

    def _package_modules(self, finder: ModuleFinder, name: str) -> Iterator[str]:
        """`name`, and every module below it when it is a package."""
        module = self._require(finder, name)
        yield name
        for directory in getattr(module, "__path__", None) or []:
            for source in sorted(Path(directory).rglob("*.py")):
                parts = source.relative_to(directory).with_suffix("").parts
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                if parts:
                    yield ".".join((name, *parts))

    def compile(self, modules: dict[str, Path]) -> dict[str, bytes]:
        """The modules' sourceless .pyc files, by their paths in the image
        (usr/lib/python3.11/json/decoder.pyc)."""
        stdlib = self._scratch / self.directory
        sources = Path(tempfile.mkdtemp(prefix="osbuilder-stdlib-compile-"))
        try:
            for path in modules.values():
                target = sources / path.relative_to(stdlib)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            # Without docstrings and asserts (-OO): nothing reads the stdlib's docstrings,
            # and the init holds 0.35 MB less once it has imported what it runs.
            compiled = compile_tree(sources, f"/{self.directory}", optimize=2)
        finally:
            shutil.rmtree(sources, ignore_errors=True)
        return {f"{self.directory}/{_sourceless(name)}": data for name, data in compiled.items()}

    def discard(self) -> None:
        shutil.rmtree(self._scratch, ignore_errors=True)


def extension_module(filename: str) -> str | None:
    """The module an extension file of lib-dynload holds (_ctypes.cpython-311-x86_64-linux-
    gnu.so: _ctypes), whatever architecture it was built for; None for other files."""
    if not filename.endswith(".so"):
        return None
    module = filename.split(".", 1)[0]
    return module or None


def _sourceless(compiled: str) -> str:
    """json/__pycache__/decoder.cpython-311.opt-2.pyc -> json/decoder.pyc"""
    directory = posixpath.dirname(posixpath.dirname(compiled))
    module = posixpath.basename(compiled).split(".", 1)[0] + ".pyc"
    return posixpath.join(directory, module)
