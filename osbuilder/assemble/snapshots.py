"""Layers unpacked once, then reused by every build: containerd's snapshots, as files.

A layer blob is inflated once into SNAPSHOTS/HEX.tar (HEX: the blob's digest),
its uncompressed tar, checked against the diff_id the image's config gives it;
the tar's member headers are indexed once into SNAPSHOTS/HEX.index, each with
the offset of its data in the tar. A build then reads no compressed data and
parses no tar: it loads the indexes, and the output writers read file
contents straight from the tars. A tar inside a layer (the kernel image's
kernel.tar) gets an index of its own, HEX.OFFSET.index.

This trades disk for time: a snapshot takes the layer's uncompressed size
next to its blob. Snapshots live in the content store (its `snapshots/`) and
`osbuilder cache gc` deletes them with their blobs. Both files are written
under temporary names, flushed and renamed, the index last: an index is only
ever found next to its complete tar. Two builds making one snapshot at once
each write their own copy and the second rename wins, identical.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

from msgspec import Struct

from osbuilder.assemble.entry import Content
from osbuilder.assemble.layers import Member
from osbuilder.assemble.tree import TreeError
from osbuilder.atomicfile import atomic_output
from osbuilder.errors import UserError

log = logging.getLogger(__name__)

INDEX_FORMAT = 2  # bump when Member or the index layout changes: old indexes are remade
WORKERS = 2  # layers inflated at once (inflating lets go of the GIL)


class LayerRef(Struct, frozen=True):
    """A layer to unpack: its blob, how it is compressed, what its content must hash to."""

    digest: str  # the blob's, as the manifest gives it (the store verified the blob)
    compression: str  # 'gzip', 'zstd' or ''
    diff_id: str | None  # the uncompressed tar's digest, from the image config
    what: str  # names the layer in errors, e.g. "image docker.io/x/y:1, layer sha256:..."


class Snapshot(Struct, frozen=True):
    path: Path  # the uncompressed tar
    members: list[Member]
    diff_id: str  # the tar's digest


class _Index(Struct, frozen=True):
    members: list[Member]
    diff_id: str


class Snapshots:
    """The snapshots of a content store's layers (or of a scratch directory's)."""

    def __init__(self, directory: Path, open_blob: Callable[[str], IO[bytes]]) -> None:
        self.directory = directory
        self._open_blob = open_blob
        self._loaded: dict[str, Snapshot] = {}
        directory.mkdir(parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError(f"{directory} is not writable")

    def prepare(self, layers: Sequence[LayerRef]) -> None:
        """Unpack every layer not unpacked yet, WORKERS at a time.

        Errors are raised in the order of `layers`, so a build fails the same way each time.
        """
        by_digest: dict[str, LayerRef] = {}
        for ref in layers:
            if not self._has(ref):
                by_digest.setdefault(ref.digest, ref)
        missing = list(by_digest.values())
        if len(missing) < 2:
            for ref in missing:
                self.layer(ref)
            return
        pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="unpack")
        try:
            results = [pool.submit(self._create, ref) for ref in missing]
            for ref, result in zip(missing, results, strict=True):
                self._loaded[ref.digest] = result.result()
        finally:  # after a failure or Ctrl-C, only the layers already under way are finished
            pool.shutdown(cancel_futures=True)

    def layer(self, ref: LayerRef) -> Snapshot:
        """The layer's snapshot, made now if it is not there yet."""
        snapshot = self._loaded.get(ref.digest)
        if snapshot is None:
            index = self._read_index(self._index_path(ref.digest), self._tar_path(ref.digest))
            if index is not None:
                snapshot = Snapshot(self._tar_path(ref.digest), index.members, index.diff_id)
            else:
                snapshot = self._create(ref)
            self._loaded[ref.digest] = snapshot
        # Checked at each use: two images may give one blob different diff_ids.
        _check_diff_id(ref, snapshot.diff_id)
        return snapshot

    def nested(self, content: Content, what: str) -> list[Member]:
        """The members of a tar that is a file of a layer, e.g. the kernel image's kernel.tar."""
        if content.path.parent != self.directory or content.path.suffix != ".tar":
            raise ValueError(f"{what}: {content.path} is not a snapshot of {self.directory}")
        path = content.path.with_name(f"{content.path.stem}.{content.offset}.index")
        index = self._read_index(path, content.path, content.size)
        if index is not None:
            return index.members
        # (imported here, as in _unpack: a warm build indexes nothing and would pay ~1 ms)
        from osbuilder.assemble.tarindex import index_tar

        with content.path.open("rb", buffering=0) as tar:
            members = index_tar(tar, content.offset, content.size, what)
        self._write_index(path, content.path, members, content.size, "")
        return members

    # --- files -------------------------------------------------------------------------------

    def _tar_path(self, digest: str) -> Path:
        return self.directory / f"{_hex(digest)}.tar"

    def _index_path(self, digest: str) -> Path:
        return self.directory / f"{_hex(digest)}.index"

    def _has(self, ref: LayerRef) -> bool:
        return ref.digest in self._loaded or self._index_path(ref.digest).is_file()

    def _create(self, ref: LayerRef) -> Snapshot:
        try:
            return self._unpack(ref)
        except OSError as exc:  # the snapshot's own files (the blob is read by _open_blob)
            raise UserError(
                f"{ref.what}: cannot unpack it into {self.directory}: {exc.strerror or exc}"
            ) from None

    def _unpack(self, ref: LayerRef) -> Snapshot:
        # (imported here: a warm build, all from snapshots, inflates and indexes nothing, and
        # isal and tarfile would cost it ~2 ms, measured with -X importtime)
        from osbuilder.assemble.inflate import inflated
        from osbuilder.assemble.tarindex import index_tar

        tar = self._tar_path(ref.digest)
        digest, size = hashlib.sha256(), 0
        with self._open_blob(ref.digest) as blob, atomic_output(tar, readable=True) as out:
            try:
                for chunk in inflated(blob, ref.compression):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            except (OSError, EOFError) as exc:
                raise TreeError(f"{ref.what}: corrupt layer ({exc})") from None
            diff_id = f"sha256:{digest.hexdigest()}"
            _check_diff_id(ref, diff_id)  # before anything is committed
            out.flush()
            members = index_tar(out, 0, size, ref.what)
        self._write_index(self._index_path(ref.digest), tar, members, size, diff_id)
        log.debug("unpacked %s: %d bytes, %d members", ref.what, size, len(members))
        return Snapshot(tar, members, diff_id)

    def _write_index(
        self, path: Path, tar: Path, members: list[Member], size: int, diff_id: str
    ) -> None:
        """Index `tar` (or `size` bytes in it). Its mtime is recorded: a tar changed
        in place after it was checked (an editor, a disk tool) no longer fits its index,
        and is made again rather than read as it is."""
        document = {
            "format": INDEX_FORMAT,
            "size": size,
            "mtime": os.stat(tar).st_mtime_ns,
            "diffID": diff_id,
            "members": members,
        }
        with atomic_output(path) as out:
            out.write(json.dumps(document, separators=(",", ":")).encode())

    @staticmethod
    def _read_index(path: Path, tar: Path, size: int | None = None) -> _Index | None:
        """What an index holds; None if it is missing, stale or does not fit its tar."""
        try:
            document = json.loads(path.read_bytes())
            if document["format"] != INDEX_FORMAT:
                return None
            status = os.stat(tar)
            if document["mtime"] != status.st_mtime_ns:
                return None  # not the tar it was made for: both are made again
            if size is None and document["size"] != status.st_size:
                return None
            if size is not None and document["size"] != size:
                return None
            return _Index([Member(*row) for row in document["members"]], document["diffID"])
        except (OSError, ValueError, KeyError, TypeError):
            return None


def _check_diff_id(ref: LayerRef, diff_id: str) -> None:
    if ref.diff_id is not None and diff_id != ref.diff_id:
        raise TreeError(
            f"{ref.what}: its content is not the diff_id {ref.diff_id} its image's config "
            "gives it; the image is corrupt (pull it again, or rebuild it)"
        )


def _hex(digest: str) -> str:
    algorithm, _, hex_digest = digest.partition(":")
    if algorithm != "sha256" or len(hex_digest) != 64:
        raise ValueError(f"not a sha256 digest: {digest}")
    return hex_digest
