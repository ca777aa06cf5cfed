"""`stdlib:` recipes: the standard library reduced to what the image's programs import.

Built here from this Python's own standard library (the same minor version as the
image's, as `bytecode` requires) and the repository's guest code, exactly as a package
build feeds them from the Debian packages' stream; then the interpreter runs with that
reduced stdlib as its whole standard library, as in the init image.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import sysconfig
import tarfile
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

import pytest

from osbuilder.errors import UserError
from osbuilder.oci.imagewriter import new_layer
from osbuilder.oci.store import ContentStore
from osbuilder.pkg.recipe import ReducedStdlib, load_recipe
from osbuilder.pkg.stdlib import PrunedStdlib, extension_module

REPO = Path(__file__).resolve().parents[3]
GUEST = REPO / "osbuilder/guest"
VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
EPOCH = 1704067200
STDLIB = f"usr/lib/python{VERSION}"
DIST_PACKAGES = "usr/lib/python3/dist-packages"


def entry(name: str, data: bytes | None = None) -> tuple[tarfile.TarInfo, io.BytesIO | None]:
    info = tarfile.TarInfo(name)
    if data is None:
        info.type = tarfile.DIRTYPE
        return info, None
    info.size = len(data)
    return info, io.BytesIO(data)


def tree(root: Path, under: str) -> Iterator[tuple[tarfile.TarInfo, io.BytesIO | None]]:
    """The files below `root` as the entries of a layer stream, named below `under`."""
    yield entry(under)
    for path in sorted(root.rglob("*")):
        if "__pycache__" in path.parts or path.is_symlink():
            continue
        name = f"{under}/{path.relative_to(root).as_posix()}"
        yield entry(name, None if path.is_dir() else path.read_bytes())


def host_stdlib() -> Iterator[tuple[tarfile.TarInfo, io.BytesIO | None]]:
    """This Python's standard library, as the image has Debian's: lib-dynload inside."""
    yield from tree(Path(sysconfig.get_path("stdlib")), STDLIB)
    dynload = Path(sysconfig.get_path("platstdlib")) / "lib-dynload"
    if dynload.parent != Path(sysconfig.get_path("stdlib")):
        yield from tree(dynload, f"{STDLIB}/lib-dynload")


def build(spec: ReducedStdlib, store: ContentStore) -> dict[str, bytes | None]:
    """Stream the stdlib and the guest through PrunedStdlib; the entries it writes."""
    stdlib = PrunedStdlib(spec, VERSION, EPOCH, "t/build.yml")
    try:
        passed = []
        for info, data in [
            *host_stdlib(),
            entry(
                f"{DIST_PACKAGES}/osbuilder/__init__.py",
                (REPO / "osbuilder/__init__.py").read_bytes(),
            ),
            *tree(GUEST, f"{DIST_PACKAGES}/osbuilder/guest"),
        ]:
            if not stdlib.withholds(info, data):
                kept = stdlib.take(info, data)
                passed.append(info.name)
                assert kept is None or kept.read() == (data.getvalue() if data else b"")
        assert not [name for name in passed if name.startswith(STDLIB)]
        with new_layer(store) as layer:
            stdlib.finish(layer)
    finally:
        stdlib.discard()
    assert layer.result is not None
    blob = store.read_blob(layer.result.descriptor.digest)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as written:
        return {
            member.name: (written.extractfile(member).read() if member.isfile() else None)  # type: ignore[union-attr]
            for member in written
        }


def init_spec() -> ReducedStdlib:
    spec = load_recipe(REPO / "pkg/init").recipe.stdlib
    assert spec is not None
    return spec


@pytest.fixture(scope="module")
def init_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with the init recipe's reduced stdlib and the guest's code."""
    base = tmp_path_factory.mktemp("stdlib")
    entries = build(init_spec(), ContentStore(base / "store"))
    root = base / "root"
    for name, data in entries.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        if data is None:
            (root / name).mkdir(exist_ok=True)
        else:
            (root / name).write_bytes(data)
    guest = root / DIST_PACKAGES / "osbuilder"
    guest.mkdir(parents=True)
    (guest / "__init__.py").write_bytes((REPO / "osbuilder/__init__.py").read_bytes())
    for source in sorted(GUEST.glob("*.py")):
        (guest / "guest").mkdir(exist_ok=True)
        (guest / "guest" / source.name).write_bytes(source.read_bytes())
    return root


