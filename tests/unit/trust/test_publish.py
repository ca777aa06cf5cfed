"""Simple signatures written to a lookaside on push: after those there, never twice,
never replacing one; and what cannot be written is refused before anything is pushed."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from osbuilder.errors import UserError
from osbuilder.oci.reference import parse_reference
from osbuilder.oci.registry import RegistryClient
from osbuilder.oci.store import ContentStore
from osbuilder.trust import publish
from osbuilder.trust.publish import Published, write_simple_signatures
from osbuilder.trust.stored import MAX_SIGNATURES, add_simple_signatures
from tests.unit.oci.test_store import put_image

DIGEST = "sha256:" + "cd" * 32


def signature_dir(root: Path) -> Path:
    return root / "team" / f"app@sha256={'cd' * 32}"


def lookaside(root: Path) -> str:
    return (root / "team" / "app").as_uri()


def test_signatures_are_numbered_after_those_there_and_written_once(tmp_path: Path) -> None:
    directory = signature_dir(tmp_path)
    directory.mkdir(parents=True)
    (directory / "signature-1").write_bytes(b"someone else's")
    assert write_simple_signatures(lookaside(tmp_path), DIGEST, [b"a", b"b", b"a"]) == (2, 0)
    assert (directory / "signature-2").read_bytes() == b"a"
    assert (directory / "signature-3").read_bytes() == b"b"
    assert (directory / "signature-2").stat().st_mode & 0o777 == 0o644
    # again: nothing new
    assert write_simple_signatures(lookaside(tmp_path), DIGEST, [b"b", b"a"]) == (0, 2)
    assert write_simple_signatures(lookaside(tmp_path), DIGEST, [b"c"]) == (1, 0)
    assert sorted(p.name for p in directory.iterdir()) == [f"signature-{n}" for n in range(1, 5)]


def test_the_first_signature_makes_the_directories(tmp_path: Path) -> None:
    assert write_simple_signatures(lookaside(tmp_path / "new"), DIGEST, [b"a"]) == (1, 0)
    assert (signature_dir(tmp_path / "new") / "signature-1").read_bytes() == b"a"


def test_a_number_taken_meanwhile_is_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another push writing signature-1 between our look and our write."""
    directory = signature_dir(tmp_path)
    real_link = os.link

    def racing_link(source: str, target: str | Path) -> None:
        if str(target).endswith("signature-1") and not Path(target).exists():
            Path(target).write_bytes(b"the other writer's")
        real_link(source, target)

    monkeypatch.setattr(os, "link", racing_link)
    assert write_simple_signatures(lookaside(tmp_path), DIGEST, [b"ours"]) == (1, 0)
    assert (directory / "signature-1").read_bytes() == b"the other writer's"
    assert (directory / "signature-2").read_bytes() == b"ours"
    assert sorted(p.name for p in directory.iterdir()) == ["signature-1", "signature-2"]


def test_without_hard_links_a_signature_is_created_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(source: str, target: str | Path) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    directory = signature_dir(tmp_path)
    directory.mkdir(parents=True)
    (directory / "signature-1").write_bytes(b"there")
    assert write_simple_signatures(lookaside(tmp_path), DIGEST, [b"there", b"new"]) == (1, 1)
    assert (directory / "signature-2").read_bytes() == b"new"
    assert sorted(p.name for p in directory.iterdir()) == ["signature-1", "signature-2"]


def test_a_lookaside_that_cannot_be_used_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "team").write_text("a file where a directory should be")
    with pytest.raises(UserError, match=r"cd/signature-1: cannot read signature 1: Not a dir"):
        write_simple_signatures(lookaside(tmp_path), DIGEST, [b"a"])


def test_a_full_disk_is_one_clear_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UserError, match=r"signature-1: cannot write: No space left on device \("):
        write_simple_signatures(lookaside(tmp_path), DIGEST, [b"a"])
    monkeypatch.undo()
    assert list(signature_dir(tmp_path).iterdir()) == []


def test_no_more_signatures_than_a_reader_reads(tmp_path: Path) -> None:
    signatures = [str(n).encode() for n in range(MAX_SIGNATURES)]
    assert write_simple_signatures(lookaside(tmp_path), DIGEST, signatures) == (64, 0)
    with pytest.raises(UserError, match="already 64 signatures"):
        write_simple_signatures(lookaside(tmp_path), DIGEST, [b"one too many"])


def signed_store(tmp_path: Path) -> tuple[ContentStore, str]:
    store = ContentStore(tmp_path / "store")
    image = put_image(store, [b"layer"])
    ref = parse_reference("registry.example/team/app:1")
    store.tag(str(ref), image)
    add_simple_signatures(store, ref, image.digest, [b"signature"])
    return store, str(ref)


def registries_d(tmp_path: Path, text: str) -> Path:
    directory = tmp_path / "registries.d"
    directory.mkdir()
    (directory / "default.yaml").write_text(text)
    return directory


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("lookaside: https://signatures.example/", "file"),  # refused
        ("lookaside: https://signatures.example/\n  lookaside-staging: file:///staging", None),
        ("lookaside: file:///read\n  lookaside-staging: https://up.example/", "file"),
        ("sigstore-staging: file:///old-name", None),
    ],
)
def test_the_write_location_is_staging_first_and_only_file_urls(
    tmp_path: Path, section: str, expected: str | None
) -> None:
    store, ref = signed_store(tmp_path)
    config = registries_d(tmp_path, f"default-docker:\n  {section}\n")
    destination = parse_reference("other.example/mirror/app:1")
    with RegistryClient() as client:
        if expected is not None:
            with pytest.raises(UserError, match="osbuilder writes only file:// lookasides"):
                publish.plan(store, client, ref, destination, config)
            return
        planned = publish.plan(store, client, ref, destination, config)
    assert planned.lookaside is not None and planned.lookaside.startswith("file:///")
    assert planned.lookaside.endswith("/mirror/app")
    assert list(planned.simple.values()) == [[b"signature"]]


def test_an_unsigned_image_needs_no_lookaside(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "store")
    store.tag("registry.example/team/app:1", put_image(store, [b"layer"]))
    config = registries_d(tmp_path, "default-docker:\n  lookaside: https://x.example/\n")
    with RegistryClient() as client:
        planned = publish.plan(store, client, "registry.example/team/app:1", None, config)
    assert planned.empty and planned.lookaside is None


def test_the_summary_says_what_was_published() -> None:
    assert Published().describe() == "no signatures"
    assert (
        Published(sigstore=1, written=2, present=1, lookaside="file:///l").describe()
        == "1 sigstore signature pushed, 2 simple signatures written to file:///l "
        "(1 already there)"
    )
