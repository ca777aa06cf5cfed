"""The content store: verified blobs only, atomic names, resumable partial downloads, gc."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import threading
from pathlib import Path

import pytest

from osbuilder.errors import UserError
from osbuilder.oci import mediatypes
from osbuilder.oci.archive import export_archive, import_archive
from osbuilder.oci.model import Descriptor
from osbuilder.oci.store import ContentStore, DigestMismatch, default_store_root


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put_image(store: ContentStore, layers: list[bytes]) -> Descriptor:
    layer_descriptors = []
    for layer in layers:
        layer_descriptors.append(
            {
                "mediaType": mediatypes.OCI_LAYER_GZIP,
                "digest": store.put_bytes(layer),
                "size": len(layer),
            }
        )
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "config": {
                "mediaType": mediatypes.OCI_CONFIG,
                "digest": store.put_bytes(config),
                "size": len(config),
            },
            "layers": layer_descriptors,
        }
    ).encode()
    return Descriptor(
        media_type=mediatypes.OCI_MANIFEST, digest=store.put_bytes(manifest), size=len(manifest)
    )


def test_new_store_is_an_oci_layout(tmp_path: Path) -> None:
    ContentStore(tmp_path / "s")
    assert json.loads((tmp_path / "s/oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((tmp_path / "s/index.json").read_text())
    assert index["schemaVersion"] == 2 and index["manifests"] == []


def test_default_root_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("OSBUILDER_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_store_root() == tmp_path / "xdg/osbuilder"
    monkeypatch.setenv("OSBUILDER_CACHE", str(tmp_path / "explicit"))
    assert default_store_root() == tmp_path / "explicit"


def test_put_bytes_verifies_the_digest(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    assert store.put_bytes(b"hello") == digest_of(b"hello")
    with pytest.raises(DigestMismatch):
        store.put_bytes(b"hello", digest_of(b"other"))
    assert store.has_blob(digest_of(b"hello"))
    assert not store.has_blob(digest_of(b"other"))


def test_partial_download_resumes_and_only_verified_content_lands(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    data = bytes(range(256)) * 1000
    digest = digest_of(data)
    first = store.partial(digest, len(data))
    assert first.open() == 0
    first.write(data[:1000])
    first.close()  # interrupted: the bytes stay in ingest/, not in blobs/
    assert not store.has_blob(digest)
    second = store.partial(digest, len(data))
    assert second.open() == 1000
    second.write(data[1000:])
    second.commit()
    assert store.blob_path(digest).read_bytes() == data
    assert list(store.ingest_dir.glob("*.partial")) == []


def test_corrupt_partial_is_deleted_on_commit(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    data = b"x" * 100
    partial = store.partial(digest_of(data), len(data))
    partial.open()
    partial.write(b"y" * 100)
    with pytest.raises(DigestMismatch):
        partial.commit()
    assert not store.has_blob(digest_of(data))
    assert not partial.path.exists()


def test_a_blob_longer_than_announced_is_refused(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    partial = store.partial(digest_of(b"abc"), 3)
    partial.open()
    with pytest.raises(DigestMismatch, match="longer than the 3 bytes"):
        partial.write(b"abcd")
    partial.discard()


def test_writer_failure_leaves_nothing(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    with pytest.raises(RuntimeError), store.writer() as blob:
        blob.write(b"half")
        raise RuntimeError("interrupted")
    assert list(store.blobs.iterdir()) == []
    assert [p.name for p in store.ingest_dir.iterdir()] == []


def test_tag_lookup_untag_and_gc(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    kept = put_image(store, [b"layer-a", b"shared"])
    dropped = put_image(store, [b"layer-b", b"shared"])
    store.tag("docker.io/library/a:1", kept)
    store.tag("docker.io/library/b:1", dropped)
    assert [r.name for r in store.references()] == [
        "docker.io/library/a:1",
        "docker.io/library/b:1",
    ]
    assert store.lookup("docker.io/library/a:1") == kept
    assert store.untag("docker.io/library/b:1")
    assert not store.untag("docker.io/library/b:1")
    store.snapshots.mkdir()
    snapshots = {
        name: store.snapshots / name
        for name in (
            f"{digest_of(b'shared')[7:]}.tar",
            f"{digest_of(b'shared')[7:]}.index",
            f"{digest_of(b'layer-b')[7:]}.tar",
            f"{digest_of(b'layer-b')[7:]}.1536.index",
            f".{digest_of(b'shared')[7:]}.tar.0123abcd.partial",
        )
    }
    for path in snapshots.values():
        path.write_bytes(b"x")
    count, _ = store.gc()
    assert count == 2  # b's manifest and its own layer; config and shared layer stay
    assert sorted(p.name for p in store.snapshots.iterdir()) == sorted(list(snapshots)[:2])
    _, freed = store.gc(snapshots=True)
    assert list(store.snapshots.iterdir()) == [] and freed == 2
    assert store.has_blob(digest_of(b"shared"))
    assert store.has_blob(digest_of(b"shared"))
    assert not store.has_blob(digest_of(b"layer-b"))
    assert store.missing_blobs(kept) == []


def test_retagging_replaces_the_name(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    first, second = put_image(store, [b"1"]), put_image(store, [b"2"])
    store.tag("r/x:latest", first)
    store.tag("r/x:latest", second)
    assert [(r.name, r.descriptor.digest) for r in store.references()] == [
        ("r/x:latest", second.digest)
    ]


def test_names_given_through_another_handle_are_seen(tmp_path: Path) -> None:
    # Each process has its own handle on a shared store: one that has read the index
    # must not keep answering from what it read then.
    reader, writer = ContentStore(tmp_path), ContentStore(tmp_path)
    image = put_image(writer, [b"1"])
    assert reader.lookup("r/x:1") is None
    writer.tag("r/x:1", image)
    assert reader.lookup("r/x:1") == image
    writer.untag("r/x:1")
    assert reader.lookup("r/x:1") is None


def test_corrupted_blob_on_disk_is_detected_when_read(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    digest = store.put_bytes(b'{"a": 1}')
    store.blob_path(digest).write_bytes(b'{"a": 2}')
    with pytest.raises(DigestMismatch, match="corrupt"):
        store.read_blob(digest)


def test_missing_blob_is_a_clear_error(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    with pytest.raises(UserError, match="is not in the content store"):
        store.read_blob(digest_of(b"nothing"))


def _tag_many(root: str, worker: int) -> None:
    store = ContentStore(Path(root))
    for i in range(20):
        descriptor = put_image(store, [f"{worker}-{i}".encode()])
        store.tag(f"r/w{worker}:{i}", descriptor)


def test_concurrent_processes_never_lose_a_name(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_tag_many, args=(str(tmp_path), w)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
        assert worker.exitcode == 0
    assert len(ContentStore(tmp_path).references()) == 80


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("{tmp}", "{tmp} is a directory: name the archive, e.g. {tmp}/image.tar"),
        (
            "{tmp}/missing/app.tar",
            "{tmp}/missing/app.tar: cannot write: No such file or directory "
            "({tmp}/missing does not exist)",
        ),
    ],
)
def test_export_to_a_place_that_cannot_hold_it_is_one_clear_error(
    tmp_path: Path, output: str, message: str
) -> None:
    store = ContentStore(tmp_path / "store")
    store.tag("docker.io/library/app:1", put_image(store, [b"layer"]))
    with pytest.raises(UserError) as error:
        export_archive(store, "app:1", Path(output.format(tmp=tmp_path)))
    assert str(error.value) == message.format(tmp=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_importing_what_is_not_a_tar_is_one_clear_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an archive\n")
    store = ContentStore(tmp_path / "store")
    with pytest.raises(UserError) as error:
        import_archive(store, text)
    assert str(error.value) == f"{text}: not a tar archive (make one with osbuilder cache export)"


def test_gc_says_that_it_waits_for_a_command_using_the_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A build or a pkg build holds the store while it runs; gc waits, saying so."""
    store = ContentStore(tmp_path / "store")
    holding, released = threading.Event(), threading.Event()

    def build() -> None:
        with store.using():
            holding.set()
            released.wait(10)

    builder = threading.Thread(target=build)
    builder.start()
    holding.wait(10)
    threading.Timer(0.3, released.set).start()
    with caplog.at_level(logging.WARNING, logger="osbuilder.oci.store"):
        assert store.gc() == (0, 0)  # after the build ended
    builder.join()
    assert released.is_set()
    assert caplog.messages == [
        f"{store.root}: another osbuilder command is using it; waiting for it to end"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="osbuilder.oci.store"):
        store.gc()  # no one holds it: no word
    assert caplog.messages == []


def test_gc_removes_the_files_of_systems_no_longer_in_the_store(tmp_path: Path) -> None:
    """`run docker://` writes a system's files under systems/MANIFEST-HEX: they go with
    the system's manifest."""
    store = ContentStore(tmp_path)
    kept = put_image(store, [b"kernel"])
    dropped = put_image(store, [b"old kernel"])
    store.tag("docker.io/team/os:1", kept)
    for descriptor in (kept, dropped):
        directory = store.systems / descriptor.digest.removeprefix("sha256:")
        directory.mkdir(parents=True)
        (directory / "os-kernel").write_bytes(b"12345")
    _, freed = store.gc()
    assert [p.name for p in store.systems.iterdir()] == [kept.digest.removeprefix("sha256:")]
    assert freed >= 5
