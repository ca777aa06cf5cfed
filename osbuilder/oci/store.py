"""The content store: an OCI image layout on disk, shared safely between processes.

    ROOT/oci-layout
    ROOT/index.json        names -> descriptors (annotation org.opencontainers.image.ref.name)
    ROOT/blobs/sha256/HEX  verified content only
    ROOT/ingest/           downloads in progress (never read as content)
    ROOT/lock              shared by users of the store, exclusive for gc

A blob is written to ingest/, hashed while written, fsynced and renamed into
blobs/ only when its digest matches, so blobs/ never holds unverified bytes.
A per-digest lock makes concurrent pulls download each blob once; index.json
is rewritten atomically under its own lock.

What is attached to a manifest (signatures, attestations) is named after it in the
same repository, `REPO:sha256-HEX` or `REPO:sha256-HEX.SUFFIX` (see `attachment_subject`):
such a name follows its subject, exported with it and dropped by `gc` once no other
name of the repository reaches it.

Its records are msgspec Structs (machine-written JSON, read on every pull and build);
no user input is validated here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

from msgspec import Struct

from osbuilder.atomicfile import atomic_output, fsync_directory
from osbuilder.errors import ExternalError, UserError, cannot_write
from osbuilder.oci import mediatypes
from osbuilder.oci.model import Descriptor, Index, Manifest, check_digest, is_index, parse_json
from osbuilder.oci.reference import InvalidReference, parse_reference

log = logging.getLogger(__name__)

#: Manifests and configs are read into memory; anything bigger is not one.
MAX_DOCUMENT_SIZE = 8 * 1024 * 1024
_CHUNK = 1024 * 1024
_WRITEBACK_EVERY = 8 * 1024 * 1024
# The tag of what is attached to the manifest sha256:HEX: the OCI distribution spec's
# referrers tag schema (`sha256-HEX`), which cosign extends with a suffix (`.sig`, `.att`,
# `.sbom`) and so does osbuilder (`.simplesig`, trust/stored.py).
_ATTACHMENT_TAG = re.compile(r"sha256-([0-9a-f]{64})(?:\.[\w.-]+)?")


class DigestMismatch(ExternalError):
    """Content did not hash to the digest that names it."""


def default_store_root() -> Path:
    """$OSBUILDER_CACHE, else $XDG_CACHE_HOME/osbuilder, else ~/.cache/osbuilder."""
    if explicit := os.environ.get("OSBUILDER_CACHE"):
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "osbuilder"


class StoredReference(Struct, frozen=True):
    name: str
    descriptor: Descriptor


def attachment_subject(name: str) -> tuple[str, str] | None:
    """(the repository, the digest it is attached to) when the store name `name` is that
    of an attachment (`REGISTRY/REPO:sha256-HEX[.SUFFIX]`), else None."""
    repository, tag = _repository_and_tag(name)
    match = _ATTACHMENT_TAG.fullmatch(tag or "")
    if repository is None or match is None:
        return None
    return repository, "sha256:" + match[1]


def _repository_and_tag(name: str) -> tuple[str | None, str | None]:
    """`REGISTRY/REPO` of a store name and its tag if it has one (and no digest); Nones
    for a name that is not a reference (an index.json written by another tool)."""
    try:
        ref = parse_reference(name)
    except InvalidReference:
        return None, None
    return ref.name, ref.tag if ref.digest is None else None


_ParsedIndex = tuple[tuple[int, ...], tuple[Descriptor, ...], tuple[StoredReference, ...]]


def _named(entries: tuple[Descriptor, ...]) -> Iterator[StoredReference]:
    """The entries that carry a name, each without the annotation that names it."""
    for entry in entries:
        annotations = dict(entry.annotations or {})
        name = annotations.pop(mediatypes.REF_NAME_ANNOTATION, None)
        if name:
            yield StoredReference(name, entry.replace(annotations=annotations or None))


class ContentStore:
    """Blobs by digest plus an index of names, in the OCI image layout format."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # The index as last read: (the file's identity, its entries, the named ones).
        self._index: _ParsedIndex | None = None
        self.blobs = root / "blobs" / "sha256"
        self.ingest_dir = root / "ingest"
        # Derived from layer blobs (assemble/snapshots.py): named HEX.*, gone with blob HEX.
        self.snapshots = root / "snapshots"
        # Systems' files as `run docker://` boots them (systems/pull.py): directories named
        # after the system's manifest, gone with it.
        self.systems = root / "systems"
        try:
            self.blobs.mkdir(parents=True, exist_ok=True)
            self.ingest_dir.mkdir(exist_ok=True)
            layout = root / "oci-layout"
            if not layout.exists():
                _write_atomic(layout, b'{"imageLayoutVersion":"1.0.0"}')
            if not (root / "index.json").exists():
                with self._index_lock():
                    if not (root / "index.json").exists():
                        self._write_index([])
        except OSError as exc:
            raise UserError(f"cannot use {root} as the content store: {exc.strerror}") from None

    # --- locking ----------------------------------------------------------------------

    @contextlib.contextmanager
    def using(self) -> Iterator[None]:
        """Hold the store shared while working with it, so `gc` waits for us."""
        waiting = f"{self.root}: a garbage collection is running; waiting for it to end"
        with _flock(self.root / "lock", fcntl.LOCK_SH, waiting):
            yield

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        waiting = f"{self.root}: another osbuilder command is using it; waiting for it to end"
        with _flock(self.root / "lock", fcntl.LOCK_EX, waiting):
            yield

    def _index_lock(self) -> contextlib.AbstractContextManager[None]:
        return _flock(self.root / "index.lock", fcntl.LOCK_EX)

    @contextlib.contextmanager
    def blob_lock(self, digest: str) -> Iterator[None]:
        """Serialise writers of one blob: the second finds it present and skips the work."""
        with _flock(self.ingest_dir / f"{_hex(digest)}.lock", fcntl.LOCK_EX):
            yield

    # --- blobs ----------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.blobs / _hex(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def open_blob(self, digest: str) -> BinaryIO:
        try:
            return self.blob_path(digest).open("rb")
        except FileNotFoundError:
            raise UserError(f"blob {digest} is not in the content store {self.root}") from None

    def read_blob(self, digest: str) -> bytes:
        """A small blob (manifest, config), re-verified since it is about to be trusted."""
        path = self.blob_path(digest)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise UserError(f"blob {digest} is not in the content store {self.root}") from None
        if size > MAX_DOCUMENT_SIZE:
            raise ExternalError(f"blob {digest} is {size} bytes, too big for a JSON document")
        data = path.read_bytes()
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise DigestMismatch(
                f"blob {digest} in {self.root} is corrupt; run `osbuilder cache gc`"
            )
        return data

    def partial(self, digest: str, size: int | None = None) -> PartialBlob:
        """The resumable download of `digest` (hold `blob_lock(digest)` while using it)."""
        return PartialBlob(self, digest, size)

    def put_bytes(self, data: bytes, digest: str | None = None) -> str:
        """Store `data`; verify it against `digest` when given. Returns the digest."""
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if digest is not None and actual != digest:
            raise DigestMismatch(f"content does not match its digest {digest} (got {actual})")
        if not self.has_blob(actual):
            with self.writer() as blob:
                blob.write(data)
        return actual

    @contextlib.contextmanager
    def writer(self) -> Iterator[BlobWriter]:
        """Write a blob whose digest is known only at the end (`writer.digest` after the block).

        The content is hashed as written and lands in blobs/ only when the block
        ends without error.
        """
        with _writing(self.ingest_dir):
            fd, name = tempfile.mkstemp(dir=self.ingest_dir, prefix="write-")
        try:
            with os.fdopen(fd, "wb") as raw:
                blob = BlobWriter(raw, Path(name))
                yield blob
                with _writing(Path(name)):
                    raw.flush()
                    os.fsync(raw.fileno())
            blob.digest = "sha256:" + blob.hash.hexdigest()
            with _writing(self.blob_path(blob.digest)):
                os.chmod(name, 0o644)  # mkstemp made it private; blobs are content, not secrets
                os.replace(name, self.blob_path(blob.digest))
                fsync_directory(self.blobs)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)

    # --- documents --------------------------------------------------------------------------

    def manifest(self, digest: str) -> Manifest:
        return parse_json(Manifest, self.read_blob(digest), f"manifest {digest}")

    def index(self, digest: str) -> Index:
        return parse_json(Index, self.read_blob(digest), f"index {digest}")

    def missing_blobs(self, descriptor: Descriptor) -> list[Descriptor]:
        """Blobs an image needs that are not here (for an index: of the children we have)."""
        if not self.has_blob(descriptor.digest):
            return [descriptor]
        if is_index(descriptor.media_type):
            return [
                missing
                for child in self.index(descriptor.digest).manifests
                if self.has_blob(child.digest)
                for missing in self.missing_blobs(child)
            ]
        manifest = self.manifest(descriptor.digest)
        return [d for d in (manifest.config, *manifest.layers) if not self.has_blob(d.digest)]

    def reachable(self, descriptor: Descriptor) -> Iterator[Descriptor]:
        """Every descriptor reachable from `descriptor` whose blob is present."""
        if not self.has_blob(descriptor.digest):
            return
        yield descriptor
        if is_index(descriptor.media_type):
            for child in self.index(descriptor.digest).manifests:
                yield from self.reachable(child)
        elif descriptor.media_type in mediatypes.MANIFESTS:
            manifest = self.manifest(descriptor.digest)
            for blob in (manifest.config, *manifest.layers):
                if self.has_blob(blob.digest):
                    yield blob

    def manifest_digests(self, descriptor: Descriptor) -> list[str]:
        """The digest of `descriptor` and, for an index, of every manifest it lists (and
        theirs, for an index in it that is present): what can be signed of an image."""
        digests = [descriptor.digest]
        if is_index(descriptor.media_type) and self.has_blob(descriptor.digest):
            for child in self.index(descriptor.digest).manifests:
                digests.extend(self.manifest_digests(child))
        return list(dict.fromkeys(digests))

    # --- names ------------------------------------------------------------------------------

    def references(self) -> list[StoredReference]:
        self._read_index()
        assert self._index is not None
        return list(self._index[2])

    def lookup(self, name: str) -> Descriptor | None:
        for ref in self.references():
            if ref.name == name:
                return ref.descriptor
        return None

    def attachments(self, name: str, digests: Iterable[str]) -> list[StoredReference]:
        """The names attached to `digests` in the repository of the store name `name`,
        and in turn what is attached to those (a signature of a signature)."""
        repository, _ = _repository_and_tag(name)
        if repository is None:
            return []
        live = {(repository, digest) for digest in digests}
        return self._attached(self.references(), live)

    def _attached(
        self, references: list[StoredReference], live: set[tuple[str, str]]
    ) -> list[StoredReference]:
        """The attachments among `references` whose subject is in `live` ((repository,
        digest) pairs), or attached to one of those; `live` gains their own digests."""
        pending = [(r, s) for r in references if (s := attachment_subject(r.name))]
        found: list[StoredReference] = []
        while attached := [(r, s) for r, s in pending if s in live]:
            for ref, (repository, _) in attached:
                found.append(ref)
                live.update((repository, d) for d in self.manifest_digests(ref.descriptor))
            pending = [(r, s) for r, s in pending if (r, s) not in attached]
        return found

    def tag(self, name: str, descriptor: Descriptor) -> None:
        """Point `name` at `descriptor` (replacing what it named before)."""
        annotations = dict(descriptor.annotations or {})
        annotations[mediatypes.REF_NAME_ANNOTATION] = name
        entry = descriptor.replace(annotations=annotations)
        with self._index_lock():
            entries = [e for e in self._read_index() if _name(e) != name]
            entries.append(entry)
            entries.sort(key=lambda e: _name(e) or "")
            self._write_index(entries)

    def untag(self, name: str) -> bool:
        with self._index_lock():
            entries = self._read_index()
            kept = [e for e in entries if _name(e) != name]
            if len(kept) == len(entries):
                return False
            self._write_index(kept)
            return True

    def gc(self, *, snapshots: bool = False) -> tuple[int, int]:
        """Delete the names of attachments whose subject no other name of their repository
        reaches (see `attachment_subject`), then blobs no name reaches, their snapshots, and
        stale ingest files; with `snapshots`, every snapshot.

        Returns (blobs deleted, bytes freed in all).
        """
        with self.exclusive():
            references = self._drop_orphaned_attachments()
            keep = {d.digest for ref in references for d in self.reachable(ref.descriptor)}
            count = size = 0
            for path in self.blobs.iterdir():
                if "sha256:" + path.name not in keep:
                    size += path.stat().st_size
                    path.unlink()
                    count += 1
            for path in self.ingest_dir.iterdir():
                # No one holds the store (we are exclusive): nothing is being written.
                size += path.stat().st_size
                path.unlink()
            if self.snapshots.is_dir():
                for path in self.snapshots.iterdir():
                    # A temporary file (".HEX.tar.TOKEN.partial") is a leftover: we are exclusive.
                    partial = path.name.startswith(".")
                    if snapshots or partial or "sha256:" + path.name.split(".")[0] not in keep:
                        size += path.stat().st_size
                        path.unlink()
            if self.systems.is_dir():
                for path in self.systems.iterdir():
                    if "sha256:" + path.name not in keep:
                        size += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
                        shutil.rmtree(path)
            return count, size

    def _drop_orphaned_attachments(self) -> list[StoredReference]:
        """Remove the names of attachments whose image is gone; returns the names kept."""
        references = self.references()
        live: set[tuple[str, str]] = set()
        for ref in references:
            repository, _ = _repository_and_tag(ref.name)
            if repository is not None and attachment_subject(ref.name) is None:
                live.update((repository, d) for d in self.manifest_digests(ref.descriptor))
        attached = {ref.name for ref in self._attached(references, live)}
        orphaned = {
            ref.name
            for ref in references
            if attachment_subject(ref.name) is not None and ref.name not in attached
        }
        if not orphaned:
            return references
        with self._index_lock():
            self._write_index([e for e in self._read_index() if _name(e) not in orphaned])
        for name in sorted(orphaned):
            log.info("removed %s: what it is attached to is no longer in the store", name)
        return [ref for ref in references if ref.name not in orphaned]

    def _read_index(self) -> list[Descriptor]:
        """The index's entries; parsed again only when the file changed (a build looks up
        each of its images, and a store's index can name hundreds)."""
        path = self.root / "index.json"
        with path.open("rb") as file:
            stat = os.fstat(file.fileno())
            # Writes replace the file (a new inode); size and mtime catch an edit in place.
            identity = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if self._index is None or self._index[0] != identity:
                entries = tuple(parse_json(Index, file.read(), str(path)).manifests)
                self._index = (identity, entries, tuple(_named(entries)))
        return list(self._index[1])

    def _write_index(self, entries: list[Descriptor]) -> None:
        index: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_INDEX,
            "manifests": [e.as_json() for e in entries],
        }
        _write_atomic(self.root / "index.json", json.dumps(index, indent=2).encode() + b"\n")


