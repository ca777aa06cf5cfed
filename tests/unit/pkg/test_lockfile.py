"""build.lock, the format: written sorted, read back equal, and every damage a hand edit,
a merge or a cut-short write can do reported at its line with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from osbuilder.oci.platform import SUPPORTED_ARCHES
from osbuilder.pkg.apt import archives_for, selection
from osbuilder.pkg.debian import Mirror, mmdebstrap_command
from osbuilder.pkg.lockfile import (
    LOCK_FILE,
    LockedPackage,
    LockedSource,
    LockInvalid,
    PackageLock,
    format_lock,
    parse_lock,
    read_lock,
)
from osbuilder.pkg.recipe import DebianRoot
from tests.unit.pkg.test_pkg import RECIPES

DIGEST = "sha256:" + "ab" * 32
PATH = Path("pkg/foo") / LOCK_FILE


def package(architecture: str, name: str, version: str = "1.0-1") -> LockedPackage:
    own = "all" if name.endswith("-data") else architecture
    return LockedPackage(
        architecture,
        name,
        version,
        own,
        "bookworm",
        DIGEST,
        f"pool/main/{name[0]}/{name}/{name}_{version}_{own}.deb",
    )


LOCK = PackageLock(
    ("extract", "foo"),
    tuple(
        LockedSource(a, "bookworm", "http://127.0.0.1/debian", "2025-05-17T09:13:53Z")
        for a in ("amd64", "arm64")
    ),
    tuple(sorted(package(a, n) for a in ("amd64", "arm64") for n in ("libfoo", "foo", "foo-data"))),
)


def test_a_lock_reads_back_as_written_and_sorted() -> None:
    text = format_lock(LOCK, "pkg/foo")
    assert parse_lock(text, PATH) == LOCK
    lines = text.splitlines()
    packages = [line for line in lines if line.startswith(("amd64 ", "arm64 "))]
    assert packages == sorted(packages) and len(packages) == 6
    assert lines[-1] == "end" and "osbuilder pkg lock pkg/foo" in lines[1]


def test_replacing_one_architecture_keeps_the_other() -> None:
    newer = [package("amd64", "foo", "2.0-1")]
    source = LockedSource("amd64", "bookworm", "http://127.0.0.1/debian", "2026-01-01T00:00:00Z")
    replaced = LOCK.replace_architecture("amd64", [source], newer)
    assert replaced.packages_for("amd64") == newer
    assert replaced.packages_for("arm64") == LOCK.packages_for("arm64")
    assert [s.architecture for s in replaced.sources] == ["amd64", "arm64"]


FIX = "run `osbuilder pkg lock pkg/foo` to write it anew"


DAMAGE = {
    "version": (
        ("osbuilder-pkg-lock 1", "osbuilder-pkg-lock 9"),
        3,
        "not an osbuilder package lock (expected `osbuilder-pkg-lock 1`)",
    ),
    "truncated": (("\nend\n", "\n"), 13, "no closing `end` line: the lock was cut short"),
    "conflict": (
        ("amd64 foo ", "<<<<<<< ours\namd64 foo "),
        7,
        "a merge conflict is left in the lock",
    ),
    "digest": ((DIGEST, "sha256:1234"), 7, "'sha256:1234' is not a sha256:HEX digest"),
    "suite": ((" bookworm sha256", " sid sha256"), 7, "suite sid has no source line for amd64"),
    "fields": (
        ("_amd64.deb", "_amd64.deb extra"),
        7,
        "a package line is `ARCH NAME VERSION PACKAGE-ARCH SUITE sha256:HEX FILENAME` "
        "(found 8 fields)",
    ),
    "twice": (("amd64 libfoo", "amd64 foo"), 9, "foo is locked twice for amd64"),
    "arch": (
        ("1.0-1 amd64 bookworm", "1.0-1 arm64 bookworm"),
        7,
        "a arm64 package in the amd64 closure",
    ),
    "request": (
        ("request extract foo", "request extract"),
        4,
        "`request` needs a variant and at least one package",
    ),
    "after-end": (("end\n", "end\namd64 x\n"), 14, "text after the closing `end` line"),
}


@pytest.mark.parametrize(("edit", "line", "message"), DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_lock_is_an_error_at_its_line(
    edit: tuple[str, str], line: int, message: str
) -> None:
    text = format_lock(LOCK, "pkg/foo").replace(*edit, 1)
    with pytest.raises(LockInvalid) as caught:
        parse_lock(text, PATH)
    assert str(caught.value) == f"{PATH}:{line}: {message}; {FIX}"


def test_a_lock_cut_mid_line_is_an_error() -> None:
    with pytest.raises(LockInvalid, match=r":12: the file ends in the middle of a line"):
        parse_lock(format_lock(LOCK, "pkg/foo")[:-10], PATH)


def test_a_lock_that_is_not_text_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(LockInvalid, match=r":1: not UTF-8 text; run `osbuilder pkg lock "):
        read_lock(tmp_path)
    assert read_lock(tmp_path / "missing") is None


def test_every_recipe_with_debian_packages_is_locked_for_both_architectures() -> None:
    for directory in RECIPES:
        lock = read_lock(directory)
        assert lock is not None, f"{directory} has no {LOCK_FILE}: run osbuilder pkg lock"
        assert lock.architectures == list(SUPPORTED_ARCHES), directory


def test_default_archives_are_mmdebstraps() -> None:
    assert [(a.url, a.suite) for a in archives_for("bookworm", None)] == [
        ("http://deb.debian.org/debian", "bookworm"),
        ("http://deb.debian.org/debian", "bookworm-updates"),
        ("http://security.debian.org/debian-security", "bookworm-security"),
    ]
    assert [a.suite for a in archives_for("sid", None)] == ["sid"]
    [snapshot] = archives_for("bookworm", "http://127.0.0.1/archive/debian/20250520T000000Z/")
    assert snapshot.url == "http://127.0.0.1/archive/debian/20250520T000000Z"


def test_selection_follows_the_variant() -> None:
    assert selection("extract", ["foo"], "bookworm", "arm64") == ["foo"]
    essential = selection("essential", ["ca-certificates"], "bookworm", "arm64")
    assert essential == [
        "?narrow(?or(?archive(^bookworm$),?codename(^bookworm$)),?architecture(arm64),?essential)",
        "ca-certificates",
    ]
    required = selection("required", [], "bookworm", "amd64")
    assert any("?priority(required)" in argument for argument in required) and "apt" in required


def test_a_locked_build_keeps_the_archives_in_the_images_sources_list() -> None:
    """The repository of checked .debs is a temporary place: the image names the archives,
    written by the last hook that runs for the variant (extract runs no customize hooks)."""
    mirror = Mirror(lines=("deb [trusted=yes] copy:///tmp/x ./",), sources_list="deb U S main\n")
    for variant, stage in (("extract", "extract"), ("essential", "customize")):
        root = DebianRoot(variant=variant, packages=["foo"])  # type: ignore[arg-type]
        command = mmdebstrap_command(root, "amd64", "-", mirror)
        [hook] = [c for c in command if c.startswith(f"--{stage}-hook=") and "sources" in c]
        assert "'deb U S main\n'" in hook and hook.endswith('> "$1/etc/apt/sources.list"')
        assert command[-1] == "deb [trusted=yes] copy:///tmp/x ./"
