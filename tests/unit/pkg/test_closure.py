"""Which shared libraries a recipe's programs load, and what goes because none does."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import pytest

from osbuilder.errors import UserError
from osbuilder.pkg.closure import MissingLibrary, prune_root
from osbuilder.pkg.elf import read_elf
from osbuilder.pkg.layers import Dropper
from osbuilder.pkg.recipe import RecipeInvalid, load_recipe
from osbuilder.pkg.roottree import RootTree, scan_root
from tests.unit.pkg.elffiles import EM_AARCH64, elf_file

LD_SO = "/lib64/ld-linux-x86-64.so.2"
LIB = "usr/lib/x86_64-linux-gnu"


class Symlink(str):
    """A tree entry that is a symlink to this target."""


class HardLink(str):
    """A tree entry that is a hard link to this name."""


Entry = bytes | Symlink | HardLink | None  # None: a directory


def tree_of(entries: dict[str, Entry], drop: tuple[str, ...] = ()) -> RootTree:
    """The tree of a tar holding `entries` (as mmdebstrap writes one: './'-prefixed)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, entry in entries.items():
            info = tarfile.TarInfo(f"./{name}")
            if entry is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(entry, Symlink):
                info.type, info.linkname = tarfile.SYMTYPE, str(entry)
                tar.addfile(info)
            elif isinstance(entry, HardLink):
                info.type, info.linkname = tarfile.LNKTYPE, f"./{entry}"
                tar.addfile(info)
            else:
                info.size = len(entry)
                tar.addfile(info, io.BytesIO(entry))
    buffer.seek(0)
    with tarfile.open(fileobj=buffer, mode="r:") as tar:
        return scan_root(tar, Dropper(drop))


def program(*needed: str, **facts: str) -> bytes:
    return elf_file(needed=needed, interpreter=LD_SO, shared=False, **facts)


def library(*needed: str, **facts: str) -> bytes:
    return elf_file(needed=needed, **facts)


def base() -> dict[str, Entry]:
    """glibc as Debian lays it out (not merged-/usr): the loader, libc, libm, libgcc_s."""
    return {
        "lib": None,
        "lib64/ld-linux-x86-64.so.2": Symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
        "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2": library(),
        "lib/x86_64-linux-gnu/libc.so.6": library("ld-linux-x86-64.so.2"),
        "lib/x86_64-linux-gnu/libm.so.6": library("libc.so.6"),
        "lib/x86_64-linux-gnu/libgcc_s.so.1": library("libc.so.6"),
        "etc/ld.so.conf.d/x86_64-linux-gnu.conf": b"# Multiarch support\n"
        b"/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n",
    }


def test_only_what_the_programs_load_stays_with_the_symlinks_to_it() -> None:
    tree = tree_of(
        {
            **base(),
            "usr/bin/server": program("libssl.so.3", "libc.so.6"),
            f"{LIB}/libssl.so.3": library("libcrypto.so.3", "libc.so.6"),
            f"{LIB}/libcrypto.so.3": library("libc.so.6"),
            f"{LIB}/libdb-5.3.so": library("libc.so.6"),
            f"{LIB}/libsqlite3.so.0": Symlink("libsqlite3.so.0.8.6"),
            f"{LIB}/libsqlite3.so.0.8.6": library("libm.so.6", "libc.so.6"),
            f"{LIB}/libsqlite3.so": Symlink("libsqlite3.so.0"),
            f"{LIB}/libcrun.a": b"!<arch>\n",  # no ELF: `drop` is what removes it
        }
    )
    pruning = prune_root(tree, ["usr/bin/server"], [], "pkg/x/build.yml")
    assert pruning.removed == {
        f"{LIB}/libdb-5.3.so",
        f"{LIB}/libsqlite3.so.0",
        f"{LIB}/libsqlite3.so.0.8.6",
        f"{LIB}/libsqlite3.so",
        "lib/x86_64-linux-gnu/libm.so.6",
    }
    assert pruning.libraries == 3
    assert pruning.dependents == 0


def test_glibc_keeps_the_unwinder_it_loads_itself() -> None:
    """pthread_exit and pthread_cancel abort without libgcc_s, which no ELF header names."""
    tree = tree_of({**base(), "usr/bin/server": program("libc.so.6")})
    removed = prune_root(tree, ["usr/bin/server"], [], "x").removed
    assert "lib/x86_64-linux-gnu/libgcc_s.so.1" not in removed


