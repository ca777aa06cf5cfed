"""Hostile layer tarballs: nothing escapes the image root, nothing is read from the host,
results are deterministic, and every refusal names the image and the member."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from osbuilder.assemble.entry import Kind
from osbuilder.assemble.layers import apply_layer
from osbuilder.assemble.snapshots import LayerRef, Snapshots
from osbuilder.assemble.tarindex import MAX_HEADER
from osbuilder.assemble.tree import Spool, Tree, TreeError

Build = Callable[[tarfile.TarFile], None]


def add(
    tar: tarfile.TarFile,
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    linkname: str = "",
    mode: int = 0o644,
    **fields: object,
) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = kind, linkname, mode, 1_700_000_000
    info.size = len(data) if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    for key, value in fields.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if info.size else None)


def layer(build: Build, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        build(tar)
    return raw.getvalue()


def apply(tree: Tree, data: bytes, base: str = "img") -> None:
    """Unpack `data` as an uncompressed layer blob, as a build does, and apply it."""
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    snapshots = Snapshots(tree.spool.path.parent / "snapshots", lambda _: io.BytesIO(data))
    snapshot = snapshots.layer(LayerRef(digest, "", None, "image test/hostile:1"))
    apply_layer(
        tree,
        snapshot.members,
        snapshot.path,
        base=base,
        source="test/hostile:1",
        location="services[0]",
        what="image test/hostile:1",
    )


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    spool = tmp_path / "spool"
    spool.mkdir()
    return Tree(Spool(spool))


def snapshot(tree: Tree) -> list[tuple[str, str, str, bytes]]:
    tree.spool.flush()
    return [
        (
            e.path,
            e.kind.value,
            e.linkname,
            e.content.read_bytes() if e.content is not None else b"",
        )
        for e in tree.walk()
    ]


def only_inside(tree: Tree, base: str = "img") -> None:
    for path in tree.entries:
        assert path == base or path.startswith(base + "/"), path


def test_absolute_names_are_made_relative(tree: Tree) -> None:
    apply(tree, layer(lambda t: add(t, "/etc/passwd", data=b"x")))
    assert tree.get("img/etc/passwd") is not None
    only_inside(tree)


@pytest.mark.parametrize("name", ["../etc/passwd", "a/../../etc/passwd", "./../x"])
def test_dotdot_names_are_refused(tree: Tree, name: str) -> None:
    with pytest.raises(TreeError, match=r"image test/hostile:1: member '.*' climbs out"):
        apply(tree, layer(lambda t: add(t, name, data=b"x")))


def test_symlink_then_write_stays_inside(tree: Tree) -> None:
    def build(t: tarfile.TarFile) -> None:
        add(t, "escape", tarfile.SYMTYPE, linkname="/etc")
        add(t, "escape/passwd", data=b"owned")
        add(t, "up", tarfile.SYMTYPE, linkname="../../../../../..")
        add(t, "up/root/file", data=b"x")

    apply(tree, layer(build))
    only_inside(tree)
    assert tree.get("img/etc/passwd") is not None  # /etc of the image, not of the host
    assert tree.get("img/root/file") is not None
    assert not Path("/etc/passwd").read_bytes().startswith(b"owned")


@pytest.mark.parametrize("removal", ["replace", "whiteout"])
def test_a_directory_turned_symlink_mid_layer_is_followed(tree: Tree, removal: str) -> None:
    # Members already written through d/ must not make later ones skip the new symlink.
    def build(t: tarfile.TarFile) -> None:
        add(t, "d/before", data=b"1")
        if removal == "whiteout":
            add(t, ".wh.d")
        add(t, "d", tarfile.SYMTYPE, linkname="/etc")
        add(t, "d/after", data=b"2")
        add(t, "e", tarfile.SYMTYPE, linkname="d")
        add(t, "e/through-two", data=b"3")

    apply(tree, layer(build))
    only_inside(tree)
    assert sorted(tree.entries) == [
        "img",
        "img/d",
        "img/e",
        "img/etc",
        "img/etc/after",
        "img/etc/through-two",
    ]


def test_symlink_loop_is_refused(tree: Tree) -> None:
    def build(t: tarfile.TarFile) -> None:
        add(t, "a", tarfile.SYMTYPE, linkname="b")
        add(t, "b", tarfile.SYMTYPE, linkname="a")
        add(t, "a/file", data=b"x")

    with pytest.raises(TreeError, match="too many levels of symbolic links"):
        apply(tree, layer(build))


def test_hard_link_to_outside_is_refused(tree: Tree) -> None:
    with pytest.raises(TreeError, match=r"hard link to '/etc/shadow', which is not a regular"):
        apply(tree, layer(lambda t: add(t, "shadow", tarfile.LNKTYPE, linkname="/etc/shadow")))


def test_hard_link_through_a_symlink_stays_inside(tree: Tree) -> None:
    def build(t: tarfile.TarFile) -> None:
        add(t, "real", data=b"content")
        add(t, "dir", tarfile.SYMTYPE, linkname="/")
        add(t, "link", tarfile.LNKTYPE, linkname="dir/real")

    apply(tree, layer(build))
    real, link = tree.get("img/real"), tree.get("img/link")
    assert real is not None and link is not None and real.content is link.content


def test_hard_link_to_a_directory_is_refused(tree: Tree) -> None:
    def build(t: tarfile.TarFile) -> None:
        add(t, "dir", tarfile.DIRTYPE, mode=0o755)
        add(t, "link", tarfile.LNKTYPE, linkname="dir")

    with pytest.raises(TreeError, match="which is not a regular file"):
        apply(tree, layer(build))


def test_whiteouts_remove_lower_files_only(tree: Tree) -> None:
    apply(
        tree,
        layer(
            lambda t: (
                add(t, "a/keep", data=b"1"),
                add(t, "a/gone", data=b"2"),
                add(t, "b/x", data=b"3"),
            )
        ),
    )

    def upper(t: tarfile.TarFile) -> None:
        add(t, "a/.wh.gone")
        add(t, "b/new", data=b"4")
        add(t, "b/.wh..wh..opq")  # after b/new: the opaque marker spares this layer's files

    apply(tree, layer(upper))
    assert tree.get("img/a/keep") is not None
    assert tree.get("img/a/gone") is None
    assert tree.get("img/b/x") is None
    assert tree.get("img/b/new") is not None


def test_an_opaque_directory_keeps_the_directories_of_the_layers_own_files(tree: Tree) -> None:
    apply(tree, layer(lambda t: (add(t, "b/sub/old", data=b"1"), add(t, "b/other", data=b"2"))))

    def upper(t: tarfile.TarFile) -> None:
        add(t, "b/sub/new", data=b"3")  # no entry of its own for b/sub in this layer
        add(t, "b/.wh..wh..opq")

    apply(tree, layer(upper))
    assert sorted(tree.entries) == ["img", "img/b", "img/b/sub", "img/b/sub/new"]
    tree.remove("img/b/sub")  # and what is below a directory goes with it
    assert sorted(tree.entries) == ["img", "img/b"]


@pytest.mark.parametrize("name", ["a/.wh.", "a/.wh...", "a/.wh.."])
def test_whiteout_tricks_are_refused(tree: Tree, name: str) -> None:
    with pytest.raises(TreeError, match="is not a valid whiteout"):
        apply(tree, layer(lambda t: add(t, name)))


def test_whiteout_through_a_symlink_stays_inside(tree: Tree) -> None:
    tree.put(
        __import__("osbuilder.assemble.entry", fromlist=["Entry"]).Entry(
            "host-file", Kind.FILE, 0o644
        )
    )
    apply(
        tree,
        layer(
            lambda t: (
                add(t, "link", tarfile.SYMTYPE, linkname="../.."),
                add(t, "link/.wh.host-file"),
            )
        ),
    )
    assert tree.get("host-file") is not None  # outside the image: untouched


def test_device_nodes_fifos_and_setuid_are_kept_as_metadata(tree: Tree) -> None:
    def build(t: tarfile.TarFile) -> None:
        add(t, "dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0, mode=0o660)
        add(t, "dev/mem", tarfile.CHRTYPE, devmajor=1, devminor=1, mode=0o640)
        add(t, "run/fifo", tarfile.FIFOTYPE, mode=0o600)
        add(t, "bin/su", data=b"\x7fELF", mode=0o4755)

    apply(tree, layer(build))
    sda = tree.get("img/dev/sda")
    assert sda is not None and (sda.kind, sda.devmajor, sda.devminor) == (Kind.BLOCK, 8, 0)
    su = tree.get("img/bin/su")
    assert su is not None and su.mode == 0o4755
    only_inside(tree)


def test_non_utf8_and_very_long_names(tree: Tree) -> None:
    weird = b"caf\xe9-\xff".decode("utf-8", "surrogateescape")
    long_name = "d/" + "x" * 250 + "/" + "y" * 250

    def build(t: tarfile.TarFile) -> None:
        add(t, weird, data=b"latin-1 name")
        add(t, long_name, data=b"long")

    apply(tree, layer(build))
    assert tree.get(f"img/{weird}") is not None
    assert tree.get(f"img/{long_name}") is not None
    too_long = "z/" * 2100
    with pytest.raises(TreeError, match="path longer than 4095 bytes"):
        apply(tree, layer(lambda t: add(t, too_long + "f", data=b"x")))


def test_duplicate_members_last_one_wins(tree: Tree) -> None:
    apply(tree, layer(lambda t: (add(t, "f", data=b"first"), add(t, "f", data=b"second"))))
    entry = tree.get("img/f")
    assert entry is not None and entry.content is not None
    tree.spool.flush()
    assert entry.content.read_bytes() == b"second"


def test_file_replacing_a_directory_drops_its_children(tree: Tree) -> None:
    apply(tree, layer(lambda t: (add(t, "d/x", data=b"1"), add(t, "d/y/z", data=b"2"))))
    apply(tree, layer(lambda t: add(t, "d", data=b"now a file")))
    assert [e.path for e in tree.walk()] == ["img", "img/d"]


def test_oversized_extended_header_is_refused(tree: Tree) -> None:
    def build(t: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("big")
        info.pax_headers = {"comment": "x" * (MAX_HEADER + 10)}
        t.addfile(info)

    with pytest.raises(TreeError, match=r"corrupt layer .*extended header of"):
        apply(tree, layer(build))


def test_truncated_layer_is_a_clear_error(tree: Tree) -> None:
    data = layer(lambda t: add(t, "f", data=b"x" * 5000))
    with pytest.raises(TreeError, match=r"hostile:1: member 'f': content ends 4488 bytes early"):
        apply(tree, data[:1024])


def test_garbage_is_a_clear_error(tree: Tree) -> None:
    with pytest.raises(TreeError, match="image test/hostile:1: corrupt layer"):
        apply(tree, b"\x00garbage" * 200 + b"\xff" * 512)


def test_results_are_deterministic(tmp_path: Path) -> None:
    def build(t: tarfile.TarFile) -> None:
        add(t, "b/2", data=b"2")
        add(t, "a/1", data=b"1")
        add(t, "c", tarfile.SYMTYPE, linkname="a")
        add(t, "c/3", data=b"3")

    results = []
    for run in range(2):
        spool = tmp_path / f"spool{run}"
        spool.mkdir()
        tree = Tree(Spool(spool))
        apply(tree, layer(build))
        results.append(snapshot(tree))
    assert results[0] == results[1]
    assert [r[0] for r in results[0]] == [
        "img",
        "img/a",
        "img/a/1",
        "img/a/3",
        "img/b",
        "img/b/2",
        "img/c",
    ]


def test_every_member_type_applies_as_its_kind(tree: Tree) -> None:
    """Regular files of old tars (type '\\0') and contiguous files ('7') are files too."""

    def build(t: tarfile.TarFile) -> None:
        add(t, "old", tarfile.AREGTYPE, data=b"a")
        add(t, "contiguous", tarfile.CONTTYPE, data=b"c", size=1)
        add(t, "dir", tarfile.DIRTYPE, mode=0o755)
        add(t, "link", tarfile.SYMTYPE, linkname="old")
        add(t, "hard", tarfile.LNKTYPE, linkname="old")
        add(t, "tty", tarfile.CHRTYPE, devmajor=5)
        add(t, "disk", tarfile.BLKTYPE, devmajor=8)
        add(t, "pipe", tarfile.FIFOTYPE)

    apply(tree, layer(build))
    kinds = {path: (kind, content) for path, kind, _, content in snapshot(tree)}
    assert kinds == {
        "img": ("directory", b""),
        "img/contiguous": ("file", b"c"),
        "img/dir": ("directory", b""),
        "img/disk": ("block", b""),
        "img/hard": ("file", b"a"),
        "img/link": ("symlink", b""),
        "img/old": ("file", b"a"),
        "img/pipe": ("fifo", b""),
        "img/tty": ("char", b""),
    }
    assert tree.get("img/hard").content is tree.get("img/old").content  # type: ignore[union-attr]
