"""What is attached to an image in the store (its signatures) travels and goes with it:
exported and imported with it, and dropped by gc once no name of its repository
reaches what it is attached to."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from osbuilder.oci import mediatypes
from osbuilder.oci.archive import export_archive, import_archive
from osbuilder.oci.model import Descriptor
from osbuilder.oci.reference import parse_reference
from osbuilder.oci.store import ContentStore, attachment_subject
from osbuilder.trust.stored import add_simple_signatures, simple_name, simple_signatures
from tests.unit.oci.test_store import digest_of, put_image

REPO = "registry.example/team/app"
HEX = "ab" * 32


def put_index(store: ContentStore, children: list[Descriptor]) -> Descriptor:
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_INDEX,
            "manifests": [
                {**child.as_json(), "platform": {"architecture": arch, "os": "linux"}}
                for child, arch in zip(children, ["amd64", "arm64"], strict=False)
            ],
        }
    ).encode()
    return Descriptor(mediatypes.OCI_INDEX, store.put_bytes(index), len(index))


def attach(store: ContentStore, repository: str, subject: str, suffix: str, data: bytes) -> str:
    """An artifact manifest named as attached to `subject`; returns its name."""
    name = f"{repository}:{subject.replace(':', '-')}{suffix}"
    store.tag(name, put_image(store, [data]))
    return name


def digest_named(store: ContentStore, name: str) -> str:
    descriptor = store.lookup(name)
    assert descriptor is not None
    return descriptor.digest


def names(store: ContentStore) -> list[str]:
    return [ref.name for ref in store.references()]


@pytest.mark.parametrize(
    ("name", "subject"),
    [
        (f"{REPO}:sha256-{HEX}.sig", (REPO, f"sha256:{HEX}")),
        (f"{REPO}:sha256-{HEX}.simplesig", (REPO, f"sha256:{HEX}")),
        (f"{REPO}:sha256-{HEX}.att", (REPO, f"sha256:{HEX}")),
        (f"{REPO}:sha256-{HEX}", (REPO, f"sha256:{HEX}")),  # the referrers tag schema
        (f"127.0.0.1:5000/x:sha256-{HEX}.sig", ("127.0.0.1:5000/x", f"sha256:{HEX}")),
        (f"{REPO}:latest", None),
        (f"{REPO}:sha256-{HEX[:-1]}.sig", None),  # not a whole digest
        (f"{REPO}:sha256-{HEX.upper()}.sig", None),  # digests are lowercase
        (f"{REPO}:sha256-{HEX}sig", None),
        (f"{REPO}:v1-sha256-{HEX}.sig", None),
        (f"{REPO}@sha256:{HEX}", None),
        (f"{REPO}:sha256-{HEX}.sig@sha256:{HEX}", None),  # pinned: an image, not a tag
        ("latest", None),
        ("Not A Reference", None),
    ],
)
def test_an_attachment_is_named_after_the_digest_it_is_attached_to(
    name: str, subject: tuple[str, str] | None
) -> None:
    assert attachment_subject(name) == subject


def test_the_attachments_of_an_image_and_of_the_manifests_of_its_index(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    amd64, arm64 = put_image(store, [b"amd64"]), put_image(store, [b"arm64"])
    index = put_index(store, [amd64, arm64])
    store.tag(f"{REPO}:1", index)
    assert store.manifest_digests(index) == [index.digest, amd64.digest, arm64.digest]
    on_index = attach(store, REPO, index.digest, ".sig", b"index signature")
    on_amd64 = attach(store, REPO, amd64.digest, ".simplesig", b"amd64 signature")
    signature_of_signature = attach(
        store, REPO, digest_named(store, on_index), ".sig", b"countersignature"
    )
    attach(store, "registry.example/other", index.digest, ".sig", b"another repository's")
    attach(store, REPO, digest_of(b"another image"), ".sig", b"another image's")
    found = store.attachments(f"{REPO}:1", store.manifest_digests(index))
    assert sorted(ref.name for ref in found) == sorted([on_index, on_amd64, signature_of_signature])
    # a child's blob missing (another platform, never pulled): its digest still counts
    partial = ContentStore(tmp_path / "partial")
    partial.put_bytes(store.read_blob(index.digest))
    assert partial.manifest_digests(index) == [index.digest, amd64.digest, arm64.digest]


def test_gc_drops_attachments_whose_image_is_gone(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    kept, dropped = put_image(store, [b"kept"]), put_image(store, [b"dropped"])
    store.tag(f"{REPO}:kept", kept)
    store.tag(f"{REPO}:dropped", dropped)
    store.tag("registry.example/mirror/app:1", dropped)  # the same image, another repository
    kept_signature = attach(store, REPO, kept.digest, ".sig", b"kept signature")
    dropped_signature = attach(store, REPO, dropped.digest, ".sig", b"dropped signature")
    countersignature = attach(
        store, REPO, digest_named(store, dropped_signature), ".sig", b"countersignature"
    )
    mirror_signature = attach(
        store, "registry.example/mirror/app", dropped.digest, ".simplesig", b"mirror signature"
    )
    # `cache rm` removes the name only; until gc, what is attached stays
    assert store.untag(f"{REPO}:dropped")
    assert dropped_signature in names(store)
    store.gc()
    assert names(store) == sorted(
        ["registry.example/mirror/app:1", mirror_signature, f"{REPO}:kept", kept_signature]
    )
    assert countersignature not in names(store)
    assert not store.has_blob(digest_of(b"dropped signature"))
    assert not store.has_blob(digest_of(b"countersignature"))
    assert store.has_blob(digest_of(b"kept signature"))
    assert store.has_blob(digest_of(b"mirror signature"))
    # an attachment is not the image it is attached to: alone, it goes too
    assert store.untag("registry.example/mirror/app:1")
    store.untag(f"{REPO}:kept")
    count, _ = store.gc()
    assert names(store) == [] and count > 0
    assert list(store.blobs.iterdir()) == []


def test_gc_keeps_the_attachments_of_an_index_and_its_manifests(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    amd64 = put_image(store, [b"amd64"])
    index = put_index(store, [amd64, put_image(store, [b"arm64"])])
    store.tag(f"{REPO}@{index.digest}", index)  # pulled by digest
    on_amd64 = attach(store, REPO, amd64.digest, ".simplesig", b"amd64 signature")
    assert store.gc() == (0, 0)
    assert on_amd64 in names(store)


def test_an_image_exported_with_its_signatures_imports_with_them(tmp_path: Path) -> None:
    source = ContentStore(tmp_path / "source")
    image = put_image(source, [b"layer"])
    ref = parse_reference(f"{REPO}:1")
    source.tag(str(ref), image)
    add_simple_signatures(source, ref, image.digest, [b"first", b"second"])
    sigstore = attach(source, REPO, image.digest, ".sig", b"sigstore payload")
    attach(source, REPO, digest_of(b"another image"), ".sig", b"not this image's")
    archive = tmp_path / "app.tar"
    exported = export_archive(source, str(ref), archive)
    assert exported.attachments == [sigstore, simple_name(ref, image.digest)]
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        index = json.loads(member.read())
    assert [m["annotations"][mediatypes.REF_NAME_ANNOTATION] for m in index["manifests"]] == [
        str(ref),
        *exported.attachments,
    ]
    target = ContentStore(tmp_path / "target")
    assert import_archive(target, archive) == [str(ref), *exported.attachments]
    assert simple_signatures(target, ref, image.digest) == [b"first", b"second"]
    assert target.has_blob(digest_of(b"sigstore payload"))
    assert not target.has_blob(digest_of(b"not this image's"))
    assert target.gc() == (0, 0)  # everything imported is attached to the image


def test_an_unsigned_image_exports_alone(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    store.tag(f"{REPO}:1", put_image(store, [b"layer"]))
    attach(store, REPO, digest_of(b"another image"), ".sig", b"another image's")
    exported = export_archive(store, f"{REPO}:1", tmp_path / "app.tar")
    assert exported.attachments == [] and exported.blobs == 3