def run_python(root: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """The image's interpreter, as /init starts it, with nothing but the image's stdlib."""
    environment = {
        "PYTHONHOME": str(root / "usr"),  # as if installed in the image: /usr
        "PYTHONPATH": str(root / DIST_PACKAGES),
        "PYTHONHASHSEED": "0",
    }
    return subprocess.run(
        [os.path.realpath(sys.executable), "-S", "-s", "-P", *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_module_of_the_init_imports_from_the_reduced_stdlib(init_image: Path) -> None:
    """A module of the guest that imports what the image lacks fails here, not at boot.
    The interpreter's own paths are the image's: its stdlib directory and lib-dynload."""
    modules = [f"osbuilder.guest.{path.stem}" for path in sorted(GUEST.glob("*.py"))]
    check = f"""
import sys
for name in {modules!r}:
    __import__(name)
from osbuilder.guest.ctl import main  # what osbuilder-ctl runs, with argparse
assert sys.getfilesystemencoding() == "utf-8"
specs = [getattr(m, "__spec__", None) for m in list(sys.modules.values())]
origins = [s.origin for s in specs if s is not None]
print("\\n".join(sorted(o for o in origins if o not in ("built-in", "frozen"))))
"""
    result = run_python(init_image, "-c", check)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # nor a warning of a missing prefix or landmark
    files = [f for f in result.stdout.splitlines() if f]
    stdlib = [f for f in files if f.startswith(f"{init_image / STDLIB}/")]
    guest = [f for f in files if f.startswith(f"{init_image / DIST_PACKAGES}/")]
    assert stdlib and guest and sorted(stdlib + guest) == files
    assert all(f.endswith((".pyc", ".so")) for f in stdlib)  # compiled, no source


def test_the_init_and_osbuilder_ctl_start_with_the_reduced_stdlib(init_image: Path) -> None:
    """Both run with -m, through runpy: frozen in, but importing what is not."""
    result = run_python(init_image, "-m", "osbuilder.guest.ctl", "--help")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
    init = run_python(init_image, "-m", "osbuilder.guest")
    assert init.returncode == 2 and "is the init (PID 1)" in init.stderr, init.stderr


def test_the_stdlib_holds_only_what_is_imported(init_image: Path) -> None:
    stdlib = init_image / STDLIB
    names = {p.relative_to(stdlib).as_posix() for p in stdlib.rglob("*") if p.is_file()}
    modules = {name for name in names if not name.startswith("lib-dynload/")}
    assert {
        "json/decoder.pyc",
        "fnmatch.pyc",
        "encodings/utf_8.pyc",
        "importlib/_abc.pyc",
    } <= modules
    assert all(name.endswith(".pyc") for name in modules)
    # excluded by the recipe, frozen into the interpreter, or never imported (pathlib and
    # what it imports: the guest has its own paths, osbuilder/guest/fspath.py)
    for absent in (
        "doctest.pyc",
        "tarfile.pyc",
        "runpy.pyc",
        "importlib/_bootstrap.pyc",
        "pathlib.pyc",
        "urllib/parse.pyc",
        "ipaddress.pyc",
    ):
        assert absent not in modules
    assert not [n for n in modules if n.startswith(("email/", "asyncio/", "unittest/", "xml/"))]
    assert "os.pyc" in modules  # the landmark of the prefix (frozen in, never read)
    dynload = sorted(p.name for p in (stdlib / "lib-dynload").iterdir())
    # The libraries each extension loads stay only if the recipe's `programs` names it.
    debian = load_recipe(REPO / "pkg/init").recipe.debian
    programs = (debian.programs if debian is not None else None) or []
    unlisted = [
        name
        for name in dynload
        if not any(fnmatch(f"{STDLIB}/lib-dynload/{name}", glob) for glob in programs)
    ]
    assert not unlisted, f"add these to pkg/init/build.yml's programs: {unlisted}"
    assert [extension_module(name) for name in dynload] == [
        "_ctypes",
        "_json",
        "_lzma",
        "_typing",
        "resource",
    ]


def test_the_reduced_stdlib_is_the_same_bytes_every_build(tmp_path: Path) -> None:
    spec = ReducedStdlib(modules=["osbuilder.guest.cmdline"], path=["/" + DIST_PACKAGES])
    first = build(spec, ContentStore(tmp_path / "one"))
    second = build(spec, ContentStore(tmp_path / "two"))
    assert first == second and f"{STDLIB}/re/_parser.pyc" in first


def test_an_extension_module_keeps_its_name_for_any_architecture() -> None:
    assert extension_module("_ctypes.cpython-311-aarch64-linux-gnu.so") == "_ctypes"
    assert extension_module("resource.cpython-311-x86_64-linux-gnu.so") == "resource"
    assert extension_module("README") is None


def test_a_module_not_in_the_image_is_one_clear_error(tmp_path: Path) -> None:
    spec = ReducedStdlib(modules=["osbuilder.nonesuch"], path=["/" + DIST_PACKAGES])
    with pytest.raises(
        UserError, match=r"t/build.yml: 'stdlib': the image has no module 'osbuilder.nonesuch'"
    ):
        build(spec, ContentStore(tmp_path))
    stdlib = PrunedStdlib(spec, VERSION, EPOCH, "t/build.yml")
    try:
        with (
            pytest.raises(UserError, match=r"found no /usr/lib/python3\.\d+ in the image"),
            new_layer(ContentStore(tmp_path / "empty")) as layer,
        ):
            stdlib.finish(layer)
    finally:
        stdlib.discard()


def test_stdlib_needs_the_python_version_of_bytecode(tmp_path: Path) -> None:
    (tmp_path / "build.yml").write_text(
        "image: osbuilder/t\nfiles: [{path: /a, contents: x}]\nstdlib: {modules: [m]}\n"
    )
    with pytest.raises(UserError, match="'stdlib' needs 'bytecode'"):
        load_recipe(tmp_path)
