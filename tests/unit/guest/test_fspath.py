"""The guest's paths behave as pathlib's for what the init does with them."""

from __future__ import annotations

import pathlib

import pytest

from osbuilder.guest.fspath import Path


@pytest.mark.parametrize(
    ("start", "joined"),
    [("/", "containers"), ("/run/", "osbuilder//control.sock"), ("a/./b", "c"), (".", "x")],
)
def test_joining_and_the_parts_of_a_path_are_pathlibs(start: str, joined: str) -> None:
    ours, theirs = Path(start) / joined, pathlib.Path(start) / joined
    assert str(ours) == str(theirs)
    assert (ours.name, ours.suffix, str(ours.parent)) == (
        theirs.name,
        theirs.suffix,
        str(theirs.parent),
    )
    assert str(Path(start).parent) == str(pathlib.Path(start).parent)
    assert ours == theirs  # either kind of path names the same file
    assert Path("/") / "/proc" == pathlib.Path("/proc")  # an absolute part starts over


def test_suffix_and_with_name() -> None:
    assert Path("/lib/modules/virtio_net.ko.xz").suffix == ".xz"
    assert Path("/var/log/.hidden").suffix == ""
    assert str(Path("/var/log/redis.log").with_name("redis.log.1")) == "/var/log/redis.log.1"


def test_files_and_directories(tmp_path: pathlib.Path) -> None:
    base = Path(tmp_path)
    (base / "a/b").mkdir(parents=True)
    (base / "a/b").mkdir(parents=True, exist_ok=True)
    with pytest.raises(FileExistsError):
        (base / "a/b").mkdir()
    (base / "a/b/c.log").write_bytes(b"one\n")
    with pytest.raises(FileExistsError):  # exist_ok is for directories only, as pathlib's
        (base / "a/b/c.log").mkdir(exist_ok=True)
    assert (base / "a/b/c.log").read_text() == "one\n"
    assert (base / "a/b/c.log").read_bytes() == b"one\n"
    assert (base / "a/b/c.log").is_file() and (base / "a/b").is_dir()
    assert sorted(base.glob("*")) == [base / "a"]
    assert sorted((base / "a/b").iterdir()) == [base / "a/b/c.log"]
    assert list((base / "nonesuch").glob("*")) == []
    (base / "a/b/c.log").unlink()
    (base / "a/b/c.log").unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError):
        (base / "a/b/c.log").unlink()
    assert not (base / "a/b/c.log").exists()


def test_a_path_is_a_key_and_sorts_by_its_name() -> None:
    paths = {Path("/b"), Path("/a"), Path("/a/")}
    assert sorted(paths) == [Path("/a"), Path("/b")]
    assert repr(Path("/a")) == "Path('/a')"