class BlobWriter:
    """Hashes what is written through it; `digest` is set once the blob is committed."""

    def __init__(self, raw: IO[bytes], path: Path) -> None:
        self.raw = raw
        self.path = path
        self.hash = hashlib.sha256()
        self.size = 0
        self.digest: str | None = None

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        with _writing(self.path):
            self.raw.write(data)
        self.size += len(data)
        return len(data)


class PartialBlob:
    """A download of a known digest kept in ingest/ so an interrupted one can resume.

    `open()` hashes what an earlier attempt left and reports how many bytes are
    there; `write` appends; `commit` moves the file into blobs/ only if the
    whole content hashes to the digest.
    """

    def __init__(self, store: ContentStore, digest: str, size: int | None) -> None:
        self.store = store
        self.digest = digest
        self.expected_size = size
        self.path = store.ingest_dir / f"{_hex(digest)}.partial"
        self.hash = hashlib.sha256()
        self.offset = 0
        self._written_back = 0
        self._stream: IO[bytes] | None = None

    def open(self) -> int:
        """Open for appending; returns the number of bytes already there."""
        self.close()
        self.hash = hashlib.sha256()
        self.offset = 0
        with _writing(self.path):
            stream = self.path.open("ab+", buffering=0)
        stream.seek(0)
        while chunk := stream.read(_CHUNK):
            self.hash.update(chunk)
            self.offset += len(chunk)
        if self.expected_size is not None and self.offset > self.expected_size:
            stream.truncate(0)
            self.hash, self.offset = hashlib.sha256(), 0
        self._written_back = self.offset
        self._stream = stream
        return self.offset

    def restart(self) -> None:
        """Drop what was written; the next write starts the blob again."""
        if self._stream is None:
            self.open()
        assert self._stream is not None
        self._stream.truncate(0)
        self.hash, self.offset, self._written_back = hashlib.sha256(), 0, 0

    def write(self, data: bytes | memoryview) -> None:
        assert self._stream is not None, "open() first"
        if self.expected_size is not None and self.offset + len(data) > self.expected_size:
            raise DigestMismatch(
                f"blob {self.digest} is longer than the {self.expected_size} bytes announced"
            )
        with _writing(self.path):
            # An unbuffered write may write less than asked (a disk filling up): the rest
            # is written again, or the next write raises ENOSPC.
            view = memoryview(data)
            while view:
                view = view[self._stream.write(view) or 0 :]
        self.hash.update(data)
        self.offset += len(data)
        if self.offset - self._written_back >= _WRITEBACK_EVERY:
            # Start writing back now, so the fsync at commit has little left to wait for.
            os.posix_fadvise(
                self._stream.fileno(),
                self._written_back,
                self.offset - self._written_back,
                os.POSIX_FADV_DONTNEED,
            )
            self._written_back = self.offset

    def commit(self) -> None:
        """Verify and publish; on a mismatch the partial file is deleted."""
        actual = "sha256:" + self.hash.hexdigest()
        if actual != self.digest or (
            self.expected_size is not None and self.offset != self.expected_size
        ):
            self.discard()
            raise DigestMismatch(
                f"content does not match its digest {self.digest} "
                f"(got {actual}, {self.offset} bytes)"
            )
        assert self._stream is not None
        with _writing(self.store.blob_path(self.digest)):
            self._stream.flush()
            os.fsync(self._stream.fileno())
            if os.fstat(self._stream.fileno()).st_size != self.offset:  # what was hashed
                self.discard()
                raise DigestMismatch(f"{self.path}: not all of blob {self.digest} was written")
            self.close()
            self.path.chmod(0o644)
            os.replace(self.path, self.store.blob_path(self.digest))
            fsync_directory(self.store.blobs)

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def _name(entry: Descriptor) -> str | None:
    return (entry.annotations or {}).get(mediatypes.REF_NAME_ANNOTATION)


def _hex(digest: str) -> str:
    return check_digest(digest).removeprefix("sha256:")


def _write_atomic(path: Path, data: bytes) -> None:
    with _writing(path), atomic_output(path, mode=0o644) as stream:
        stream.write(data)


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """An OSError in the block is a failure to write `path` (e.g. a full disk)."""
    try:
        yield
    except OSError as exc:
        remedy = "drop unused images with `osbuilder cache gc`, or use another --cache DIR"
        raise cannot_write(path, exc, remedy) from None


@contextlib.contextmanager
def _flock(path: Path, mode: int, waiting: str | None = None) -> Iterator[None]:
    """Hold `path` locked (`mode`: LOCK_SH or LOCK_EX); when someone else holds it,
    say `waiting` (if given) before blocking, rather than hang without a word."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                log.warning("%s", waiting)
            fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # closing releases the lock
