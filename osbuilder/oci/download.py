"""Downloading blobs into the content store: verified, resumable, and fast.

The bytes of a blob are hashed as they arrive and written to a partial file
in ingest/; a broken connection resumes with `Range: bytes=N-` where the
registry allows it; the file reaches blobs/ only when the whole content
matches its digest (see store.PartialBlob).

The body is read with http.client's `readinto` into one reused buffer (see
transport.py); httpx answers an auth challenge, whose token the direct reads
then reuse.
"""

from __future__ import annotations

import logging

from msgspec import Struct

from osbuilder.errors import ExternalError, UserError, WriteFailed
from osbuilder.oci.model import Descriptor
from osbuilder.oci.progress import NullProgress, Progress
from osbuilder.oci.registry import Endpoint, RegistryClient
from osbuilder.oci.retry import RETRY_STATUS, parse_retry_after
from osbuilder.oci.store import ContentStore, DigestMismatch, PartialBlob
from osbuilder.oci.transport import ConnectionFailed, Response

log = logging.getLogger(__name__)

_BUFFER = 1024 * 1024


class _Retryable(Exception):
    """This attempt failed in a way worth another try (resuming where it stopped)."""

    def __init__(self, why: str, delay: float | None = None) -> None:
        super().__init__(why)
        self.delay = delay


def download_blob(
    client: RegistryClient,
    endpoints: list[Endpoint],
    repository: str,
    blob: Descriptor,
    store: ContentStore,
    progress: Progress | None = None,
) -> int:
    """Fetch `blob` into the store unless present; returns the bytes transferred.

    Endpoints are tried in order (mirrors first); only the last one's failure is fatal.
    """
    progress = progress or NullProgress()
    with store.blob_lock(blob.digest):
        if store.has_blob(blob.digest):
            return 0
        for endpoint in endpoints:
            try:
                return _Download(client, endpoint, repository, blob, store, progress).run()
            except WriteFailed:  # the store's disk: no other endpoint helps
                raise
            except (ExternalError, UserError) as exc:
                if endpoint is endpoints[-1]:
                    raise
                log.info(
                    "%s cannot serve %s (%s); trying the next", endpoint.base_url, blob.digest, exc
                )
        raise AssertionError("no endpoints")  # pragma: no cover - pull_endpoints is never empty


class _Download(Struct):
    client: RegistryClient
    endpoint: Endpoint
    repository: str
    blob: Descriptor
    store: ContentStore
    progress: Progress
    # Set by run():
    what: str = ""  # the blob, for messages
    url: str = ""
    direct: bool = True  # until the registry challenges us: then httpx answers it

    def run(self) -> int:
        digest = self.blob.digest
        self.what = f"blob {digest[:19]} of {self.repository} from {self.endpoint.base_url}"
        self.url = self.endpoint.url(f"{self.repository}/blobs/{digest}")
        self.direct = True
        partial = self.store.partial(digest, self.blob.size)
        self.progress.begin(digest, f"{self.repository}@{digest[7:19]}", self.blob.size)
        try:
            transferred = self._loop(partial)
        except BaseException:
            self.progress.end(digest, "failed")
            raise
        finally:
            partial.close()
        self.progress.end(digest, "done")
        return transferred

    def _loop(self, partial: PartialBlob) -> int:
        retries = self.client.options.retries
        buffer = bytearray(_BUFFER)
        transferred = failures = mismatches = 0
        offset = partial.open()
        if offset:  # an earlier, interrupted pull left this much
            self.progress.restart(self.blob.digest, offset)
        while True:
            try:
                transferred += self._attempt(partial, offset, buffer)
                partial.commit()
                return transferred
            except _Retryable as exc:
                failures += 1
                if failures > retries:
                    raise ExternalError(
                        f"{self.what}: {exc} (gave up after {retries} retries)"
                    ) from None
                self.client.pause(failures - 1, exc.delay, self.what, str(exc))
                offset = partial.offset
            except DigestMismatch as exc:
                mismatches += 1
                if mismatches > 1:  # wrong twice: not a glitch of the connection
                    raise ExternalError(f"{self.what}: {exc}") from None
                log.info("%s: %s; downloading it again", self.what, exc)
                offset = partial.open()  # commit() deleted the bad file: this starts afresh
                self.progress.restart(self.blob.digest, 0)

    def _attempt(self, partial: PartialBlob, offset: int, buffer: bytearray) -> int:
        """One GET from `offset` to the end; returns the bytes received."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            body = self.client.open("GET", self.url, self.endpoint, headers, direct=self.direct)
        except ConnectionFailed as exc:
            raise _Retryable(f"cannot get it ({exc})") from None
        try:
            if body.status == 401 and self.direct and self.client.direct:
                # Let httpx answer the challenge; its token is then reused by direct reads.
                self.direct = False
                body.close()
                return self._attempt(partial, offset, buffer)
            if body.status in RETRY_STATUS:
                raise _Retryable(
                    f"HTTP {body.status}", parse_retry_after(body.header("retry-after"))
                )
            if body.status == 404:
                raise UserError(f"{self.what}: not found")
            if body.status in (401, 403):
                raise UserError(f"{self.what}: access denied (HTTP {body.status}); log in first")
            if body.status == 416 or (offset and not _resumes_at(body, offset)):
                partial.restart()  # the server will not continue from there: start over
                self.progress.restart(self.blob.digest, 0)
                if body.status != 200:
                    raise _Retryable("range not served", delay=0.0)
            elif body.status not in (200, 206):
                raise ExternalError(f"{self.what}: HTTP {body.status}")
            received = 0
            try:
                for chunk in body.chunks(buffer):
                    partial.write(chunk)
                    received += len(chunk)
                    self.progress.advance(self.blob.digest, len(chunk))
            except ConnectionFailed as exc:
                raise _Retryable(
                    f"connection broke off after {partial.offset} bytes ({exc})"
                ) from None
            if partial.offset < self.blob.size:
                raise _Retryable(f"body ended after {partial.offset} of {self.blob.size} bytes")
            return received
        finally:
            body.close()


def _resumes_at(body: Response, offset: int) -> bool:
    """Whether the answer continues our partial file exactly where it ends."""
    if body.status != 206:
        return False
    return (body.header("content-range") or "").startswith(f"bytes {offset}-")
