"""Identical files of the containers' read-only roots become hard links (entries sharing one
Content), and nothing else does: not the writable root's, nor files that differ in mode,
owner or xattrs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from osbuilder.assemble.dedup import link_identical_files
from osbuilder.assemble.entry import Entry, Kind
from osbuilder.assemble.system import AssembledSystem
from osbuilder.assemble.tree import Spool, Tree
from osbuilder.oci.store import ContentStore
from tests.unit.assemble.small_systems import (
    CONF,
    EPOCH,
    LIBC,
    READER,
    SPEC,
    TOOL,
    WRITER,
    assemble_spec,
    image_store,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ContentStore:
    return image_store(tmp_path_factory.mktemp("store"))


@pytest.fixture
def system(store: ContentStore, tmp_path: Path) -> AssembledSystem:
    return assemble_spec(store, tmp_path / "build")


def entry(system: AssembledSystem, path: str) -> Entry:
    found = system.tree.get(path)
    assert found is not None and found.content is not None, path
    return found


def linked(system: AssembledSystem, *paths: str) -> bool:
    """Whether the entries at `paths` are one file: one Content, as the writers see it."""
    return len({id(entry(system, path).content) for path in paths}) == 1


def test_the_same_file_in_two_container_roots_is_stored_once(system: AssembledSystem) -> None:
    for name in ("lib/libc.so.6", "bin/tool", "etc/shared.conf", "etc/hosts"):
        assert linked(system, f"{WRITER}/{name}", f"{READER}/{name}"), name
    assert linked(system, f"{WRITER}/bin/tool", f"{WRITER}/bin/tool-again")
    libc = entry(system, f"{READER}/lib/libc.so.6")
    assert libc.content is not None and libc.content.read_bytes() == LIBC
    assert entry(system, f"{READER}/bin/tool").content.read_bytes() == TOOL  # type: ignore[union-attr]
    assert entry(system, f"{READER}/etc/shared.conf").content.read_bytes() == CONF  # type: ignore[union-attr]
    assert not linked(system, f"{WRITER}/etc/only-a", f"{READER}/etc/only-b")


def test_the_first_name_in_path_order_keeps_its_metadata_and_the_others_take_its_mtime(
    system: AssembledSystem,
) -> None:
    """containers/onboot/... comes before containers/services/...: the writer's copy stays
    (its mtime, EPOCH - 100, over the reader's EPOCH - 50), so one inode has one time."""
    for name in ("lib/libc.so.6", "bin/tool", "etc/shared.conf"):
        first, other = entry(system, f"{WRITER}/{name}"), entry(system, f"{READER}/{name}")
        assert first.mtime == other.mtime == EPOCH - 100, name
        assert (first.mode, first.uid, first.gid) == (other.mode, other.uid, other.gid), name
        assert first.source == "docker.io/test/a:1" and other.source == "docker.io/test/b:1"


@pytest.mark.parametrize("name", ["etc/by-mode", "etc/by-owner", "etc/by-xattr"])
def test_the_same_bytes_with_another_mode_owner_or_xattrs_stay_separate_files(
    system: AssembledSystem, name: str
) -> None:
    writer, reader = entry(system, f"{WRITER}/{name}"), entry(system, f"{READER}/{name}")
    assert writer.content is not None and reader.content is not None
    assert writer.content.read_bytes() == reader.content.read_bytes()
    assert not linked(system, f"{WRITER}/{name}", f"{READER}/{name}")
    assert (writer.mode, writer.uid, writer.xattrs) != (reader.mode, reader.uid, reader.xattrs)


def test_the_writable_roots_files_are_never_linked(system: AssembledSystem) -> None:
    """The init images' files and `files` live in the system's root, which is writable:
    a write there would reach every name."""
    root_copies = ["lib/libc.so.6", "usr/lib/libc-copy", "etc/libc-in-root"]
    for path in root_copies:
        assert entry(system, path).content.read_bytes() == LIBC  # type: ignore[union-attr]
    contents = {id(entry(system, path).content) for path in root_copies}
    assert id(entry(system, f"{WRITER}/lib/libc.so.6").content) not in contents
    assert id(entry(system, f"{READER}/lib/libc.so.6").content) not in contents
    assert len(contents) == 3  # nor with one another


def test_every_linked_root_is_an_overlays_lower_layer_or_mounted_read_only(
    system: AssembledSystem,
) -> None:
    """Where the linked files are reached from: a container writing its copy writes through
    its overlay (into its own upper layer), or cannot write at all."""
    bundles = {
        "containers/onboot/000-writer": ("overlay", WRITER),
        "containers/services/reader": ("bind", READER),
        "containers/services/again": ("overlay", WRITER),  # the first copy of its image
    }
    for bundle, (how, root) in bundles.items():
        runtime = json.loads(entry(system, f"{bundle}/runtime.json").content.read_bytes())  # type: ignore[union-attr]
        config = json.loads(entry(system, f"{bundle}/config.json").content.read_bytes())  # type: ignore[union-attr]
        mount = runtime["mounts"][2 if how == "overlay" else 0]
        if how == "overlay":
            assert mount["type"] == "overlay" and f"lowerdir=/{root}" in mount["options"]
            assert mount["destination"] == f"/{bundle}/rootfs"
            assert not config["root"].get("readonly")
        else:
            assert mount == {"source": f"/{root}", "destination": f"/{root}", "options": ["bind"]}
            assert config["root"]["readonly"] is True
    assert system.tree.get("containers/services/again/lower") is None  # nothing unpacked again


def test_without_dedup_every_file_keeps_its_own_content(
    store: ContentStore, tmp_path: Path
) -> None:
    system = assemble_spec(store, tmp_path / "build", dedup=False)
    assert not linked(system, f"{WRITER}/lib/libc.so.6", f"{READER}/lib/libc.so.6")
    assert not linked(system, f"{WRITER}/bin/tool", f"{WRITER}/bin/tool-again")
    assert entry(system, f"{READER}/lib/libc.so.6").mtime == EPOCH - 50


def test_the_same_inputs_link_the_same_way(store: ContentStore, tmp_path: Path) -> None:
    def links(system: AssembledSystem) -> list[tuple[str, ...]]:
        groups: dict[int, list[str]] = {}
        for item in system.tree.walk():
            if item.content is not None:
                groups.setdefault(id(item.content), []).append(item.path)
        return sorted(tuple(paths) for paths in groups.values() if len(paths) > 1)

    first = links(assemble_spec(store, tmp_path / "1"))
    assert first == links(assemble_spec(store, tmp_path / "2"))
    assert (f"{WRITER}/lib/libc.so.6", f"{READER}/lib/libc.so.6") in first


def test_what_linking_saved_counts_each_stored_copy_once(tmp_path: Path) -> None:
    (tmp_path / "spool").mkdir()
    tree = Tree(Spool(tmp_path / "spool"))
    data = b"x" * 1000
    shared = tree.spool.write_bytes(data)  # one image's two names of one file
    for path, content in [
        ("a/lib", shared),
        ("a/lib-link", shared),
        ("b/lib", tree.spool.write_bytes(data)),
        ("b/lib-link", tree.spool.write_bytes(data)),
        ("c/lib", tree.spool.write_bytes(data)),  # not a read-only root
        ("b/empty", tree.spool.write_bytes(b"")),
        ("a/empty", tree.spool.write_bytes(b"")),
    ]:
        tree.put(Entry(path, Kind.FILE, 0o644, content=content))
    saved = link_identical_files(tree, ["a", "b"])
    assert (saved.files, saved.size) == (2, 2000)
    assert {
        id(tree.entries[p].content) for p in ("a/lib", "a/lib-link", "b/lib", "b/lib-link")
    } == {id(shared)}
    assert tree.entries["c/lib"].content is not shared
    assert tree.entries["a/empty"].content is not tree.entries["b/empty"].content


def test_a_volumes_files_are_linked_too(store: ContentStore, tmp_path: Path) -> None:
    """A volume's lower/ is its overlay's lower layer (or bound read-only): read-only too."""
    spec = SPEC + "volumes:\n  - name: data\n    image: test/b:1\n"
    system = assemble_spec(store, tmp_path / "build", spec)
    volume = "containers/volumes/data/lower"
    assert linked(system, f"{WRITER}/lib/libc.so.6", f"{volume}/lib/libc.so.6")
    assert linked(system, f"{READER}/etc/only-b", f"{volume}/etc/only-b")
