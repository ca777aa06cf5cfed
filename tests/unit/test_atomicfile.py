"""Files (outputs, the store's files) appear complete or not at all."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from osbuilder.atomicfile import atomic_output


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