def test_programs_and_plugins_that_needed_a_library_that_went_go_too() -> None:
    tree = tree_of(
        {
            **base(),
            "usr/sbin/dhcpcd": program("libc.so.6"),
            "usr/sbin/useradd": program("libsemanage.so.2", "libc.so.6"),
            "bin/run-parts": program("libc.so.6"),
            f"{LIB}/libsemanage.so.2": library("libc.so.6"),
            f"{LIB}/dhcpcd/dev/udev.so": library("libudev.so.1", "libc.so.6"),
            f"{LIB}/libudev.so.1": library("libc.so.6"),
            # What needed a program's library that went, through another library.
            "usr/bin/chfn": program("libpam_misc.so.0", "libc.so.6"),
            f"{LIB}/libpam_misc.so.0": library("libpam.so.0", "libc.so.6"),
            f"{LIB}/libpam.so.0": library("libc.so.6"),
        }
    )
    pruning = prune_root(tree, ["usr/sbin/dhcpcd"], [], "x")
    assert pruning.removed == {
        "usr/sbin/useradd",
        f"{LIB}/libsemanage.so.2",
        f"{LIB}/dhcpcd/dev/udev.so",
        f"{LIB}/libudev.so.1",
        "usr/bin/chfn",
        f"{LIB}/libpam_misc.so.0",
        f"{LIB}/libpam.so.0",
        "lib/x86_64-linux-gnu/libm.so.6",
    }
    assert "bin/run-parts" not in pruning.removed  # it still loads: it stays
    assert pruning.dependents == 3


def test_dlopen_keeps_libraries_no_header_names_with_their_own_closure() -> None:
    tree = tree_of(
        {
            **base(),
            "usr/bin/server": program("libc.so.6"),
            "lib/x86_64-linux-gnu/libnss_compat.so.2": library("libnsl.so.2", "libc.so.6"),
            f"{LIB}/libnsl.so.2": library("libc.so.6"),
            "lib/x86_64-linux-gnu/libnss_hesiod.so.2": library("libc.so.6"),
        }
    )
    removed = prune_root(tree, ["usr/bin/server"], ["lib/*/libnss_compat*"], "x").removed
    assert removed == {"lib/x86_64-linux-gnu/libnss_hesiod.so.2", "lib/x86_64-linux-gnu/libm.so.6"}


def test_runpath_and_rpath_are_searched_as_the_loader_does() -> None:
    """DT_RUNPATH ($ORIGIN: the object's directory) serves the object itself; DT_RPATH
    also serves the libraries it loads."""
    entries = {
        **base(),
        "usr/bin/app": program("libapp.so.1", "libc.so.6", runpath="$ORIGIN/../lib/app"),
        "usr/lib/app/libapp.so.1": library("libc.so.6"),
        "usr/bin/tool": program("libtool.so.1", "libc.so.6", rpath="/opt/tool/lib"),
        "opt/tool/lib/libtool.so.1": library("libhelper.so.1", "libc.so.6"),
        "opt/tool/lib/libhelper.so.1": library("libc.so.6"),
    }
    assert prune_root(tree_of(entries), ["usr/bin/*"], [], "x").removed == {
        "lib/x86_64-linux-gnu/libm.so.6"
    }
    # The same library with DT_RUNPATH instead: what it loads is not looked for in its
    # loader's directories.
    entries["usr/bin/tool"] = program("libtool.so.1", "libc.so.6", runpath="/opt/tool/lib")
    with pytest.raises(MissingLibrary, match=r"usr/bin/tool needs libhelper\.so\.1"):
        prune_root(tree_of(entries), ["usr/bin/*"], [], "x")


def test_a_library_of_another_machine_is_passed_over() -> None:
    tree = tree_of(
        {
            **base(),
            "usr/local/lib/x86_64-linux-gnu/libz.so.1": library(machine=EM_AARCH64),
            f"{LIB}/libz.so.1": library("libc.so.6"),
            "usr/bin/gzip": program("libz.so.1", "libc.so.6"),
        }
    )
    removed = prune_root(tree, ["usr/bin/gzip"], [], "x").removed
    assert "usr/local/lib/x86_64-linux-gnu/libz.so.1" in removed
    assert f"{LIB}/libz.so.1" not in removed


