"""Layers unpacked once into the store's snapshots, checked, and reused by later builds."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from osbuilder.assemble.entry import Content
from osbuilder.assemble.snapshots import INDEX_FORMAT, LayerRef, Snapshots
from osbuilder.assemble.tree import TreeError


def tar_of(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class Blobs:
    """Layer blobs by digest; counts how often each is opened."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.opened: list[str] = []

    def add(self, tar: bytes, compress: bool = True, diff_id: str | None = "") -> LayerRef:
        blob = gzip.compress(tar, mtime=0) if compress else tar
        digest = sha256(blob)
        self.data[digest] = blob
        checked = sha256(tar) if diff_id == "" else diff_id
        return LayerRef(digest, "gzip" if compress else "", checked, f"layer {digest[:19]}")

    def open(self, digest: str) -> IO[bytes]:
        self.opened.append(digest)
        return io.BytesIO(self.data[digest])


def contents(snapshots: Snapshots, ref: LayerRef) -> dict[str, bytes]:
    snapshot = snapshots.layer(ref)
    return {m.name: Content(snapshot.path, m.size, m.offset).read_bytes() for m in snapshot.members}


def test_a_layer_is_inflated_once_and_its_files_read_from_the_snapshot(tmp_path: Path) -> None:
    blobs = Blobs()
    files = {"etc/hostname": b"box\n", "usr/bin/tool": b"\x7fELF" * 3000}
    ref = blobs.add(tar_of(files))
    assert contents(Snapshots(tmp_path, blobs.open), ref) == files
    # A later build (a new Snapshots) reads the index and never opens the blob again.
    assert contents(Snapshots(tmp_path, blobs.open), ref) == files
    assert blobs.opened == [ref.digest]
    hex_digest = ref.digest.removeprefix("sha256:")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"{hex_digest}.index",
        f"{hex_digest}.tar",
    ]
    assert (tmp_path / f"{hex_digest}.tar").read_bytes() == tar_of(files)


def _lying_config(blobs: Blobs) -> LayerRef:
    return blobs.add(tar_of({"a": b"1"}), diff_id=sha256(b"something else"))


def _truncated_blob(blobs: Blobs) -> LayerRef:
    ref = blobs.add(tar_of({"a": b"1" * 100_000}))
    blobs.data[ref.digest] = blobs.data[ref.digest][:-200]
    return ref


def _no_tar(blobs: Blobs) -> LayerRef:
    return blobs.add(b"\x00garbage" * 200 + b"\xff" * 512)  # inflates fine, then no tar


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (_lying_config, "its content is not the diff_id"),
        (_truncated_blob, "corrupt layer"),
        (_no_tar, "corrupt layer"),
    ],
    ids=["diff-id-mismatch", "truncated-blob", "no-tar"],
)
def test_a_bad_layer_is_refused_naming_it_and_nothing_is_kept(
    tmp_path: Path, make: Callable[[Blobs], LayerRef], problem: str
) -> None:
    blobs = Blobs()
    ref = make(blobs)
    with pytest.raises(TreeError, match=rf"layer {ref.digest[:19]}: {problem}"):
        Snapshots(tmp_path, blobs.open).layer(ref)
    assert list(tmp_path.iterdir()) == []


def test_a_snapshot_is_checked_against_the_diff_id_of_every_image_using_it(
    tmp_path: Path,
) -> None:
    blobs = Blobs()
    honest = blobs.add(tar_of({"a": b"1"}))
    Snapshots(tmp_path, blobs.open).layer(honest)
    lying = LayerRef(honest.digest, "gzip", sha256(b"other"), "image liar:1, layer x")
    with pytest.raises(TreeError, match="image liar:1, layer x: its content is not"):
        Snapshots(tmp_path, blobs.open).layer(lying)  # found through the index
    loaded = Snapshots(tmp_path, blobs.open)
    loaded.layer(honest)
    with pytest.raises(TreeError, match="image liar:1, layer x: its content is not"):
        loaded.layer(lying)  # already loaded for an honest image


