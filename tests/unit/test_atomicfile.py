"""Files (outputs, the store's files) appear complete or not at all."""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path

import pytest

from osbuilder.atomicfile import atomic_output, file_set, remove_abandoned


def test_the_file_appears_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "redis-initrd.img"
    with atomic_output(target) as out:
        out.write(b"complete")
        assert not target.exists()

    assert target.read_bytes() == b"complete"
    assert os.listdir(tmp_path) == ["redis-initrd.img"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_a_failure_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "redis.tar"
    with pytest.raises(KeyboardInterrupt), atomic_output(target) as out:
        out.write(b"half")
        raise KeyboardInterrupt

    assert os.listdir(tmp_path) == []


def test_a_failure_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "redis.tar"
    target.write_bytes(b"previous build")
    with pytest.raises(OSError), atomic_output(target) as out:
        out.write(b"half")
        raise OSError("disk full")

    assert target.read_bytes() == b"previous build"
    assert os.listdir(tmp_path) == ["redis.tar"]


def test_a_success_replaces_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "redis.tar"
    target.write_bytes(b"previous build")
    with atomic_output(target) as out:
        out.write(b"new build")

    assert target.read_bytes() == b"new build"


def test_an_explicit_mode_holds_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "index.json"
    umask = os.umask(0o077)
    try:
        with atomic_output(target, mode=0o644) as out:
            out.write(b"{}")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_file_set_appears_together_when_committed(tmp_path: Path) -> None:
    kernel, initrd = tmp_path / "r-kernel", tmp_path / "r-initrd.img"
    with file_set() as files:
        with files.create(kernel) as out:
            out.write(b"kernel")
        assert not kernel.exists()  # complete, but not before its companion
        with files.create(initrd) as out:
            out.write(b"initrd")
        assert [name for name in os.listdir(tmp_path) if not name.startswith(".")] == []
    assert sorted(os.listdir(tmp_path)) == ["r-initrd.img", "r-kernel"]
    assert kernel.read_bytes() == b"kernel" and initrd.read_bytes() == b"initrd"


def test_a_failure_in_a_file_set_leaves_every_previous_file(tmp_path: Path) -> None:
    kernel, initrd = tmp_path / "r-kernel", tmp_path / "r-initrd.img"
    kernel.write_bytes(b"old kernel")
    initrd.write_bytes(b"old initrd")
    with pytest.raises(OSError, match="No space"), file_set() as files:
        with files.create(kernel) as out:
            out.write(b"new kernel")
        with files.create(initrd) as out:
            out.write(b"half of the new")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert sorted(os.listdir(tmp_path)) == ["r-initrd.img", "r-kernel"]
    assert kernel.read_bytes() == b"old kernel" and initrd.read_bytes() == b"old initrd"


def test_a_failed_rename_removes_what_was_not_renamed(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    second.mkdir()
    (second / "in-the-way").write_bytes(b"")  # a non-empty directory cannot be replaced
    with pytest.raises(OSError), file_set() as files:
        for path in (first, second):
            with files.create(path) as out:
                out.write(b"data")
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]  # the rename before the failure stands
    assert first.read_bytes() == b"data"


def test_a_signal_right_after_the_file_is_created_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM and Ctrl-C raise wherever Python happens to be: here, as the file has just
    been created and before any code that would clean it up had a chance to run."""
    real_open = os.open

    def open_then_interrupted(path: str, flags: int, mode: int = 0o777) -> int:
        real_open(path, flags, mode)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "open", open_then_interrupted)
    with pytest.raises(KeyboardInterrupt), atomic_output(tmp_path / "r-initrd.img"):
        pass
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_what_a_killed_writer_left_is_removed_and_what_a_live_one_writes_is_not(
    tmp_path: Path,
) -> None:
    an_hour_ago = time.time() - 3600
    left = tmp_path / ".r-initrd.img.0badf00d.partial"  # its writer was killed an hour ago
    left.write_bytes(b"half an initrd")
    os.utime(left, (an_hour_ago, an_hour_ago))
    fresh = tmp_path / ".r-kernel.0ddba115.partial"  # just made: its lock may be coming
    foreign = tmp_path / ".download.partial"  # another tool's: never ours to remove
    foreign.write_bytes(b"")
    os.utime(foreign, (an_hour_ago, an_hour_ago))
    fresh.write_bytes(b"")
    (tmp_path / "r-cmdline").write_bytes(b"console=ttyS0")  # a finished output
    with file_set() as files, files.create(tmp_path / "r-tar") as out:
        out.write(b"being written")
        [writing] = tmp_path.glob(".r-tar.*.partial")
        os.utime(writing, (an_hour_ago, an_hour_ago))  # slow, but its writer is alive
        assert remove_abandoned(tmp_path) == 1
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [fresh.name, foreign.name, "r-cmdline", writing.name]
        )
    assert (tmp_path / "r-tar").read_bytes() == b"being written"


def test_an_exclusive_file_never_replaces_one_there(tmp_path: Path) -> None:
    key, pub = tmp_path / "signer.key", tmp_path / "signer.pub"
    pub.write_bytes(b"someone's public key")
    with pytest.raises(FileExistsError), file_set() as files:
        for path in (key, pub):
            with files.create(path, 0o600, exclusive=True) as out:
                out.write(b"new")
    # The key linked into place before the clash is taken back; the clash is untouched.
    assert sorted(os.listdir(tmp_path)) == ["signer.pub"]
    assert pub.read_bytes() == b"someone's public key"


def test_an_exclusive_file_appears_complete_with_its_mode(tmp_path: Path) -> None:
    key = tmp_path / "signer.key"
    with file_set() as files, files.create(key, 0o600, exclusive=True) as out:
        out.write(b"secret")
    assert os.listdir(tmp_path) == ["signer.key"]
    assert key.read_bytes() == b"secret"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.stat().st_nlink == 1  # the temporary name is gone


def test_without_hard_links_an_exclusive_file_is_renamed_after_a_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(source: str, target: str) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")  # as vfat answers

    monkeypatch.setattr(os, "link", no_links)
    with file_set() as files, files.create(tmp_path / "a", exclusive=True) as out:
        out.write(b"a")
    assert (tmp_path / "a").read_bytes() == b"a"
    with (
        pytest.raises(FileExistsError),
        file_set() as files,
        files.create(tmp_path / "a", exclusive=True) as out,
    ):
        out.write(b"again")
    assert os.listdir(tmp_path) == ["a"]
    assert (tmp_path / "a").read_bytes() == b"a"