def test_merged_usr_symlinks_and_hard_links_are_followed() -> None:
    tree = tree_of(
        {
            "usr/lib/x86_64-linux-gnu": None,
            "lib": Symlink("usr/lib"),
            "bin": Symlink("usr/bin"),
            "lib64/ld-linux-x86-64.so.2": Symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
            f"{LIB}/ld-linux-x86-64.so.2": library(),
            f"{LIB}/libc.so.6": library(),
            f"{LIB}/libacl.so.1.1": library("libc.so.6"),
            f"{LIB}/libacl.so.1": HardLink(f"{LIB}/libacl.so.1.1"),
            "usr/bin/getfacl": program("libacl.so.1", "libc.so.6"),
            "usr/bin/sh": Symlink("dash"),
            "usr/bin/dash": program("libc.so.6"),
        }
    )
    assert prune_root(tree, ["bin/sh", "bin/getfacl"], [], "x").removed == set()
    removed = prune_root(tree, ["bin/sh"], [], "x").removed
    assert removed == {f"{LIB}/libacl.so.1.1", f"{LIB}/libacl.so.1", "usr/bin/getfacl"}


def test_a_missing_library_fails_the_build_in_one_line_naming_program_and_library() -> None:
    entries = {
        **base(),
        "usr/bin/redis-server": program("libssl.so.3", "libc.so.6"),
        f"{LIB}/libssl.so.3": library("libcrypto.so.3", "libc.so.6"),
        f"{LIB}/libcrypto.so.3": library("libc.so.6"),
    }
    with pytest.raises(MissingLibrary) as missing:
        prune_root(
            tree_of(entries, drop=(f"{LIB}/libcrypto*",)),
            ["usr/bin/redis-server"],
            [],
            "pkg/redis/build.yml",
        )
    assert str(missing.value) == (
        "pkg/redis/build.yml: usr/bin/redis-server needs libcrypto.so.3 (for "
        f"{LIB}/libssl.so.3), which the recipe's 'drop' removes"
    )
    del entries[f"{LIB}/libcrypto.so.3"]
    with pytest.raises(MissingLibrary, match=r"\), which no package of the image provides$"):
        prune_root(tree_of(entries), ["usr/bin/redis-server"], [], "pkg/redis/build.yml")
    del entries["lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"]
    with pytest.raises(MissingLibrary, match=re.escape(f"needs {LD_SO},")):
        prune_root(tree_of(entries), ["usr/bin/redis-server"], [], "pkg/redis/build.yml")


def test_a_glob_that_matches_nothing_is_an_error() -> None:
    tree = tree_of({**base(), "usr/bin/server": program("libc.so.6")})
    with pytest.raises(UserError, match=r"'programs' names 'usr/bin/srever', which the image"):
        prune_root(tree, ["usr/bin/srever"], [], "x")
    with pytest.raises(UserError, match=r"'dlopen' names 'lib/\*/libnss_x\*'"):
        prune_root(tree, ["usr/bin/server"], ["lib/*/libnss_x*"], "x")


def test_scripts_among_the_programs_load_nothing() -> None:
    tree = tree_of(
        {**base(), "usr/bin/run.sh": b"#!/bin/sh\n", "usr/bin/dash": program("libc.so.6")}
    )
    removed = prune_root(tree, ["usr/bin/*"], [], "x").removed
    assert removed == {"lib/x86_64-linux-gnu/libm.so.6"}


def test_the_elf_facts_of_a_real_program() -> None:
    true = Path("/bin/true").resolve()
    with true.open("rb") as stream:
        found = read_elf(stream)
    assert found is not None
    assert "libc.so.6" in found.needed
    assert found.interpreter is not None and "ld-linux" in found.interpreter
    with Path("/etc/passwd").open("rb") as stream:
        assert read_elf(stream) is None


def test_dlopen_needs_programs(tmp_path: Path) -> None:
    (tmp_path / "build.yml").write_text(
        "image: osbuilder/x\ndebian:\n  packages: [dash]\n  dlopen: [lib/*/libnss_*]\n"
    )
    with pytest.raises(RecipeInvalid, match="give 'programs' too"):
        load_recipe(tmp_path)