def test_an_index_of_another_format_or_tar_is_made_again(tmp_path: Path) -> None:
    blobs = Blobs()
    files = {"a": b"1"}
    ref = blobs.add(tar_of(files))
    Snapshots(tmp_path, blobs.open).layer(ref)
    index = tmp_path / f"{ref.digest.removeprefix('sha256:')}.index"
    document = json.loads(index.read_text())
    index.write_text(json.dumps({**document, "format": INDEX_FORMAT + 1}))
    assert contents(Snapshots(tmp_path, blobs.open), ref) == files
    index.write_text(json.dumps({**document, "size": document["size"] + 512}))
    assert contents(Snapshots(tmp_path, blobs.open), ref) == files
    index.write_bytes(b"{not json")
    assert contents(Snapshots(tmp_path, blobs.open), ref) == files
    assert len(blobs.opened) == 4
    remade = json.loads(index.read_text())
    assert remade.pop("mtime") >= document.pop("mtime")  # of the tar made again
    assert remade == document


def test_a_snapshot_changed_in_place_is_made_again_not_read(tmp_path: Path) -> None:
    """Checked against its diff_id once, when made: a tar changed later (same size, as an
    editor or a disk tool might leave it) must not slip corrupt files into builds."""
    inner = {"lib/modules/6.1/dep": b"modules.dep\n"}
    files = {"etc/motd": b"hello\n", "kernel.tar": tar_of(inner)}
    blobs = Blobs()
    ref = blobs.add(tar_of(files))
    snapshot = Snapshots(tmp_path, blobs.open).layer(ref)
    member = next(m for m in snapshot.members if m.name == "kernel.tar")
    kernel_tar = Content(snapshot.path, member.size, member.offset)
    Snapshots(tmp_path, blobs.open).nested(kernel_tar, "k")
    with snapshot.path.open("r+b") as tar:  # same size, other bytes, a later mtime
        data = tar.read()
        tar.seek(0)
        tar.write(data.replace(b"hello", b"HELLO").replace(b"modules.dep", b"MODULES.DEP"))
    os.utime(snapshot.path, ns=(0, snapshot.path.stat().st_mtime_ns + 1_000_000))
    again = Snapshots(tmp_path, blobs.open)
    assert contents(again, ref) == files
    nested = again.nested(kernel_tar, "k")
    assert {m.name: Content(snapshot.path, m.size, m.offset).read_bytes() for m in nested} == inner
    assert blobs.opened == [ref.digest, ref.digest]


def test_prepare_unpacks_every_missing_layer_and_reports_the_first_failure(
    tmp_path: Path,
) -> None:
    blobs = Blobs()
    good = [blobs.add(tar_of({f"file{n}": bytes([n]) * 50_000})) for n in range(3)]
    snapshots = Snapshots(tmp_path, blobs.open)
    snapshots.prepare([*good, good[0]])
    assert sorted(blobs.opened) == sorted(ref.digest for ref in good)
    assert contents(snapshots, good[2]) == {"file2": b"\x02" * 50_000}

    wrong = blobs.add(tar_of({"x": b"x"}), diff_id=sha256(b"x"))
    garbage = blobs.add(b"\xff" * 4096, compress=False, diff_id=None)
    with pytest.raises(TreeError, match=f"layer {wrong.digest[:19]}: its content is not"):
        Snapshots(tmp_path / "again", blobs.open).prepare([good[0], wrong, garbage])


def test_a_tar_inside_a_layer_gets_an_index_of_its_own(tmp_path: Path) -> None:
    inner = {"lib/modules/6.1/kernel/fs/ext4.ko": b"module" * 1000, "lib/modules/6.1/dep": b"d"}
    blobs = Blobs()
    ref = blobs.add(tar_of({"kernel": b"bzImage" * 100, "kernel.tar": tar_of(inner)}))
    snapshots = Snapshots(tmp_path, blobs.open)
    snapshot = snapshots.layer(ref)
    member = next(m for m in snapshot.members if m.name == "kernel.tar")
    nested = snapshots.nested(Content(snapshot.path, member.size, member.offset), "k")
    read = {m.name: Content(snapshot.path, m.size, m.offset).read_bytes() for m in nested}
    assert read == inner
    assert (tmp_path / f"{snapshot.path.stem}.{member.offset}.index").is_file()


def test_builds_unpacking_one_layer_at_once_both_get_it_whole(tmp_path: Path) -> None:
    blobs = Blobs()
    files = {f"file{n}": bytes([n]) * 300_000 for n in range(20)}
    ref = blobs.add(tar_of(files))
    start = threading.Barrier(4)
    results: list[dict[str, bytes]] = []

    def build() -> None:
        start.wait()
        results.append(contents(Snapshots(tmp_path, blobs.open), ref))

    threads = [threading.Thread(target=build) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [files] * 4
    assert len(list(tmp_path.iterdir())) == 2  # one tar, one index: no temporary left
